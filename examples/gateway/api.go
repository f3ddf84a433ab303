package main

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits on an API's fields, so that one request cannot store a huge document.
const (
	maxNameLen    = 200
	maxPathLen    = 1024
	maxURLLen     = 2048
	maxMethods    = 16
	maxRatePerMin = 1 << 31
)

// httpMethods are the methods an API may list.
var httpMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"}

// APISpec is what a client sends for an API and what the service stores.
type APISpec struct {
	Name               string   `json:"name"`
	BasePath           string   `json:"base_path"`
	UpstreamURL        string   `json:"upstream_url"`
	Methods            []string `json:"methods"`
	RateLimitPerMinute int64    `json:"rate_limit_per_minute"`
	Enabled            bool     `json:"enabled"`
}

// API is an APISpec as the service shows it: with its id and the stored
// record's metadata.
type API struct {
	ID string `json:"id"`
	APISpec
	Version   int64     `json:"version"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// apiRequest is the body of POST /apis and PUT /apis/{id}. Pointers tell a
// missing field (which gets its default) from a given one. The read-only
// fields a client got from GET may be sent back; they are ignored, except
// that an id must match the one in the path.
type apiRequest struct {
	Name               *string   `json:"name"`
	BasePath           *string   `json:"base_path"`
	UpstreamURL        *string   `json:"upstream_url"`
	Methods            *[]string `json:"methods"`
	RateLimitPerMinute *int64    `json:"rate_limit_per_minute"`
	Enabled            *bool     `json:"enabled"`

	ID        *string `json:"id"`
	Version   any     `json:"version"`
	CreatedAt any     `json:"created_at"`
	UpdatedAt any     `json:"updated_at"`
}

// fieldError is a request field that is missing or invalid.
type fieldError struct {
	Field, Problem string
}

func (e *fieldError) Error() string { return e.Field + ": " + e.Problem }

// spec checks the request and returns the APISpec it describes, with
// defaults filled in, or a *fieldError naming the first bad field.
func (r *apiRequest) spec() (APISpec, error) {
	s := APISpec{Methods: []string{"GET"}, Enabled: true}
	var err error
	if s.Name, err = required("name", r.Name, maxNameLen); err != nil {
		return APISpec{}, err
	}
	if strings.TrimSpace(s.Name) == "" {
		return APISpec{}, &fieldError{"name", "must not be blank"}
	}
	if s.BasePath, err = required("base_path", r.BasePath, maxPathLen); err != nil {
		return APISpec{}, err
	}
	if err := checkBasePath(s.BasePath); err != nil {
		return APISpec{}, err
	}
	if s.UpstreamURL, err = required("upstream_url", r.UpstreamURL, maxURLLen); err != nil {
		return APISpec{}, err
	}
	if err := checkUpstreamURL(s.UpstreamURL); err != nil {
		return APISpec{}, err
	}
	if r.Methods != nil {
		if err := checkMethods(*r.Methods); err != nil {
			return APISpec{}, err
		}
		s.Methods = slices.Clone(*r.Methods)
	}
	if r.RateLimitPerMinute != nil {
		if v := *r.RateLimitPerMinute; v < 0 || v > maxRatePerMin {
			return APISpec{}, &fieldError{"rate_limit_per_minute", fmt.Sprintf("must be between 0 and %d", int64(maxRatePerMin))}
		}
		s.RateLimitPerMinute = *r.RateLimitPerMinute
	}
	if r.Enabled != nil {
		s.Enabled = *r.Enabled
	}
	return s, nil
}

// required returns *v, or a fieldError if it is missing, empty, not valid
// UTF-8 or longer than maxLen bytes.
func required(field string, v *string, maxLen int) (string, error) {
	switch {
	case v == nil:
		return "", &fieldError{field, "is required"}
	case *v == "":
		return "", &fieldError{field, "must not be empty"}
	case !utf8.ValidString(*v):
		return "", &fieldError{field, "must be valid UTF-8"}
	case len(*v) > maxLen:
		return "", &fieldError{field, fmt.Sprintf("must be at most %d bytes", maxLen)}
	}
	return *v, nil
}

// checkBasePath accepts an absolute URL path without spaces, query or
// fragment, such as "/v1/orders".
func checkBasePath(p string) error {
	if !strings.HasPrefix(p, "/") {
		return &fieldError{"base_path", `must start with "/"`}
	}
	if strings.ContainsAny(p, "?# \t\r\n") || strings.ContainsFunc(p, isControl) {
		return &fieldError{"base_path", "must be a URL path without spaces, control characters, query or fragment"}
	}
	return nil
}

// checkUpstreamURL accepts an absolute http or https URL with a host.
func checkUpstreamURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || strings.ContainsFunc(raw, isControl) || strings.ContainsAny(raw, " \t") {
		return &fieldError{"upstream_url", "must be an absolute http or https URL"}
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return &fieldError{"upstream_url", "must be an absolute http or https URL (scheme http or https)"}
	}
	if u.Host == "" || u.Hostname() == "" {
		return &fieldError{"upstream_url", "must be an absolute http or https URL with a host"}
	}
	return nil
}

// checkMethods accepts a non-empty list of distinct upper-case HTTP methods.
func checkMethods(ms []string) error {
	if len(ms) == 0 {
		return &fieldError{"methods", "must list at least one HTTP method (leave it out for [\"GET\"])"}
	}
	if len(ms) > maxMethods {
		return &fieldError{"methods", fmt.Sprintf("must list at most %d methods", maxMethods)}
	}
	for i, m := range ms {
		if !slices.Contains(httpMethods, m) {
			return &fieldError{fmt.Sprintf("methods[%d]", i), fmt.Sprintf("%q is not an upper-case HTTP method (one of %s)", m, strings.Join(httpMethods, ", "))}
		}
		if slices.Contains(ms[:i], m) {
			return &fieldError{fmt.Sprintf("methods[%d]", i), fmt.Sprintf("%q is listed twice", m)}
		}
	}
	return nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/gatewaykit/dbmanager"
)

// maxBodyBytes bounds a request body.
const maxBodyBytes = 64 << 10

// retryAfterSeconds is what a 503 tells clients to wait.
const retryAfterSeconds = "5"

// errorBody is every error response: {"error": "..."}.
type errorBody struct {
	Error string `json:"error"`
}

// writeJSON sends v as JSON with the status code.
func writeJSON(w http.ResponseWriter, code int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		http.Error(w, `{"error":"internal error"}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

// writeError sends {"error": msg} with the status code.
func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, errorBody{Error: msg})
}

// decodeBody reads exactly one JSON object into dst, rejecting unknown
// fields, trailing data and bodies over maxBodyBytes. It answers the client
// itself and returns false when the body is bad.
func decodeBody(w http.ResponseWriter, r *http.Request, dst any) bool {
	body := http.MaxBytesReader(w, r.Body, maxBodyBytes)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	err := dec.Decode(dst)
	if err == nil {
		if _, extra := dec.Token(); extra != io.EOF {
			err = errors.New("unexpected data after the JSON object")
		}
	}
	if err == nil {
		return true
	}
	var tooBig *http.MaxBytesError
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &tooBig):
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is larger than %d bytes", tooBig.Limit))
	case errors.Is(err, io.EOF):
		writeError(w, http.StatusBadRequest, "request body is empty; send a JSON object")
	case errors.As(err, &syntax), errors.Is(err, io.ErrUnexpectedEOF):
		writeError(w, http.StatusBadRequest, "malformed JSON: "+err.Error())
	case errors.As(err, &typ) && typ.Field != "":
		writeError(w, http.StatusBadRequest, fmt.Sprintf("%s: must be %s, not %s", typ.Field, jsonKind(typ.Type.Kind().String()), typ.Value))
	case errors.As(err, &typ):
		writeError(w, http.StatusBadRequest, "request body must be a JSON object, not "+typ.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		writeError(w, http.StatusBadRequest, "unknown field "+strings.TrimPrefix(err.Error(), "json: unknown field "))
	default:
		writeError(w, http.StatusBadRequest, "invalid request body: "+err.Error())
	}
	return false
}

// jsonKind names a Go kind the way a JSON client thinks of it.
func jsonKind(kind string) string {
	switch kind {
	case "string":
		return "a string"
	case "bool":
		return "true or false"
	case "int64", "int":
		return "an integer"
	case "slice":
		return "an array"
	case "struct", "map":
		return "an object"
	}
	return "a " + kind
}

// storeError answers a failed Store call: 404 for a missing API, 412 for a
// stale version, 503 with Retry-After when the store is unreachable or
// closing, and 500 otherwise (logged, not shown).
func storeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	switch {
	case errors.Is(err, dbmanager.ErrNotFound):
		writeError(w, http.StatusNotFound, "API not found")
	case errors.Is(err, dbmanager.ErrConflict):
		writeError(w, http.StatusPreconditionFailed, "version mismatch: the API was changed since that version; GET it and retry with the new ETag")
	case errors.Is(err, dbmanager.ErrUnavailable), errors.Is(err, dbmanager.ErrClosed):
		log.WarnContext(r.Context(), "store unavailable", "method", r.Method, "path", r.URL.Path, "err", err)
		w.Header().Set("Retry-After", retryAfterSeconds)
		writeError(w, http.StatusServiceUnavailable, "database unavailable, try again later")
	case r.Context().Err() != nil:
		// The client went away; nobody reads this answer.
		w.Header().Set("Retry-After", retryAfterSeconds)
		writeError(w, http.StatusServiceUnavailable, "request cancelled")
	default:
		log.ErrorContext(r.Context(), "store call failed", "method", r.Method, "path", r.URL.Path, "err", err)
		writeError(w, http.StatusInternalServerError, "internal error")
	}
}

// etag is the entity tag of an API at a version: "3".
func etag(version int64) string { return `"` + strconv.FormatInt(version, 10) + `"` }

// errBadIfMatch: an If-Match header that is not a version.
var errBadIfMatch = errors.New(`If-Match must be one version such as "3" (as in the ETag), 3, W/"3" or *`)

// ifMatch reads the If-Match header: the version it asks for, or 0 when
// the header is absent or "*" (any current version). It accepts "3", 3
// and W/"3".
func ifMatch(r *http.Request) (int64, error) {
	vals := r.Header.Values("If-Match")
	if len(vals) == 0 {
		return 0, nil
	}
	if len(vals) > 1 {
		return 0, errBadIfMatch
	}
	v := strings.TrimSpace(vals[0])
	if v == "*" {
		return 0, nil
	}
	v = strings.TrimPrefix(v, "W/")
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		v = v[1 : len(v)-1]
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 {
		return 0, errBadIfMatch
	}
	return n, nil
}

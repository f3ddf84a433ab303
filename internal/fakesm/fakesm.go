// Package fakesm is an AWS Secrets Manager stand-in for tests: an
// httptest server that speaks the real AWS JSON 1.1 protocol for
// GetSecretValue (POST /, X-Amz-Target: secretsmanager.GetSecretValue),
// so the AWS SDK's own signing, retries and parsing run against it.
//
// Point the SDK at it with Server.Setenv (the SDK's standard
// AWS_ENDPOINT_URL_SECRETS_MANAGER override plus static test credentials).
package fakesm

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Test credentials and region Setenv installs.
const (
	AccessKeyID     = "AKIAFAKESMTEST000001"
	SecretAccessKey = "fakesm/secret/access/key/for/tests/only"
	Region          = "us-east-1"
)

// Server is a running Secrets Manager stand-in. Safe for concurrent use.
type Server struct {
	srv *httptest.Server

	mu       sync.Mutex
	secrets  map[string]*secret
	calls    int
	failures []int         // statuses to answer the next requests with
	raw      []rawResponse // bodies to answer the next requests with, after failures
	badAuth  int           // requests that arrived without a SigV4 Authorization header
	lastAuth string        // Authorization header of the last request
}

type secret struct {
	name      string
	arn       string
	value     *string
	binary    []byte
	versionID string
	created   time.Time
	// pending is served once the current value has been served holdCalls more times.
	pending   *secretValue
	holdCalls int
}

type rawResponse struct {
	status int
	body   string
}

type secretValue struct {
	value  *string
	binary []byte
}

// New starts a stand-in, closed by t.Cleanup.
func New(t testing.TB) *Server {
	t.Helper()
	s := &Server{secrets: make(map[string]*secret)}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

// URL is the endpoint URL of the stand-in.
func (s *Server) URL() string { return s.srv.URL }

// Setenv points the AWS SDK at the stand-in for the rest of the test with
// t.Setenv: AWS_ENDPOINT_URL_SECRETS_MANAGER, static credentials, region
// us-east-1, IMDS disabled, and empty shared config/credentials files so
// nothing from the machine is used.
func (s *Server) Setenv(t testing.TB) {
	t.Helper()
	empty := filepath.Join(t.TempDir(), "empty-aws-config")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", s.srv.URL)
	t.Setenv("AWS_ACCESS_KEY_ID", AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", SecretAccessKey)
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_REGION", Region)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", empty)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", empty)
}

// SetSecretString creates or replaces secret name with a SecretString,
// served from the next call on.
func (s *Server) SetSecretString(name, value string) {
	s.set(name, secretValue{value: &value})
}

// SetSecretBinary creates or replaces secret name with a SecretBinary.
func (s *Server) SetSecretBinary(name string, value []byte) {
	s.set(name, secretValue{binary: append([]byte(nil), value...)})
}

func (s *Server) set(name string, v secretValue) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setLocked(name, v)
}

// setLocked stores v as secret name's current value. s.mu is held.
func (s *Server) setLocked(name string, v secretValue) {
	sec := s.secrets[name]
	if sec == nil {
		sec = &secret{name: name, arn: "arn:aws:secretsmanager:" + Region + ":123456789012:secret:" + name + "-" + randHex(3)}
		s.secrets[name] = sec
	}
	sec.value, sec.binary = v.value, v.binary
	sec.versionID = newVersionID()
	sec.created = time.Now()
	sec.pending, sec.holdCalls = nil, 0
}

// RotateAfter replaces secret name's string value with value after the
// current value has been served holdCalls more times, the way
// GetSecretValue keeps returning the old password for a while after the
// database already wants the new one.
func (s *Server) RotateAfter(name, value string, holdCalls int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sec := s.secrets[name]
	if sec == nil || holdCalls <= 0 {
		s.setLocked(name, secretValue{value: &value})
		return
	}
	sec.pending = &secretValue{value: &value}
	sec.holdCalls = holdCalls
}

// Delete removes secret name.
func (s *Server) Delete(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.secrets, name)
}

// FailNext makes the next len(statuses) requests fail with these HTTP
// statuses (500 and 503 are retried by the SDK; 400 is not) before any
// secret is looked up. They count as calls.
func (s *Server) FailNext(statuses ...int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures = append(s.failures, statuses...)
}

// ServeRawNext makes the next request (after any FailNext ones) get
// exactly this status and body, e.g. a malformed 200 response.
func (s *Server) ServeRawNext(status int, body string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.raw = append(s.raw, rawResponse{status, body})
}

// Calls is the number of GetSecretValue requests received, failed ones
// included.
func (s *Server) Calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// UnsignedCalls is the number of requests that had no SigV4 Authorization
// header for the secretsmanager service (they were refused).
func (s *Server) UnsignedCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.badAuth
}

// LastAuthorization is the Authorization header of the last request.
func (s *Server) LastAuthorization() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastAuth
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	target := r.Header.Get("X-Amz-Target")
	if r.Method != http.MethodPost || r.URL.Path != "/" {
		writeError(w, http.StatusNotFound, "UnknownOperationException", "only POST / is served")
		return
	}
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-amz-json-1.1") {
		writeError(w, http.StatusBadRequest, "SerializationException", "Content-Type must be application/x-amz-json-1.1")
		return
	}
	if target != "secretsmanager.GetSecretValue" {
		writeError(w, http.StatusBadRequest, "UnknownOperationException", "unsupported operation "+target)
		return
	}
	auth := r.Header.Get("Authorization")
	s.mu.Lock()
	s.calls++
	s.lastAuth = auth
	if !validSigV4(auth) {
		s.badAuth++
		s.mu.Unlock()
		writeError(w, http.StatusBadRequest, "IncompleteSignatureException", "missing or malformed SigV4 Authorization header")
		return
	}
	if len(s.failures) > 0 {
		status := s.failures[0]
		s.failures = s.failures[1:]
		s.mu.Unlock()
		code := "InternalServiceError"
		if status < 500 {
			code = "InvalidRequestException"
		}
		writeError(w, status, code, "injected failure")
		return
	}
	if len(s.raw) > 0 {
		raw := s.raw[0]
		s.raw = s.raw[1:]
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		w.WriteHeader(raw.status)
		_, _ = io.WriteString(w, raw.body)
		return
	}
	s.mu.Unlock()

	body, err := io.ReadAll(r.Body)
	if err != nil {
		writeError(w, http.StatusBadRequest, "SerializationException", "cannot read body")
		return
	}
	var in struct {
		SecretID string `json:"SecretId"`
	}
	if err := json.Unmarshal(body, &in); err != nil || in.SecretID == "" {
		writeError(w, http.StatusBadRequest, "InvalidParameterException", "SecretId is required")
		return
	}

	s.mu.Lock()
	sec := s.lookup(in.SecretID)
	if sec == nil {
		s.mu.Unlock()
		writeError(w, http.StatusBadRequest, "ResourceNotFoundException", "Secrets Manager can't find the specified secret.")
		return
	}
	out := map[string]any{
		"ARN":         sec.arn,
		"Name":        sec.name,
		"VersionId":   sec.versionID,
		"CreatedDate": float64(sec.created.UnixMilli()) / 1000,
		"VersionStages": []string{
			"AWSCURRENT",
		},
	}
	if sec.value != nil {
		out["SecretString"] = *sec.value
	}
	if sec.binary != nil {
		out["SecretBinary"] = base64.StdEncoding.EncodeToString(sec.binary)
	}
	if sec.pending != nil {
		sec.holdCalls--
		if sec.holdCalls <= 0 {
			sec.value, sec.binary = sec.pending.value, sec.pending.binary
			sec.versionID = newVersionID()
			sec.created = time.Now()
			sec.pending = nil
		}
	}
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-Requestid", newVersionID())
	_ = json.NewEncoder(w).Encode(out)
}

// lookup finds a secret by name or ARN. s.mu is held.
func (s *Server) lookup(id string) *secret {
	if sec, ok := s.secrets[id]; ok {
		return sec
	}
	for _, sec := range s.secrets {
		if sec.arn == id {
			return sec
		}
	}
	return nil
}

// validSigV4 checks the shape of a SigV4 Authorization header for
// secretsmanager (the signature itself is not verified).
func validSigV4(h string) bool {
	return strings.HasPrefix(h, "AWS4-HMAC-SHA256 ") &&
		strings.Contains(h, "Credential="+AccessKeyID+"/") &&
		strings.Contains(h, "/secretsmanager/aws4_request") &&
		strings.Contains(h, "SignedHeaders=") &&
		strings.Contains(h, "Signature=")
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-Requestid", newVersionID())
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"__type": code, "message": msg})
}

func newVersionID() string {
	b := randHex(16)
	return fmt.Sprintf("%s-%s-%s-%s-%s", b[0:8], b[8:12], b[12:16], b[16:20], b[20:32])
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

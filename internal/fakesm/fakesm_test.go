package fakesm

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

func post(t *testing.T, s *Server, target, auth, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.URL()+"/", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	req.Header.Set("X-Amz-Target", target)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

const goodAuth = "AWS4-HMAC-SHA256 Credential=" + AccessKeyID + "/20250101/us-east-1/secretsmanager/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc"

func TestProtocol(t *testing.T) {
	s := New(t)
	s.SetSecretString("db", "v1")

	if code, out := post(t, s, "secretsmanager.GetSecretValue", "", `{"SecretId":"db"}`); code != 400 || out["__type"] != "IncompleteSignatureException" {
		t.Fatalf("unsigned: %d %v", code, out)
	}
	if s.UnsignedCalls() != 1 {
		t.Fatal("unsigned call not counted")
	}
	if code, out := post(t, s, "secretsmanager.GetSecretValue", goodAuth, `{"SecretId":"nope"}`); code != 400 || out["__type"] != "ResourceNotFoundException" {
		t.Fatalf("missing: %d %v", code, out)
	}
	code, out := post(t, s, "secretsmanager.GetSecretValue", goodAuth, `{"SecretId":"db"}`)
	if code != 200 || out["SecretString"] != "v1" || out["Name"] != "db" || out["VersionId"] == "" {
		t.Fatalf("found: %d %v", code, out)
	}
	// By ARN too.
	if code, out2 := post(t, s, "secretsmanager.GetSecretValue", goodAuth, `{"SecretId":"`+out["ARN"].(string)+`"}`); code != 200 || out2["SecretString"] != "v1" {
		t.Fatalf("by ARN: %d %v", code, out2)
	}
	if code, _ := post(t, s, "secretsmanager.PutSecretValue", goodAuth, `{}`); code != 400 {
		t.Fatalf("other operation: %d", code)
	}
}

func TestRotateAfterAndFailures(t *testing.T) {
	s := New(t)
	s.SetSecretString("db", "old")
	s.RotateAfter("db", "new", 2)
	var got []string
	for range 4 {
		_, out := post(t, s, "secretsmanager.GetSecretValue", goodAuth, `{"SecretId":"db"}`)
		got = append(got, out["SecretString"].(string))
	}
	if strings.Join(got, ",") != "old,old,new,new" {
		t.Fatalf("served %v", got)
	}
	s.FailNext(500)
	if code, out := post(t, s, "secretsmanager.GetSecretValue", goodAuth, `{"SecretId":"db"}`); code != 500 || out["__type"] != "InternalServiceError" {
		t.Fatalf("injected: %d %v", code, out)
	}
	s.SetSecretBinary("bin", []byte{1, 2})
	if _, out := post(t, s, "secretsmanager.GetSecretValue", goodAuth, `{"SecretId":"bin"}`); out["SecretBinary"] != "AQI=" || out["SecretString"] != nil {
		t.Fatalf("binary: %v", out)
	}
	if s.Calls() != 6 {
		t.Fatalf("calls = %d, want 6", s.Calls())
	}
}

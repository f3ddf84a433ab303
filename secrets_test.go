package dbmanager

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/smithy-go"

	"github.com/gatewaykit/dbmanager/internal/credentials"
	"github.com/gatewaykit/dbmanager/internal/fakesm"
)

// smTestPassword is recognisable so a test can assert it never leaks.
const smTestPassword = "Sekr3t-p@ss:w/rd?#%&=-LEAKCHECK"

// assertSecretAbsent fails if text contains secret or a recognisable piece of it.
// The failure message never repeats the text itself.
func assertSecretAbsent(t testing.TB, text, secret string) {
	t.Helper()
	for _, piece := range []string{secret, secret[:8], secret[len(secret)-8:]} {
		if strings.Contains(text, piece) {
			t.Errorf("output (%d bytes) contains the secret or a piece of it", len(text))
			return
		}
	}
}

// newFakeSource starts a stand-in, points the SDK at it through the
// environment and returns an AWSSecretSource for it. The SDK's retry
// backoff is shortened so retried 500s do not slow the test.
func newFakeSource(t *testing.T) (*fakesm.Server, *AWSSecretSource) {
	t.Helper()
	sm := fakesm.New(t)
	sm.Setenv(t)
	src, err := NewAWSSecretSource(context.Background(), "", config.WithRetryer(func() aws.Retryer {
		return retry.NewStandard(func(o *retry.StandardOptions) { o.MaxBackoff = 20 * time.Millisecond })
	}))
	if err != nil {
		t.Fatalf("NewAWSSecretSource: %v", err)
	}
	return sm, src
}

func TestAWSSecretSourceFound(t *testing.T) {
	sm, src := newFakeSource(t)
	sm.SetSecretString("prod/db", `{"username":"app","password":"`+"pw"+`","host":"db","port":5432}`)
	got, err := src.SecretString(context.Background(), "prod/db")
	if err != nil {
		t.Fatalf("SecretString: %v", err)
	}
	if !strings.Contains(got, `"username":"app"`) {
		t.Fatalf("unexpected secret value (%d bytes)", len(got))
	}
	if sm.Calls() != 1 || sm.UnsignedCalls() != 0 {
		t.Fatalf("calls=%d unsigned=%d, want 1 signed call", sm.Calls(), sm.UnsignedCalls())
	}
	auth := sm.LastAuthorization()
	if !strings.HasPrefix(auth, "AWS4-HMAC-SHA256 Credential="+fakesm.AccessKeyID+"/") ||
		!strings.Contains(auth, "/"+fakesm.Region+"/secretsmanager/aws4_request") {
		t.Fatalf("request not SigV4-signed for secretsmanager: %q", auth)
	}
}

func TestAWSSecretSourceNotFound(t *testing.T) {
	_, src := newFakeSource(t)
	_, err := src.SecretString(context.Background(), "missing/db")
	if !errors.Is(err, ErrSecretNotFound) {
		t.Fatalf("err = %v, want ErrSecretNotFound", err)
	}
	if !strings.Contains(err.Error(), "missing/db") {
		t.Fatalf("error does not name the secret: %v", err)
	}
}

func TestAWSSecretSourceBinary(t *testing.T) {
	sm, src := newFakeSource(t)
	sm.SetSecretBinary("bin/db", []byte(smTestPassword))
	_, err := src.SecretString(context.Background(), "bin/db")
	if !errors.Is(err, ErrMalformedSecret) || !strings.Contains(err.Error(), "binary") {
		t.Fatalf("err = %v, want a binary-secret error", err)
	}
	assertSecretAbsent(t, err.Error(), smTestPassword)
}

func TestAWSSecretSourceRetries500(t *testing.T) {
	sm, src := newFakeSource(t)
	sm.SetSecretString("prod/db", `{"username":"app","password":"pw"}`)
	sm.FailNext(500, 503)
	got, err := src.SecretString(context.Background(), "prod/db")
	if err != nil {
		t.Fatalf("SecretString after two 5xx: %v", err)
	}
	if _, err := credentials.ParseRDSSecret(got); err != nil {
		t.Fatal(err)
	}
	if sm.Calls() != 3 {
		t.Fatalf("calls = %d, want 3 (two failures retried by the SDK)", sm.Calls())
	}
}

func TestAWSSecretSourceClientError(t *testing.T) {
	sm, src := newFakeSource(t)
	sm.SetSecretString("prod/db", `{"username":"app","password":"`+smTestPassword+`"}`)
	sm.FailNext(400)
	_, err := src.SecretString(context.Background(), "prod/db")
	if err == nil {
		t.Fatal("400 accepted")
	}
	if sm.Calls() != 1 {
		t.Fatalf("calls = %d, want 1 (a 400 is not retried)", sm.Calls())
	}
	assertSecretAbsent(t, err.Error(), smTestPassword)
}

func TestAWSSecretSourceRDSManaged(t *testing.T) {
	sm, src := newFakeSource(t)
	sm.SetSecretString("rds!db-1234", `{"username":"postgres","password":"pw"}`)
	s, err := src.SecretString(context.Background(), "rds!db-1234")
	if err != nil {
		t.Fatal(err)
	}
	c, err := credentials.ParseRDSSecret(s)
	if err != nil || c.Username != "postgres" || c.Host != "" || c.Port != 0 {
		t.Fatalf("rds-managed secret: %v, %v", c, err)
	}
	if !credentials.IsRDSManagedSecret("rds!db-1234") || !credentials.IsRDSManagedSecret("arn:aws:secretsmanager:us-east-1:1:secret:rds!cluster-ab-Xy12") || credentials.IsRDSManagedSecret("prod/db") {
		t.Fatal("IsRDSManagedSecret misclassifies")
	}
}

func TestNewAWSSecretSourceNeedsRegion(t *testing.T) {
	sm := fakesm.New(t)
	sm.Setenv(t)
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	_, err := NewAWSSecretSource(context.Background(), "")
	if err == nil || !strings.Contains(err.Error(), "AWS_REGION") {
		t.Fatalf("err = %v, want a missing-region error", err)
	}
}

func TestAWSSecretSourceNoBodyLogging(t *testing.T) {
	sm := fakesm.New(t)
	sm.Setenv(t)
	src, err := NewAWSSecretSource(context.Background(), "", config.WithClientLogMode(aws.LogResponseWithBody|aws.LogRequestWithBody|aws.LogRetries))
	if err != nil {
		t.Fatal(err)
	}
	mode := src.client.Options().ClientLogMode
	if mode.IsResponseWithBody() || mode.IsRequestWithBody() {
		t.Fatalf("body logging left on: %v", mode)
	}
}

func TestAWSSecretSourceMalformedResponse(t *testing.T) {
	sm, src := newFakeSource(t)
	sm.SetSecretString("prod/db", `{"username":"app","password":"pw"}`)
	sm.ServeRawNext(200, `{"Name":"prod/db","SecretString":"{\"password\":\"`+smTestPassword+`\"}","CreatedDate":"not-a-time",`)
	_, err := src.SecretString(context.Background(), "prod/db")
	if err == nil {
		t.Fatal("malformed response accepted")
	}
	var de *smithy.DeserializationError
	if errors.As(err, &de) {
		t.Fatal("the error keeps the SDK's DeserializationError, whose Snapshot holds the response body")
	}
	js, _ := json.Marshal(err)
	for _, s := range []string{err.Error(), fmt.Sprintf("%+v", err), string(js)} {
		assertSecretAbsent(t, s, smTestPassword)
	}
}

package credentials

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awscreds "github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/jackc/pgx/v5"
)

const testAccessKey = "AKIAIAMTEST000000001"

func newTestIAM(t *testing.T, opts ...IAMOption) *IAM {
	t.Helper()
	creds := awscreds.NewStaticCredentialsProvider(testAccessKey, "iam-test-secret-key", "")
	a, err := NewIAM(context.Background(), "eu-west-1", nil, append([]IAMOption{WithIAMCredentials(creds)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// parseToken reads an RDS IAM token: a presigned URL without its scheme.
func parseToken(t *testing.T, token string) *url.URL {
	t.Helper()
	u, err := url.Parse("https://" + token)
	if err != nil {
		t.Fatalf("token is not a URL: %v", err)
	}
	return u
}

func TestIAMTokenShape(t *testing.T) {
	a := newTestIAM(t)
	token, err := a.Token(context.Background(), "mydb.abc.eu-west-1.rds.amazonaws.com", 6543, "iam_user")
	if err != nil {
		t.Fatal(err)
	}
	u := parseToken(t, token)
	if u.Host != "mydb.abc.eu-west-1.rds.amazonaws.com:6543" {
		t.Errorf("token signed for %q, want host:port", u.Host)
	}
	q := u.Query()
	if q.Get("Action") != "connect" || q.Get("DBUser") != "iam_user" || q.Get("X-Amz-Expires") != "900" {
		t.Errorf("token query: Action=%q DBUser=%q X-Amz-Expires=%q", q.Get("Action"), q.Get("DBUser"), q.Get("X-Amz-Expires"))
	}
	if !strings.HasPrefix(q.Get("X-Amz-Credential"), testAccessKey+"/") || !strings.Contains(q.Get("X-Amz-Credential"), "/eu-west-1/rds-db/aws4_request") {
		t.Errorf("token credential scope %q", q.Get("X-Amz-Credential"))
	}
	if q.Get("X-Amz-Signature") == "" {
		t.Error("token is not signed")
	}
}

func TestIAMTokenDefaultPort(t *testing.T) {
	a := newTestIAM(t)
	token, err := a.Token(context.Background(), "db.local", 0, "u")
	if err != nil {
		t.Fatal(err)
	}
	if h := parseToken(t, token).Host; h != "db.local:5432" {
		t.Fatalf("token signed for %q, want db.local:5432", h)
	}
	if IAMEndpoint("::1", 5433) != "[::1]:5433" {
		t.Fatal("IPv6 endpoint not bracketed")
	}
}

func TestIAMTokenCachedAndRefreshed(t *testing.T) {
	clock := newSecretsClock()
	var builds atomic.Int64
	a := newTestIAM(t, withIAMClock(clock.Now))
	realBuild := a.build
	a.build = func(ctx context.Context, endpoint, region, user string, creds aws.CredentialsProvider) (string, error) {
		builds.Add(1)
		tok, err := realBuild(ctx, endpoint, region, user, creds)
		return tok + "&n=" + string(rune('0'+builds.Load())), err
	}
	ctx := context.Background()
	first, _ := a.Token(ctx, "db", 5432, "u")
	clock.Add(9*time.Minute + 59*time.Second)
	if again, _ := a.Token(ctx, "db", 5432, "u"); again != first {
		t.Fatal("token re-signed before the refresh time")
	}
	clock.Add(time.Second)
	if fresh, _ := a.Token(ctx, "db", 5432, "u"); fresh == first {
		t.Fatal("token not re-signed after 10 minutes (it expires at 15)")
	}
	// Another user or endpoint gets its own token.
	a.Token(ctx, "db", 5432, "other")
	a.Token(ctx, "db", 5433, "u")
	if n := builds.Load(); n != 4 {
		t.Fatalf("%d tokens built, want 4", n)
	}
}

func TestIAMTokenOneSigningAtATime(t *testing.T) {
	a := newTestIAM(t)
	var builds atomic.Int64
	gate := make(chan struct{})
	realBuild := a.build
	a.build = func(ctx context.Context, endpoint, region, user string, creds aws.CredentialsProvider) (string, error) {
		builds.Add(1)
		<-gate
		return realBuild(ctx, endpoint, region, user, creds)
	}
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if _, err := a.Token(context.Background(), "db", 5432, "u"); err != nil {
				t.Error(err)
			}
		})
	}
	for builds.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	close(gate)
	wg.Wait()
	if n := builds.Load(); n != 1 {
		t.Fatalf("%d signings for 50 concurrent callers, want 1", n)
	}
}

func TestIAMTokenErrorHasNoToken(t *testing.T) {
	a := newTestIAM(t)
	a.build = func(ctx context.Context, endpoint, region, user string, creds aws.CredentialsProvider) (string, error) {
		return "", errors.New("no credentials")
	}
	_, err := a.Token(context.Background(), "db", 5432, "u")
	if err == nil || !strings.Contains(err.Error(), "u@db:5432") {
		t.Fatalf("err = %v", err)
	}
}

func TestIAMBeforeConnectRequiresTLS(t *testing.T) {
	a := newTestIAM(t)
	for _, tc := range []struct {
		dsn string
		ok  bool
	}{
		{"postgres://u@db:5432/d?sslmode=disable", false},
		{"postgres://u@db:5432/d?sslmode=allow", false},
		{"postgres://u@db:5432/d?sslmode=prefer", false},
		{"postgres://u@db:5432/d?sslmode=require", false},
		{"postgres://u@db:5432/d?sslmode=verify-full", true},
		{"postgres://u@db/d?sslmode=verify-ca", true},
		{"postgres://u@db1:5432,db2:5432/d?sslmode=verify-full", false},
	} {
		cc, err := pgx.ParseConfig(tc.dsn)
		if err != nil {
			t.Fatal(err)
		}
		err = a.BeforeConnect(context.Background(), cc)
		if tc.ok {
			if err != nil {
				t.Errorf("%s: %v", tc.dsn, err)
				continue
			}
			u := parseToken(t, cc.Password)
			if u.Host != "db:5432" || u.Query().Get("DBUser") != "u" {
				t.Errorf("%s: token for %q user %q", tc.dsn, u.Host, u.Query().Get("DBUser"))
			}
		} else {
			if err == nil || (!errors.Is(err, ErrIAMRequiresTLS) && !strings.Contains(err.Error(), "single host")) {
				t.Errorf("%s: err = %v, want ErrIAMRequiresTLS", tc.dsn, err)
			}
			if cc.Password != "" {
				t.Errorf("%s: password set on a refused config", tc.dsn)
			}
		}
	}
}

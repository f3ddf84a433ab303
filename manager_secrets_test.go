package dbmanager

import (
	"context"
	"encoding/json"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestManagerFromSecretSurvivesRotation wires the whole chain a service on
// AWS uses: AWS_DB_SECRET read through the real AWS SDK (against the
// Secrets Manager stand-in), the pool's credentials from the secret cache,
// and a password rotation while the Manager runs.
func TestManagerFromSecretSurvivesRotation(t *testing.T) {
	ctx := context.Background()
	f := newRotationFixture(t)
	u, err := url.Parse(f.admin.Config().ConnString())
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(u.Port())
	db := strings.TrimPrefix(u.Path, "/")
	f.exec(t, "GRANT CREATE ON DATABASE "+pgx.Identifier{db}.Sanitize()+" TO "+pgx.Identifier{f.role}.Sanitize())
	secret := func(pw string) string {
		b, _ := json.Marshal(map[string]any{"username": f.role, "password": pw, "engine": "postgres",
			"host": u.Hostname(), "port": port, "dbname": db})
		return string(b)
	}
	f.sm.SetSecretString(f.secretID, secret(rotOldPassword))

	m, logs := newTestManager(t, envConfig(t, "AWS_DB_SECRET", f.secretID, "AWS_REGION", "us-east-1", "DB_CONNECT_TIMEOUT", "3"))
	start := time.Now()
	if err := m.Init(ctx); err != nil {
		t.Fatalf("Init from a secret: %v", err)
	}
	t.Logf("Init took %s", time.Since(start))
	info := m.Info()
	if !info.UsingPrimary || info.Source != SourceSecret || info.User != f.role || info.Database != db {
		t.Fatalf("Info = %+v; want the primary from the secret", info)
	}
	s := m.Store()
	if _, err := s.Put(ctx, "apis", "before", []byte(`1`)); err != nil {
		t.Fatal(err)
	}

	// RDS rotates the password; for one more call Secrets Manager still
	// answers with the old one.
	f.exec(t, "ALTER ROLE "+pgx.Identifier{f.role}.Sanitize()+" PASSWORD "+sqlQuoteLiteral(rotNewPassword))
	f.sm.RotateAfter(f.secretID, secret(rotNewPassword), 1)
	pool, _ := m.Pool()
	pool.Reset() // every later call needs a new login
	callsBefore := f.sm.Calls()
	start = time.Now()
	for i := range 5 {
		if _, err := s.Put(ctx, "apis", "after", []byte(strconv.Itoa(i))); err != nil {
			t.Fatalf("Put %d after the rotation: %v", i, err)
		}
		pool.Reset()
	}
	t.Logf("5 logins across the rotation took %s", time.Since(start))
	if n := f.sm.Calls() - callsBefore; n > 6 {
		t.Errorf("%d GetSecretValue calls for 5 logins after a rotation; want it bounded (<= 6)", n)
	}
	h := m.Health(ctx)
	if h.Status != StatusHealthy {
		t.Errorf("Health = %+v", h)
	}
	shown := logs.String() + f.logs.String() + h.Message + mustJSON(t, m.Info()) + mustJSON(t, h)
	for _, pw := range []string{rotOldPassword, rotNewPassword} {
		if strings.Contains(shown, pw) {
			t.Errorf("a password appears in logs, Info or Health")
		}
	}
}

func TestManagerIAMWithoutTLSIsMisconfigured(t *testing.T) {
	ctx := context.Background()
	cfg := envConfig(t, "DATABASE_URL", "postgres://app@"+refusedAddr(t)+"/app?sslmode=disable",
		"AWS_DB_IAM_AUTH", "true", "AWS_REGION", "us-east-1")
	m, _ := newTestManager(t, cfg)
	err := m.Init(ctx)
	if err == nil || !isMisconfiguration(err) {
		t.Fatalf("Init with IAM over sslmode=disable = %v; want a configuration error", err)
	}
}

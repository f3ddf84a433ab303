package dbmanager

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatewaykit/dbmanager/internal/pgtest"
	"github.com/gatewaykit/dbmanager/internal/testcert"
	"github.com/jackc/pgx/v5"
)

// TestManagerFromSecretSurvivesRotation wires the whole chain a service on
// AWS uses: AWS_DB_SECRET read through the real AWS SDK (against the
// Secrets Manager stand-in), the pool's credentials from the secret cache,
// and a password rotation while the Manager runs.
func TestManagerFromSecretSurvivesRotation(t *testing.T) {
	ctx := context.Background()
	f := newRotationFixture(t)
	secret, db := f.managerSecret(t)
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
	resetPool(t, pool) // every later call needs a new login
	callsBefore := f.sm.Calls()
	start = time.Now()
	for i := range 5 {
		if _, err := s.Put(ctx, "apis", "after", []byte(strconv.Itoa(i))); err != nil {
			t.Fatalf("Put %d after the rotation: %v", i, err)
		}
		resetPool(t, pool)
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

func TestManagerSecretWithoutRegionIsMisconfigured(t *testing.T) {
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	t.Setenv("AWS_CONFIG_FILE", t.TempDir()+"/none")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", t.TempDir()+"/none")
	m, _ := newTestManager(t, envConfig(t, "AWS_DB_SECRET", "prod/db"))
	if err := m.Init(context.Background()); !errors.Is(err, ErrConfig) {
		t.Fatalf("Init with a secret and no region = %v; want ErrConfig, not a fallback", err)
	}
}

func TestBusyPoolIsNotALostConnection(t *testing.T) {
	m, logs := newTestManager(t, envConfig(t))
	m.observePrimary(0, true, &PoolExhaustedError{})
	if m.outage.Down() || strings.Contains(logs.String(), "connection lost") {
		t.Error("an exhausted pool was taken for a lost connection")
	}
	m.observePrimary(0, true, &ConnectionError{Reason: ReasonRefused})
	if !m.outage.Down() {
		t.Error("a refused connection did not mark the primary down")
	}
}

func TestStoreOnAFullPoolSaysExhausted(t *testing.T) {
	ctx := context.Background()
	m, logs := newTestManager(t, envConfig(t, "DATABASE_URL", pgtest.URL(t),
		"DB_POOL_SIZE", "1", "DB_MAX_OVERFLOW", "0", "DB_POOL_TIMEOUT", "1"))
	if err := m.Init(ctx); err != nil {
		t.Fatal(err)
	}
	pool, _ := m.Pool()
	held, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release()
	_, err = m.Store().Get(ctx, "apis", "k")
	var exhausted *PoolExhaustedError
	if !errors.As(err, &exhausted) || !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "1/1 in use") {
		t.Fatalf("Get on a full pool = %v; want a *PoolExhaustedError showing the stats", err)
	}
	if m.Info().PrimaryFailing || strings.Contains(logs.String(), "connection lost") {
		t.Error("a full pool was reported as a lost connection")
	}
	assertLogged(t, logs, "Connection pool exhausted")
}

// TestManagerWithIAMConnectsOverVerifiedTLS wires IAM authentication
// through the Manager: AWS credentials and region from the environment, a
// CA bundle, verify-full. PostgreSQL cannot check an IAM token (RDS does),
// so this server trusts the IAM role over TLS; what is tested is that the
// Manager builds the token hook, demands verified TLS and connects.
func TestManagerWithIAMConnectsOverVerifiedTLS(t *testing.T) {
	ctx := context.Background()
	ca := testcert.NewCA(t, "iam-manager-ca")
	certFile, keyFile := ca.Localhost(t)
	srv, db := iamTLSServer(t, certFile, keyFile)
	setTestAWSCredentials(t)
	vars := []string{"AWS_DB_HOST", "localhost", "AWS_DB_PORT", strconv.Itoa(srv.Port()), "AWS_DB_NAME", db,
		"AWS_DB_USER", "iam_app", "AWS_DB_IAM_AUTH", "true", "AWS_REGION", "us-east-1",
		"AWS_SSLROOTCERT", ca.File, "DB_CONNECT_TIMEOUT", "3"}

	m, logs := newTestManager(t, envConfig(t, vars...))
	if err := m.Init(ctx); err != nil {
		t.Fatalf("Init with IAM over verify-full: %v", err)
	}
	if !m.Info().UsingPrimary {
		t.Fatalf("Info = %+v; want the primary", m.Info())
	}
	if _, err := m.Store().Put(ctx, "apis", "k", []byte(`1`)); err != nil {
		t.Fatal(err)
	}
	pool, _ := m.Pool()
	var ssl bool
	if err := pool.QueryRow(ctx, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl); err != nil || !ssl {
		t.Errorf("connection encrypted = %v (%v); want TLS", ssl, err)
	}
	if strings.Contains(logs.String(), "X-Amz-Signature") {
		t.Error("an IAM token appears in the logs")
	}

	// The same with the CA of another authority: refused, never plaintext.
	other := testcert.NewCA(t, "other-ca")
	vars[len(vars)-3] = other.File
	strict, _ := newTestManager(t, envConfig(t, append(vars, "DB_FALLBACK", "none")...))
	if err := strict.Init(ctx); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Init trusting another CA = %v; want a TLS connection error", err)
	}
}

// TestManagerRereadsARefusedSecret: a Manager started while its secret
// holds a password the server refuses (a rotation caught half-way, or a
// wrong secret fixed later) serves from memory, and recovery reads the
// secret again after each refusal instead of retrying the cached password
// until DB_SECRET_CACHE_TTL: once the secret is right, the Manager moves
// back with what was written meanwhile.
func TestManagerRereadsARefusedSecret(t *testing.T) {
	f := newRotationFixture(t)
	secret, _ := f.managerSecret(t)
	rereadRefusedSecret(t, f, secret)
}

// rereadRefusedSecret walks TestManagerRereadsARefusedSecret on f's role,
// reached with the secret secret(password) gives (directly, or through a
// PgBouncer).
func rereadRefusedSecret(t *testing.T, f *rotationFixture, secret func(password string) string) {
	t.Helper()
	ctx := context.Background()
	f.sm.SetSecretString(f.secretID, secret(rotNewPassword)) // the role still has the old password
	m, logs := newTestManager(t, envConfig(t, "AWS_DB_SECRET", f.secretID, "AWS_REGION", "us-east-1", "DB_CONNECT_TIMEOUT", "3"))
	if err := m.Init(ctx); err != nil {
		t.Fatalf("Init with a refused secret: %v (want a fallback to memory)", err)
	}
	if info := m.Info(); info.UsingPrimary || !strings.Contains(info.FallbackReason, string(ReasonAuth)) {
		t.Fatalf("Info = %+v; want memory, for the reason %q", info, ReasonAuth)
	}
	if _, err := m.Store().Put(ctx, "apis", "during", []byte(`"memory"`)); err != nil {
		t.Fatal(err)
	}

	callsBefore := f.sm.Calls()
	f.sm.SetSecretString(f.secretID, secret(rotOldPassword)) // the secret is fixed
	deadline := time.Now().Add(30 * time.Second)
	for !m.Info().UsingPrimary {
		if time.Now().After(deadline) {
			t.Fatalf("still on memory 30 s after the secret was fixed (%d more GetSecretValue calls); log:\n%s", f.sm.Calls()-callsBefore, logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	rec, err := m.Store().Get(ctx, "apis", "during")
	if err != nil || string(rec.Value) != `"memory"` || m.Store().Backend() != BackendPostgreSQL {
		t.Errorf("after recovery: %q, %v on %s; want the write made on memory, on PostgreSQL", rec.Value, err, m.Store().Backend())
	}
	shown := logs.String() + f.logs.String() + mustJSON(t, m.Info()) + mustJSON(t, m.Health(ctx))
	assertSecretAbsent(t, shown, rotOldPassword)
	assertSecretAbsent(t, shown, rotNewPassword)
}

package dbmanager

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gatewaykit/dbmanager/internal/credentials"
	"github.com/gatewaykit/dbmanager/internal/pgtest"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// TestNewPoolFromDatabaseURL: a pool from DATABASE_URL carries the
// library's settings (DB_POOL_SIZE kept, + DB_MAX_OVERFLOW) and works.
func TestNewPoolFromDatabaseURL(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := envConfig(t, "DATABASE_URL", pgtest.URL(t), "DB_POOL_SIZE", "3", "DB_MAX_OVERFLOW", "2")
	pool, err := NewPool(ctx, cfg)
	if err != nil {
		t.Fatalf("NewPool: %v", err)
	}
	defer pool.Close()
	var one int
	if err := pool.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("SELECT 1 on the pool = %d, %v", one, err)
	}
	pc := pool.Config()
	if pc.MinConns != 3 || pc.MaxConns != 5 {
		t.Errorf("pool MinConns/MaxConns = %d/%d; want 3/5 (DB_POOL_SIZE, + DB_MAX_OVERFLOW)", pc.MinConns, pc.MaxConns)
	}
	if pc.ConnConfig.ConnectTimeout != cfg.ConnectTimeout {
		t.Errorf("connect timeout = %s; want DB_CONNECT_TIMEOUT %s", pc.ConnConfig.ConnectTimeout, cfg.ConnectTimeout)
	}
}

// TestNewPoolWithoutPostgreSQL: nothing configured, or memory only, is a
// configuration error, not a pool on nothing.
func TestNewPoolWithoutPostgreSQL(t *testing.T) {
	for _, cfg := range []Config{envConfig(t), envConfig(t, "DB_FALLBACK", "memory")} {
		pool, err := NewPool(context.Background(), cfg)
		var ce *ConfigError
		if pool != nil || !errors.As(err, &ce) || !errors.Is(err, ErrConfig) {
			t.Errorf("NewPool(%s) = %v, %v; want a *ConfigError", cfg.Source(), pool, err)
		}
	}
}

// TestNewPoolUnreachable: a server that refuses is a redacted
// *ConnectionError with its reason, within the caller's deadline.
func TestNewPoolUnreachable(t *testing.T) {
	const pw = "n3wp00l-s3cr3t-pw"
	cfg := envConfig(t, "DATABASE_URL", "postgres://app:"+pw+"@"+refusedAddr(t)+"/app?sslmode=disable", "DB_CONNECT_TIMEOUT", "1")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pool, err := NewPool(ctx, cfg)
	var ce *ConnectionError
	if pool != nil || !errors.As(err, &ce) || ce.Reason != ReasonRefused {
		t.Fatalf("NewPool on a refusing address = %v, %v; want a *ConnectionError (refused)", pool, err)
	}
	if strings.Contains(err.Error(), pw) {
		t.Error("the error shows the password")
	}
	if !strings.HasPrefix(err.Error(), "dbmanager: cannot connect to PostgreSQL at ") {
		t.Errorf("error %q; want the README's \"dbmanager: cannot connect to PostgreSQL at ...\"", err)
	}
}

// TestNewPoolFromSecretAcrossRotation: a pool from AWS_DB_SECRET (through
// the real AWS SDK against the Secrets Manager stand-in) logs in with the
// secret; after the password rotates, open connections keep working, and
// once a login met the old password the next new connection reads the
// secret again and logs in with the new one.
func TestNewPoolFromSecretAcrossRotation(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	f := newRotationFixture(t)
	secret, _ := f.managerSecret(t)
	f.sm.SetSecretString(f.secretID, secret(rotOldPassword))
	logger, logs := captureLogs(t)
	cfg := envConfig(t, "AWS_DB_SECRET", f.secretID, "AWS_REGION", "us-east-1", "DB_CONNECT_TIMEOUT", "3", "DB_POOL_SIZE", "1")
	pool, err := NewPool(ctx, cfg, WithLogger(logger))
	if err != nil {
		t.Fatalf("NewPool from a secret: %v", err)
	}
	defer pool.Close()
	var user string
	if err := pool.QueryRow(ctx, "SELECT current_user").Scan(&user); err != nil || user != f.role {
		t.Fatalf("current_user = %q, %v; want the secret's %q", user, err, f.role)
	}

	failures := newPoolAcrossRotation(ctx, t, pool, func() {
		f.exec(t, "ALTER ROLE "+pgx.Identifier{f.role}.Sanitize()+" PASSWORD "+sqlQuoteLiteral(rotNewPassword))
		f.sm.SetSecretString(f.secretID, secret(rotNewPassword))
	})
	for _, err := range failures {
		assertSecretAbsent(t, err.Error(), rotOldPassword)
	}
	for _, pw := range []string{rotOldPassword, rotNewPassword} {
		if strings.Contains(logs.String(), pw) {
			t.Error("a password appears in the logs")
		}
	}
}

// newPoolAcrossRotation walks a NewPool pool with DB_POOL_SIZE=1 through
// rotate (the password changes on the server and in the secret), long
// after the secret was read: a connection held across it must keep
// working; then new connections (each a new login) are opened until one
// works, within 20 s. It returns the failures met on the way, each an
// authentication failure, and fails t if there were more than one (the
// login that meets the old cached password marks the secret stale).
func newPoolAcrossRotation(ctx context.Context, t *testing.T, pool *pgxpool.Pool, rotate func()) []error {
	t.Helper()
	// The cache reads a secret at most once a second (credentials.DefaultMinInterval).
	time.Sleep(credentials.DefaultMinInterval + 100*time.Millisecond)
	held, err := pool.Acquire(ctx) // a connection open across the rotation
	if err != nil {
		t.Fatal(err)
	}
	rotate()
	if _, err := held.Exec(ctx, "SELECT 1"); err != nil {
		t.Errorf("a connection opened before the rotation fails after it: %v", err)
	}
	held.Release()

	var failures []error
	deadline := time.Now().Add(20 * time.Second)
	for {
		resetPool(t, pool)
		var user string
		err := pool.QueryRow(ctx, "SELECT current_user").Scan(&user)
		if err == nil {
			break
		}
		failures = append(failures, err)
		if !credentials.IsAuthFailure(err) {
			t.Fatalf("a new connection after the rotation: SQLSTATE %s; want success or an authentication failure", sqlstateOf(err))
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new connection with the rotated password within 20 s (%d authentication failures)", len(failures))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("authentication failures before the rotated secret was used: %d", len(failures))
	if len(failures) > 1 {
		t.Errorf("%d failed logins after the rotation; want at most 1 (the one that marks the secret stale)", len(failures))
	}
	return failures
}

// sqlstateOf is err's SQLSTATE, or "none".
func sqlstateOf(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return "none"
}

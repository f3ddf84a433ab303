package dbmanager

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gatewaykit/dbmanager/internal/credentials"
	"github.com/gatewaykit/dbmanager/internal/fakesm"
	"github.com/gatewaykit/dbmanager/internal/pgtest"
)

// Recognisable passwords, with the characters rotated passwords contain.
const (
	rotOldPassword = "OLD-rot:@/?#%&=pw-LEAKCHECK-1"
	rotNewPassword = "NEW-rot:@/?#%&=pw-LEAKCHECK-2"
)

// rotationFixture is a real PostgreSQL role whose password comes from a
// secret in the Secrets Manager stand-in.
type rotationFixture struct {
	admin    *pgx.Conn
	role     string
	sm       *fakesm.Server
	cache    *credentials.Cache
	poolCfg  *pgxpool.Config
	logs     *logBuffer
	secretID string
}

func newRotationFixture(t *testing.T, opts ...credentials.Option) *rotationFixture {
	t.Helper()
	ctx := context.Background()
	url := pgtest.URL(t)
	admin, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect as admin: %v", err)
	}
	t.Cleanup(func() { admin.Close(context.Background()) })
	f := &rotationFixture{admin: admin, role: "rot_" + strings.ReplaceAll(strings.ToLower(t.Name()), "/", "_"), secretID: "prod/gateway/db", logs: &logBuffer{}}
	if len(f.role) > 60 {
		f.role = f.role[:60]
	}
	f.exec(t, "CREATE ROLE "+pgx.Identifier{f.role}.Sanitize()+" LOGIN PASSWORD "+sqlQuoteLiteral(rotOldPassword))
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), url)
		if err == nil {
			// The database is dropped by pgtest, but only after this; the
			// role is cluster-wide, and cannot go while it owns objects
			// (the Store's schema) or holds privileges in the database.
			c.Exec(context.Background(), "DROP OWNED BY "+pgx.Identifier{f.role}.Sanitize())
			c.Exec(context.Background(), "DROP ROLE IF EXISTS "+pgx.Identifier{f.role}.Sanitize())
			c.Close(context.Background())
		}
	})

	f.sm = fakesm.New(t)
	f.sm.Setenv(t)
	f.sm.SetSecretString(f.secretID, f.secretJSON(rotOldPassword))
	src, err := NewAWSSecretSource(ctx, "", config.WithRetryer(func() aws.Retryer {
		return retry.NewStandard(func(o *retry.StandardOptions) { o.MaxBackoff = 20 * time.Millisecond })
	}))
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f.cache = credentials.NewCache(src, f.secretID, append([]credentials.Option{credentials.WithLogger(logger)}, opts...)...)

	f.poolCfg, err = pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	f.poolCfg.ConnConfig.User = "placeholder"
	f.poolCfg.ConnConfig.Password = ""
	f.poolCfg.BeforeConnect = f.cache.BeforeConnect
	f.poolCfg.MaxConns = 4
	return f
}

func (f *rotationFixture) secretJSON(pw string) string {
	b, _ := json.Marshal(map[string]any{"username": f.role, "password": pw, "engine": "postgres", "host": "ignored", "port": 5432})
	return string(b)
}

func (f *rotationFixture) exec(t *testing.T, sql string) {
	t.Helper()
	if _, err := f.admin.Exec(context.Background(), sql); err != nil {
		t.Fatalf("admin SQL failed: %v", err)
	}
}

// rotate changes the role's password in PostgreSQL and makes the stand-in
// keep serving the old secret for holdCalls more GetSecretValue calls.
func (f *rotationFixture) rotate(t *testing.T, holdCalls int) {
	f.exec(t, "ALTER ROLE "+pgx.Identifier{f.role}.Sanitize()+" PASSWORD "+sqlQuoteLiteral(rotNewPassword))
	f.sm.RotateAfter(f.secretID, f.secretJSON(rotNewPassword), holdCalls)
}

func sqlQuoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// TestRotationRealPostgres: the role's password changes while the secret
// still serves the old one for a few calls; a pool with the cache's
// BeforeConnect and RetryAuth keeps opening new connections without a
// restart, and GetSecretValue is called a bounded number of times.
func TestRotationRealPostgres(t *testing.T) {
	f := newRotationFixture(t, credentials.WithMinInterval(50*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(ctx, f.poolCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()

	// newConnection forces a brand-new login: drop every pooled connection,
	// then acquire one and run a query as the role.
	newConnection := func(ctx context.Context) error {
		resetPool(t, pool)
		return f.cache.RetryAuth(ctx, func(ctx context.Context) error {
			var who string
			if err := pool.QueryRow(ctx, "select current_user").Scan(&who); err != nil {
				return err
			}
			if who != f.role {
				t.Errorf("connected as %q", who)
			}
			return nil
		})
	}
	for range 3 {
		if err := newConnection(ctx); err != nil {
			t.Fatalf("before rotation: %v", err)
		}
	}
	if n := f.sm.Calls(); n != 1 {
		t.Fatalf("%d GetSecretValue calls before rotation, want 1 (cached per TTL, not per connection)", n)
	}

	f.rotate(t, 3)
	// 6 goroutines keep opening new connections through the rotation.
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Go(func() {
			for i := range 3 {
				if err := newConnection(ctx); err != nil {
					t.Errorf("goroutine %d, connection %d after rotation: %v", g, i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	// 1 before + 3 that still served the old password + 1 with the new one;
	// a few more may race in at MinInterval spacing. Far below one per login (18).
	if n := f.sm.Calls(); n > 10 {
		t.Fatalf("%d GetSecretValue calls over one rotation, want at most 10", n)
	}
	st := pool.Stat()
	t.Logf("GetSecretValue calls: %d, new connections: %d", f.sm.Calls(), st.NewConnsCount())
	assertSecretAbsent(t, f.logs.String(), rotOldPassword)
	assertSecretAbsent(t, f.logs.String(), rotNewPassword)
	if !strings.Contains(f.logs.String(), "Database authentication failed; refreshing the secret") {
		t.Error("the rotation retry was not logged")
	}
}

// TestRotationBudgetExhausted: the secret never catches up; RetryAuth gives
// up within its budget with an error that names the secret and carries
// the 28P01, but no password.
func TestRotationBudgetExhausted(t *testing.T) {
	f := newRotationFixture(t, credentials.WithMinInterval(20*time.Millisecond), credentials.WithRotationBudget(500*time.Millisecond))
	ctx := context.Background()
	pool, err := pgxpool.NewWithConfig(ctx, f.poolCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	f.exec(t, "ALTER ROLE "+pgx.Identifier{f.role}.Sanitize()+" PASSWORD "+sqlQuoteLiteral(rotNewPassword))
	start := time.Now()
	err = f.cache.RetryAuth(ctx, pool.Ping)
	if !credentials.IsAuthFailure(err) {
		t.Fatalf("err = %v, want an authentication failure", err)
	}
	if elapsed := time.Since(start); elapsed > 10*time.Second { // generous: the default budget is 60 s
		t.Fatalf("gave up after %s with a 500ms budget", elapsed)
	}
	if !strings.Contains(err.Error(), f.secretID) {
		t.Errorf("error does not name the secret: %v", err)
	}
	assertSecretAbsent(t, err.Error(), rotOldPassword)
	assertSecretAbsent(t, err.Error(), rotNewPassword)
	assertSecretAbsent(t, f.logs.String(), rotOldPassword)
	if n := f.sm.Calls(); n > 1+500/20+1 {
		t.Fatalf("%d GetSecretValue calls in a 500ms budget at 20ms spacing", n)
	}
}

// TestRotationConnectHelper: the single-connection path follows a rotation
// too, and its errors cannot print the password.
func TestRotationConnectHelper(t *testing.T) {
	// The budget leaves room for several SCRAM logins under -race on a
	// busy machine; the last step waits it out once.
	f := newRotationFixture(t, credentials.WithMinInterval(20*time.Millisecond), credentials.WithRotationBudget(6*time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := f.cache.Connect(ctx, f.poolCfg.ConnConfig, safeError)
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	conn.Close(ctx)
	f.rotate(t, 2)
	conn, err = f.cache.Connect(ctx, f.poolCfg.ConnConfig, safeError)
	if err != nil {
		t.Fatalf("Connect after rotation: %v", err)
	}
	conn.Close(ctx)

	// A secret that stays wrong: the error has no password in its text or JSON.
	f.exec(t, "ALTER ROLE "+pgx.Identifier{f.role}.Sanitize()+" PASSWORD 'something-else'")
	_, err = f.cache.Connect(ctx, f.poolCfg.ConnConfig, safeError) // gives up after the budget
	if !credentials.IsAuthFailure(err) {
		t.Fatalf("err = %v, want an authentication failure", err)
	}
	js, _ := json.Marshal(err)
	for _, s := range []string{err.Error(), string(js)} {
		assertSecretAbsent(t, s, rotNewPassword)
	}
}

// managerSecret lets the fixture's role create the Store's schema in its
// database and returns that database and a function giving the RDS
// secret (host, port, database, the role) with a password: what a Manager
// reads from AWS_DB_SECRET.
func (f *rotationFixture) managerSecret(t *testing.T) (secret func(password string) string, db string) {
	t.Helper()
	u, err := url.Parse(f.admin.Config().ConnString())
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(u.Port())
	db = strings.TrimPrefix(u.Path, "/")
	f.exec(t, "GRANT CREATE ON DATABASE "+pgx.Identifier{db}.Sanitize()+" TO "+pgx.Identifier{f.role}.Sanitize())
	return func(pw string) string {
		b, _ := json.Marshal(map[string]any{"username": f.role, "password": pw, "engine": "postgres",
			"host": u.Hostname(), "port": port, "dbname": db})
		return string(b)
	}, db
}

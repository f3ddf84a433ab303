package dbmanager

// Password rotation behind a PgBouncer that checks passwords itself
// (auth_query, scram-sha-256): a login with the old password is refused by
// PgBouncer with its FATAL 08P01 "SASL authentication failed", not by
// PostgreSQL's 28P01, and must be retried through the rotation all the
// same.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/gatewaykit/dbmanager/internal/credentials"
	"github.com/gatewaykit/dbmanager/internal/pgtest"
)

// bouncerRotation is the rotation fixture's role (its password in a
// secret of the Secrets Manager stand-in) reached through a PgBouncer of
// the test's own that looks the role's password up on the server
// (auth_query) at every login, so it sees a rotation at once.
type bouncerRotation struct {
	*rotationFixture
	bouncer  *pgtest.PgBouncer
	db       string
	authFile bool // PgBouncer checks the role's password in its auth file, not by auth_query
}

func newBouncerRotation(t *testing.T, poolMode string) *bouncerRotation {
	t.Helper()
	return newBouncerRotationChecking(t, poolMode, false)
}

// newBouncerRotationChecking is newBouncerRotation with PgBouncer checking
// the role's password in its auth file (authFile) instead of by
// auth_query: a rotation then needs the new password in the file too, and
// a reload (changePassword does both).
func newBouncerRotationChecking(t *testing.T, poolMode string, authFile bool) *bouncerRotation {
	t.Helper()
	f := newRotationFixture(t)
	_, db := f.managerSecret(t)
	adminURL := f.admin.Config().ConnString()
	u, err := url.Parse(adminURL)
	if err != nil {
		t.Fatal("admin URL does not parse")
	}
	check := pgtest.WithAuthQuery()
	if authFile {
		check = pgtest.WithBouncerUser(f.role, rotOldPassword)
	}
	b := &bouncerRotation{rotationFixture: f, db: db, authFile: authFile,
		bouncer: pgtest.NewPgBouncer(t, u.Host, check, pgtest.WithPoolMode(poolMode))}
	f.sm.SetSecretString(f.secretID, b.secret(rotOldPassword))
	return b
}

// secret is the RDS secret of the role with password pw, naming the
// bouncer as the host.
func (b *bouncerRotation) secret(pw string) string {
	js, _ := json.Marshal(map[string]any{"username": b.role, "password": pw, "engine": "postgres",
		"host": "127.0.0.1", "port": b.bouncer.Port(), "dbname": b.db})
	return string(js)
}

// changePassword sets the role's password on the server (with auth_query
// PgBouncer checks it from the next login on) and, with an auth file,
// there too, returning once PgBouncer has reloaded it.
func (b *bouncerRotation) changePassword(t *testing.T, pw string) {
	t.Helper()
	b.exec(t, "ALTER ROLE "+pgx.Identifier{b.role}.Sanitize()+" PASSWORD "+sqlQuoteLiteral(pw))
	if !b.authFile {
		return
	}
	b.bouncer.SetUserPassword(t, b.role, pw)
	u := &url.URL{Scheme: "postgres", User: url.UserPassword(b.role, pw), Host: b.bouncer.Addr(), Path: "/" + b.db, RawQuery: "sslmode=disable"}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := pgx.Connect(ctx, u.String())
		if err == nil {
			c.Close(ctx)
			cancel()
			return
		}
		cancel()
		if time.Now().After(deadline) {
			t.Fatalf("PgBouncer refuses the new password 10 s after its auth file got it: SQLSTATE %v", sqlstateOf(err))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// wrongPasswordAtBouncer checks that PgBouncer, not PostgreSQL, refuses
// pw: a login with it fails with PgBouncer's own 08P01.
func (b *bouncerRotation) wrongPasswordAtBouncer(t *testing.T, pw string) error {
	t.Helper()
	u := &url.URL{Scheme: "postgres", User: url.UserPassword(b.role, pw), Host: b.bouncer.Addr(), Path: "/" + b.db, RawQuery: "sslmode=disable"}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, u.String())
	if err == nil {
		c.Close(ctx)
		t.Fatal("PgBouncer accepted a password the role no longer has")
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "08P01" {
		t.Fatalf("a wrong password through PgBouncer: SQLSTATE %v; want PgBouncer's own 08P01 (is it checking passwords itself?)", sqlstateOf(err))
	}
	return err
}

// TestManagerBehindPgBouncerSurvivesRotation: a Manager reading
// AWS_DB_SECRET (real AWS SDK, Secrets Manager stand-in) through PgBouncer
// in transaction pooling. The password rotates on the server while the
// secret serves the old one for one more call; concurrent Store calls
// that each need a new login all succeed (PgBouncer's 08P01 refusals are
// retried with the refreshed secret, as PostgreSQL's 28P01 are), every
// acknowledged write reads back, and no password shows anywhere.
func TestManagerBehindPgBouncerSurvivesRotation(t *testing.T) {
	surviveRotationBehindPgBouncer(t, newBouncerRotation(t, "transaction"))
}

// TestManagerBehindPgBouncerAuthFileSurvivesRotation is
// TestManagerBehindPgBouncerSurvivesRotation with PgBouncer checking the
// password in its auth file, which the rotation rewrites (and PgBouncer
// reloads) right after the server's ALTER ROLE, as a deployment that
// keeps an auth_file would.
func TestManagerBehindPgBouncerAuthFileSurvivesRotation(t *testing.T) {
	surviveRotationBehindPgBouncer(t, newBouncerRotationChecking(t, "transaction", true))
}

// surviveRotationBehindPgBouncer runs concurrent Store calls, each on a
// new login, across a rotation of f's role behind f's PgBouncer.
func surviveRotationBehindPgBouncer(t *testing.T, f *bouncerRotation) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	m, logs := newTestManager(t, envConfig(t, "AWS_DB_SECRET", f.secretID, "AWS_REGION", "us-east-1", "DB_CONNECT_TIMEOUT", "3"))
	if err := m.Init(ctx); err != nil {
		t.Fatalf("Init from a secret through PgBouncer: %v", err)
	}
	if info := m.Info(); !info.UsingPrimary || info.Source != SourceSecret || info.Port != f.bouncer.Port() || info.User != f.role {
		t.Fatalf("Info = %+v; want the primary through PgBouncer (port %d) from the secret", info, f.bouncer.Port())
	}
	s := m.Store()
	if _, err := s.Put(ctx, "apis", "before", []byte(`0`)); err != nil {
		t.Fatal(err)
	}

	f.changePassword(t, rotNewPassword)
	refusal := f.wrongPasswordAtBouncer(t, rotOldPassword)
	f.sm.RotateAfter(f.secretID, f.secret(rotNewPassword), 1)
	pool, _ := m.Pool()
	resetPool(t, pool) // every later call needs a new login
	callsBefore := f.sm.Calls()
	const writers, writes = 4, 5
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		acked = map[string]string{}
		errs  []error
	)
	start := time.Now()
	for g := range writers {
		wg.Go(func() {
			for i := range writes {
				key, value := fmt.Sprintf("w%d-%d", g, i), strconv.Itoa(g*100+i)
				_, err := s.Put(ctx, "apis", key, []byte(value))
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					acked[key] = value
				}
				mu.Unlock()
				resetPool(t, pool)
			}
		})
	}
	wg.Wait()
	t.Logf("%d Puts across the rotation, each on a new login, took %s; %d GetSecretValue calls",
		writers*writes, time.Since(start), f.sm.Calls()-callsBefore)
	for _, err := range errs {
		assertSecretAbsent(t, err.Error(), rotOldPassword)
		assertSecretAbsent(t, err.Error(), rotNewPassword)
	}
	if len(errs) > 0 {
		t.Fatalf("%d of %d Puts across the rotation failed (as many as directly: none), first: %v", len(errs), writers*writes, errs[0])
	}
	for key, want := range acked {
		got, err := s.Get(ctx, "apis", key)
		if err != nil || string(got.Value) != want {
			t.Errorf("acknowledged Put %s = %s reads back as %q, %v", key, want, got.Value, err)
		}
	}
	// 1 still serving the old password, 1 with the new one, a few more
	// racing in at the cache's spacing: far below one per login (20).
	if n := f.sm.Calls() - callsBefore; n > 6 {
		t.Errorf("%d GetSecretValue calls for %d logins after a rotation; want it bounded (<= 6)", n, writers*writes)
	}
	for _, want := range []string{"Database authentication failed; refreshing the secret and retrying", "Database authentication succeeded after refreshing the secret"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the logs do not say %q: the rotation retry did not run", want)
		}
	}
	h := m.Health(ctx)
	if h.Status != StatusHealthy {
		t.Errorf("Health after the rotation = %s: %s", h.Status, h.Message)
	}
	shown := logs.String() + refusal.Error() + h.Message + mustJSON(t, m.Info()) + mustJSON(t, h)
	assertSecretAbsent(t, shown, rotOldPassword)
	assertSecretAbsent(t, shown, rotNewPassword)
}

// TestManagerBehindPgBouncerWrongPasswordIsAuthentication: a secret whose
// password PgBouncer refuses (it never catches up) is reported as an
// authentication failure, as PostgreSQL's 28P01 is: IsAuthFailure and
// errorType on PgBouncer's error, ValidateConnection's Reason, dbdoctor's
// auth step, the fallback reason in Info and Health, the error.type of the
// recovery attempts. No password shows in any of it.
func TestManagerBehindPgBouncerWrongPasswordIsAuthentication(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	f := newBouncerRotation(t, "transaction")
	const wrong = "WRONG-bnc:@/?#%&=pw-LEAKCHECK-3"
	refusal := f.wrongPasswordAtBouncer(t, wrong)
	if !credentials.IsAuthFailure(refusal) || errorType(refusal) != "authentication" {
		t.Fatalf("PgBouncer's refusal: IsAuthFailure %v, errorType %q; want true, authentication", credentials.IsAuthFailure(refusal), errorType(refusal))
	}
	dsn := (&url.URL{Scheme: "postgres", User: url.UserPassword(f.role, wrong), Host: f.bouncer.Addr(), Path: "/" + f.db, RawQuery: "sslmode=disable"}).String()
	ce := wantReason(t, ValidateConnection(ctx, dsn), ReasonAuth)
	if errorType(ce) != "connection_authentication" {
		t.Errorf("errorType = %q, want connection_authentication", errorType(ce))
	}

	// dbdoctor's auth step names PgBouncer and where it keeps passwords.
	r := Diagnose(ctx, envConfig(t, "DATABASE_URL", dsn))
	if st := stepNamed(t, r, "auth"); st.Status != StepFailed || !strings.Contains(st.Detail, "PgBouncer") || !strings.Contains(st.Fix, "auth_query") {
		t.Errorf("auth step through PgBouncer: %s %q, fix %q; want failed, naming PgBouncer and auth_query", st.Status, st.Detail, st.Fix)
	}
	noLeak(t, r, wrong)

	f.sm.SetSecretString(f.secretID, f.secret(wrong))
	h := newOTelHarness(t)
	m, logs := newTestManager(t, envConfig(t, "AWS_DB_SECRET", f.secretID, "AWS_REGION", "us-east-1",
		"DB_CONNECT_TIMEOUT", "3"), h.options()...)
	if err := m.Init(ctx); err != nil {
		t.Fatalf("Init: %v; want the fallback to memory", err)
	}
	info := m.Info()
	if info.UsingPrimary || !strings.Contains(info.FallbackReason, string(ReasonAuth)) {
		t.Errorf("Info: primary %v, fallback reason %q; want memory because of %q", info.UsingPrimary, info.FallbackReason, ReasonAuth)
	}
	health := m.Health(ctx)
	if health.Status != StatusDegraded || !strings.Contains(health.Message, string(ReasonAuth)) {
		t.Errorf("Health = %s: %q; want degraded naming %q", health.Status, health.Message, ReasonAuth)
	}
	h.eventuallyMetric(t, 20*time.Second, "a recovery attempt failing authentication", func(rm metricdata.ResourceMetrics) bool {
		return sumWhere(rm, "dbmanager.recovery.attempts", "error.type=connection_authentication") >= 1
	})
	shown := logs.String() + ce.Error() + mustJSON(t, info) + mustJSON(t, health) + h.everyText(t)
	assertSecretAbsent(t, shown, wrong)
	assertSecretAbsent(t, shown, rotOldPassword)
}

// TestManagerBehindPgBouncerUnknownUserIsAuthentication: a user name
// PgBouncer's auth_query does not find is refused with its FATAL 08P01
// "no such user", where PostgreSQL itself answers 28P01 for an unknown
// role: both are the authentication reason, and dbdoctor's auth step
// names PgBouncer's auth_query and the role to create.
func TestManagerBehindPgBouncerUnknownUserIsAuthentication(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	f := newBouncerRotation(t, "transaction")
	const password = "unknown-user-pw-LEAKCHECK-4"
	dsn := (&url.URL{Scheme: "postgres", User: url.UserPassword("no_such_role", password), Host: f.bouncer.Addr(), Path: "/" + f.db, RawQuery: "sslmode=disable"}).String()
	ce := wantReason(t, ValidateConnection(ctx, dsn), ReasonAuth)
	var pgErr *pgconn.PgError
	if !errors.As(ce, &pgErr) || pgErr.Code != "08P01" || pgErr.Message != "no such user" {
		t.Fatalf("unknown user through PgBouncer: %v; want its 08P01 \"no such user\"", ce)
	}
	if errorType(ce) != "connection_authentication" {
		t.Errorf("errorType = %q, want connection_authentication", errorType(ce))
	}
	r := Diagnose(ctx, envConfig(t, "DATABASE_URL", dsn))
	if st := stepNamed(t, r, "auth"); st.Status != StepFailed || !strings.Contains(st.Detail, "PgBouncer") ||
		!strings.Contains(st.Fix, "auth_query") || !strings.Contains(st.Fix, `CREATE ROLE "no_such_role" LOGIN`) {
		t.Errorf("auth step for an unknown user through PgBouncer: %s %q, fix %q; want failed, naming PgBouncer's auth_query and the role", st.Status, st.Detail, st.Fix)
	}
	noLeak(t, r, password)
	assertSecretAbsent(t, ce.Error(), password)
}

// TestNewPoolBehindPgBouncerAcrossRotation: NewPool from AWS_DB_SECRET
// through PgBouncer. After the password rotates, a connection opened
// before keeps working; the one new login that meets the old (cached)
// password fails with PgBouncer's 08P01, which marks the secret stale, so
// the next new connection reads it again and logs in, as directly.
func TestNewPoolBehindPgBouncerAcrossRotation(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	f := newBouncerRotation(t, "session")
	logger, logs := captureLogs(t)
	cfg := envConfig(t, "AWS_DB_SECRET", f.secretID, "AWS_REGION", "us-east-1", "DB_CONNECT_TIMEOUT", "3", "DB_POOL_SIZE", "1")
	pool, err := NewPool(ctx, cfg, WithLogger(logger))
	if err != nil {
		t.Fatalf("NewPool from a secret through PgBouncer: %v", err)
	}
	defer pool.Close()
	var user string
	if err := pool.QueryRow(ctx, "SELECT current_user").Scan(&user); err != nil || user != f.role {
		t.Fatalf("current_user = %q, %v; want the secret's %q", user, err, f.role)
	}

	callsBefore := f.sm.Calls()
	failures := newPoolAcrossRotation(ctx, t, pool, func() {
		f.changePassword(t, rotNewPassword)
		f.sm.SetSecretString(f.secretID, f.secret(rotNewPassword))
	})
	if n := f.sm.Calls() - callsBefore; n < 1 || n > 2 {
		t.Errorf("%d GetSecretValue calls after the rotation; want the secret read again once (at most twice)", n)
	}
	shown := logs.String()
	for _, err := range failures {
		shown += err.Error()
	}
	assertSecretAbsent(t, shown, rotOldPassword)
	assertSecretAbsent(t, shown, rotNewPassword)
}

// TestManagerBehindPgBouncerRereadsARefusedSecret is
// TestManagerRereadsARefusedSecret behind PgBouncer: the secret's password
// is refused by PgBouncer itself (08P01) at Init, so the Manager serves
// from memory; once the secret is fixed, the next recovery attempt reads
// it again and moves back, with what was written meanwhile.
func TestManagerBehindPgBouncerRereadsARefusedSecret(t *testing.T) {
	f := newBouncerRotation(t, "transaction")
	rereadRefusedSecret(t, f.rotationFixture, f.secret)
}

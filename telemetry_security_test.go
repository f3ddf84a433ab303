package dbmanager

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/gatewaykit/dbmanager/internal/pgtest"
)

// TestTelemetryShowsNoSecretKeyOrValue drives every path that reports to
// OpenTelemetry with a recognisable password, keys, values, a collection
// and statement arguments, and scans every metric attribute, span name,
// attribute, status and event for them.
func TestTelemetryShowsNoSecretKeyOrValue(t *testing.T) {
	ctx := context.Background()
	admin := pgtest.URL(t)
	host, port, db := serverParts(t, admin)
	pw := "pw-" + leakMarker
	role := roleWithPassword(t, admin, pw)
	execURL(t, admin, "GRANT CREATE ON DATABASE "+pgx.Identifier{db}.Sanitize()+" TO "+role)
	dsn := BuildURL(role, pw, host, port, db) + "?sslmode=disable"

	h := newOTelHarness(t)
	m, logs := newTestManager(t, envConfig(t, "DATABASE_URL", dsn, "DB_SLOW_QUERY_MS", "1"), h.options()...)
	if err := m.Init(ctx); err != nil {
		t.Fatal(err)
	}
	s := m.Store()
	const coll = "coll-KEYMARK-c"
	key := "key-KEYMARK-" + leakMarker
	value := []byte(`{"secret":"value-VALMARK-` + leakMarker + `"}`)
	if _, err := s.Put(ctx, coll, key, value); err != nil {
		t.Fatal(err)
	}
	// One Store statement certainly slower than DB_SLOW_QUERY_MS: a Put
	// that waits for another session's lock on its row (the statements
	// alone may well take under a millisecond).
	putBehindLock(t, dsn, s, coll, key, value)
	if _, err := s.Get(ctx, coll, key); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, coll, key, value, IfAbsent()); !errors.Is(err, ErrConflict) {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, coll, key, []byte(`not json VALMARK`+leakMarker)); !errors.Is(err, ErrInvalid) {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, coll, key+"-missing"); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	if _, err := s.List(ctx, coll, ListOptions{Prefix: "key-KEYMARK", After: key}); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Get(cctx, coll, key); err == nil {
		t.Fatal("Get with a cancelled context succeeded")
	}
	if err := s.Delete(ctx, coll, key); err != nil {
		t.Fatal(err)
	}
	// The caller's own SQL under a recording span: arguments and a literal
	// PostgreSQL quotes back in its error.
	pool, _ := m.Pool()
	pctx, parent := h.tp.Tracer("test").Start(ctx, "handler")
	var out string
	if err := pool.QueryRow(pctx, "SELECT $1::text", "arg-VALMARK-"+leakMarker).Scan(&out); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(pctx, "SELECT 'lit-VALMARK-"+leakMarker+"'::int"); err == nil {
		t.Fatal("a bad cast succeeded")
	}
	parent.End()

	// A Manager whose password is wrong: its Init, fallback and recovery
	// attempts report errors too.
	bad, _ := newTestManager(t, envConfig(t, "DATABASE_URL", BuildURL(role, "wrong-"+pw, host, port, db)+"?sslmode=disable",
		"DB_CONNECT_TIMEOUT", "2"), h.options()...)
	if err := bad.Init(ctx); err != nil {
		t.Fatal(err)
	}
	h.eventuallyMetric(t, 10*time.Second, "a failed recovery attempt", func(rm metricdata.ResourceMetrics) bool {
		return sumWhere(rm, "dbmanager.recovery.attempts", "error.type=connection_authentication") >= 1
	})

	text := h.everyText(t)
	for _, secret := range []string{leakMarker, "KEYMARK", "VALMARK", coll} {
		if strings.Contains(text, secret) {
			t.Errorf("telemetry shows %q:\n%s", secret, text)
		}
	}
	for _, want := range []string{"dbmanager.Put", "SELECT dbmanager.records", "error.type=invalid", "error.type=22P02", "SQLSTATE 22P02"} {
		if !strings.Contains(text, want) {
			t.Errorf("telemetry lacks %q (the scan looked at the wrong things?)", want)
		}
	}
	// The slow-query log names the operation and collection, never a key
	// or a value.
	assertLogged(t, logs, "Slow database statement", "collection="+coll)
	if l := logs.String(); strings.Contains(l, "KEYMARK-"+leakMarker) || strings.Contains(l, "VALMARK") || strings.Contains(l, pw) {
		t.Errorf("the log shows a key, value or password:\n%s", l)
	}
}

// TestTelemetrySecretFetchesAndRotationRetries counts the secret's fetches
// and the logins retried across a password rotation, through the real AWS
// SDK against the Secrets Manager stand-in, and scans the telemetry for
// both passwords.
func TestTelemetrySecretFetchesAndRotationRetries(t *testing.T) {
	ctx := context.Background()
	f := newRotationFixture(t)
	secret, _ := f.managerSecret(t)
	f.sm.SetSecretString(f.secretID, secret(rotOldPassword))
	h := newOTelHarness(t)
	m, _ := newTestManager(t, envConfig(t, "AWS_DB_SECRET", f.secretID, "AWS_REGION", "us-east-1", "DB_CONNECT_TIMEOUT", "3"), h.options()...)
	if err := m.Init(ctx); err != nil {
		t.Fatal(err)
	}
	f.exec(t, "ALTER ROLE "+pgx.Identifier{f.role}.Sanitize()+" PASSWORD "+sqlQuoteLiteral(rotNewPassword))
	f.sm.RotateAfter(f.secretID, secret(rotNewPassword), 1)
	pool, _ := m.Pool()
	resetPool(t, pool)
	if _, err := m.Store().Put(ctx, "apis", "after", []byte(`1`)); err != nil {
		t.Fatalf("Put after the rotation: %v", err)
	}
	rm := h.collect(t)
	checkShapes(t, rm)
	if got := sumWhere(rm, "dbmanager.secret.fetches", "dbmanager.outcome=ok"); got < 2 {
		t.Errorf("successful secret fetches = %v; want >= 2 (start-up and after the rotation)", got)
	}
	if got := sumWhere(rm, "dbmanager.secret.rotation_retries"); got < 1 {
		t.Errorf("rotation retries = %v; want >= 1", got)
	}
	text := h.everyText(t)
	for _, pw := range []string{rotOldPassword, rotNewPassword, "LEAKCHECK"} {
		if strings.Contains(text, pw) {
			t.Errorf("telemetry shows a password")
		}
	}
}

// putBehindLock runs s.Put of key while another session holds the row's
// lock for 50 ms, so that the Put takes at least that long.
func putBehindLock(t *testing.T, dsn string, s Store, coll, key string, value []byte) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT 1 FROM dbmanager.records WHERE collection = $1 AND key = $2 FOR UPDATE`, coll, key); err != nil {
		t.Fatal(err)
	}
	released := make(chan error, 1)
	go func() {
		time.Sleep(50 * time.Millisecond)
		released <- tx.Commit(ctx)
	}()
	if _, err := s.Put(ctx, coll, key, value); err != nil {
		t.Fatal(err)
	}
	if err := <-released; err != nil {
		t.Fatal(err)
	}
}

package dbmanager

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gatewaykit/dbmanager/internal/pgtest"
)

func TestSlowQueryAndLeakSettings(t *testing.T) {
	for _, c := range []struct {
		env       []string
		slow      time.Duration
		leak      time.Duration
		badVar    string
		badReason string
	}{
		{env: nil},
		{env: []string{"DB_SLOW_QUERY_MS", "250", "DB_LEAK_DETECTION_MS", "2000"}, slow: 250 * time.Millisecond, leak: 2 * time.Second},
		{env: []string{"DB_SLOW_QUERY_MS", "0", "DB_LEAK_DETECTION_MS", "0"}},
		{env: []string{"DB_LEAK_DETECTION_MS", "1999"}, badVar: "DB_LEAK_DETECTION_MS", badReason: "at least 2000"},
		{env: []string{"DB_LEAK_DETECTION_MS", "5s"}, badVar: "DB_LEAK_DETECTION_MS", badReason: "milliseconds"},
		{env: []string{"DB_SLOW_QUERY_MS", "-1"}, badVar: "DB_SLOW_QUERY_MS", badReason: "milliseconds"},
		{env: []string{"DB_SLOW_QUERY_MS", "99999999999"}, badVar: "DB_SLOW_QUERY_MS", badReason: "up to"},
	} {
		env := map[string]string{}
		for i := 0; i+1 < len(c.env); i += 2 {
			env[c.env[i]] = c.env[i+1]
		}
		cfg, err := LoadConfig(func(k string) string { return env[k] })
		if c.badVar != "" {
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Var != c.badVar || !strings.Contains(ce.Problem, c.badReason) || !errors.Is(err, ErrConfig) {
				t.Errorf("LoadConfig(%v) = %v; want a *ConfigError for %s saying %q", c.env, err, c.badVar, c.badReason)
			}
			continue
		}
		if err != nil || cfg.SlowQueryThreshold != c.slow || cfg.LeakDetectionThreshold != c.leak {
			t.Errorf("LoadConfig(%v) = slow %v, leak %v, %v; want %v, %v", c.env, cfg.SlowQueryThreshold, cfg.LeakDetectionThreshold, err, c.slow, c.leak)
		}
	}
}

// lockRow starts a transaction on a connection of the Manager's pool that
// holds the row of key locked; commit releases it.
func lockRow(t *testing.T, m *Manager, key string) (commit func()) {
	t.Helper()
	ctx := context.Background()
	pool, _ := m.Pool()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT 1 FROM dbmanager.records WHERE collection = 'apis' AND key = $1 FOR UPDATE`, key); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := tx.Commit(ctx); err != nil {
			t.Error(err)
		}
	}
}

func TestSlowQueryLoggedOnceAndCounted(t *testing.T) {
	ctx := context.Background()
	h := newOTelHarness(t)
	// 300 ms: well above what an ordinary statement takes on a loaded
	// machine (Init's own statements reached 50-80 ms at load 5-10).
	m, logs := newTestManager(t, envConfig(t, "DATABASE_URL", pgtest.URL(t), "DB_SLOW_QUERY_MS", "300"), h.options()...)
	if err := m.Init(ctx); err != nil {
		t.Fatal(err)
	}
	s := m.Store()
	const key = "slow-key-K9"
	if _, err := s.Put(ctx, "apis", key, []byte(`{"v":"VAL9"}`)); err != nil {
		t.Fatal(err)
	}
	// Only what follows counts: set-up statements may be slow on a loaded
	// machine too.
	setup := len(logs.String())
	rm0 := h.collect(t)
	// A Put that waits for a row lock another transaction holds.
	commit := lockRow(t, m, key)
	done := make(chan error, 1)
	go func() {
		_, err := s.Put(ctx, "apis", key, []byte(`{"v":"VAL9"}`))
		done <- err
	}()
	time.Sleep(500 * time.Millisecond)
	commit()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// The caller's own slow statement.
	pool, _ := m.Pool()
	if _, err := pool.Exec(ctx, "SELECT pg_sleep(0.4)"); err != nil {
		t.Fatal(err)
	}

	var slow []string
	for _, l := range strings.Split(logs.String()[setup:], "\n") {
		if strings.Contains(l, "Slow database statement") {
			slow = append(slow, l)
		}
	}
	if len(slow) != 2 {
		t.Fatalf("%d slow-statement lines; want 2 (the blocked Put, pg_sleep):\n%s", len(slow), logs.String())
	}
	if l := slow[0]; !strings.Contains(l, "level=WARN") || !strings.Contains(l, `statement="INSERT dbmanager.records"`) ||
		!strings.Contains(l, "operation=put") || !strings.Contains(l, "collection=apis") || !strings.Contains(l, "duration=") ||
		strings.Contains(l, key) || strings.Contains(l, "VAL9") {
		t.Errorf("slow Put logged as %q; want WARN, the statement, operation, collection and duration, no key or value", l)
	}
	if l := slow[1]; !strings.Contains(l, "statement=SELECT") || strings.Contains(l, "operation=") || strings.Contains(l, "pg_sleep") {
		t.Errorf("slow caller statement logged as %q", l)
	}
	rm := h.collect(t)
	checkShapes(t, rm)
	since := func(match ...string) float64 {
		return sumWhere(rm, "dbmanager.slow_queries", match...) - sumWhere(rm0, "dbmanager.slow_queries", match...)
	}
	if got := since("db.operation.name=INSERT", "db.collection.name=dbmanager.records"); got != 1 {
		t.Errorf("slow INSERTs counted = %v; want 1", got)
	}
	if got := since(); got != 2 {
		t.Errorf("slow statements counted = %v; want 2", got)
	}
}

// TestLeakDetection holds a connection taken from Pool() past
// DB_LEAK_DETECTION_MS while a Store call waits just as long on the row
// it locked: only the caller's connection is reported, once at WARN with
// the stack that took it and once at INFO when it comes back.
func TestLeakDetection(t *testing.T) {
	ctx := context.Background()
	h := newOTelHarness(t)
	m, logs := newTestManager(t, envConfig(t, "DATABASE_URL", pgtest.URL(t), "DB_LEAK_DETECTION_MS", "2000"), h.options()...)
	if err := m.Init(ctx); err != nil {
		t.Fatal(err)
	}
	s := m.Store()
	if _, err := s.Put(ctx, "apis", "k", []byte(`1`)); err != nil {
		t.Fatal(err)
	}
	commit := lockRow(t, m, "k") // the caller's connection, taken by pool.Begin
	done := make(chan error, 1)
	go func() {
		_, err := s.Put(ctx, "apis", "k", []byte(`2`)) // the Store's, waiting on the lock
		done <- err
	}()
	eventually(t, 10*time.Second, "the leak warning", func() bool {
		return strings.Contains(logs.String(), "possible leak")
	})
	time.Sleep(300 * time.Millisecond) // the Store's connection is now held past the threshold too
	commit()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the leaked connection to be logged back", func() bool {
		return strings.Contains(logs.String(), "Leaked connection returned to the pool")
	})
	out := logs.String()
	if n := strings.Count(out, "possible leak"); n != 1 {
		t.Errorf("%d leak warnings; want 1 (the caller's connection only):\n%s", n, out)
	}
	warn := out[strings.Index(out, "possible leak"):]
	warn = warn[:strings.IndexByte(warn, '\n')]
	if !strings.Contains(out, "level=WARN msg=\"Connection held longer than DB_LEAK_DETECTION_MS; possible leak\"") ||
		!strings.Contains(warn, "TestLeakDetection") || !strings.Contains(warn, "lockRow") || !strings.Contains(warn, "held=") {
		t.Errorf("leak warning %q; want WARN with the stack that took the connection", warn)
	}
	if n := strings.Count(out, "Leaked connection returned to the pool"); n != 1 || !strings.Contains(out, "level=INFO msg=\"Leaked connection returned to the pool\"") {
		t.Errorf("%d INFO lines for the leaked connection's return; want 1", n)
	}
	rm := h.collect(t)
	checkShapes(t, rm)
	if got := sumWhere(rm, "dbmanager.connection.leaks"); got != 1 {
		t.Errorf("leaks counted = %v; want 1", got)
	}
}

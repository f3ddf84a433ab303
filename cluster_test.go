package dbmanager

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gatewaykit/dbmanager/internal/pgtest"
)

// TestInitOnAReadOnlyNodeFallsBackSayingReadOnly: a single-host DSN whose
// node answers but is read-only is not "the primary": Init keeps trying
// for DB_CONNECT_TIMEOUT, then falls back to memory with a reason that
// says read-only (never a schema error), and health says so.
func TestInitOnAReadOnlyNodeFallsBackSayingReadOnly(t *testing.T) {
	srv := pgtest.NewServer(t)
	dbURL := srv.URL(t)
	srv.Fence(t)
	for name, extra := range map[string]string{
		"default":                  "",
		"target_session_attrs=any": "&target_session_attrs=any", // the choice is honoured; still not a schema error
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			m, logs := newTestManager(t, envConfig(t, "DATABASE_URL", dbURL+extra, "DB_CONNECT_TIMEOUT", "1"),
				WithRecoveryBackoff(time.Hour, time.Hour))
			start := time.Now()
			if err := m.Init(ctx); err != nil {
				t.Fatal(err)
			}
			took := time.Since(start)
			info := m.Info()
			if info.UsingPrimary || !strings.Contains(info.FallbackReason, "read-only") || strings.Contains(strings.ToLower(info.FallbackReason), "schema") {
				t.Fatalf("Info after Init on a read-only node: using primary %v, reason %q", info.UsingPrimary, info.FallbackReason)
			}
			if name == "default" && took < 900*time.Millisecond {
				t.Errorf("Init gave up after %s; it should keep trying for DB_CONNECT_TIMEOUT (1 s)", took)
			}
			h := m.Health(ctx)
			if h.Status != StatusDegraded || !strings.Contains(h.Message, "read-only") {
				t.Errorf("Health = %+v; want degraded, saying read-only", h)
			}
			assertLogged(t, logs, "Primary database connection failed. Falling back to in-memory storage.", "read-only")
			t.Logf("Init took %s; reason: %s", took, info.FallbackReason)
		})
	}
}

// TestInitWaitsForTheWriter: a single endpoint that is read-only at first
// (the old writer, stale DNS) and accepts writes within DB_CONNECT_TIMEOUT
// is the primary.
func TestInitWaitsForTheWriter(t *testing.T) {
	srv := pgtest.NewServer(t)
	dbURL := srv.URL(t)
	srv.Fence(t)
	m, _ := newTestManager(t, envConfig(t, "DATABASE_URL", dbURL, "DB_CONNECT_TIMEOUT", "5"))
	done := make(chan error, 1)
	go func() { done <- m.Init(context.Background()) }()
	time.Sleep(700 * time.Millisecond)
	srv.Unfence(t)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if info := m.Info(); !info.UsingPrimary {
		t.Fatalf("Init did not wait for the node to accept writes: %+v", info)
	}
	if _, err := m.Store().Put(context.Background(), "c", "k", []byte(`1`)); err != nil {
		t.Fatal(err)
	}
}

// TestMultiHostInitSkipsTheStandby lists the standby first: the Manager
// asks for a writable node, so it serves from the primary, and Info, the
// start-up log and health show every host.
func TestMultiHostInitSkipsTheStandby(t *testing.T) {
	ctx := context.Background()
	c := pgtest.NewCluster(t, pgtest.WithStandbys(1))
	db := c.Database(t)
	user, pw := clusterLogin(t, c)
	primary, standby := c.Primary(), c.Standbys()[0]
	dbURL := loginURL(user, pw, db, nodeAddr(standby), nodeAddr(primary))
	m, logs := newTestManager(t, envConfig(t, "DATABASE_URL", dbURL))
	if err := m.Init(ctx); err != nil {
		t.Fatal(err)
	}
	info := m.Info()
	want := nodeAddr(standby) + "," + nodeAddr(primary)
	if !info.UsingPrimary || strings.Join(info.Hosts, ",") != want || info.Host != "127.0.0.1,127.0.0.1" || info.Port != 0 {
		t.Fatalf("Info = %+v; want the primary in use and hosts %s", info, want)
	}
	if _, err := m.Store().Put(ctx, "c", "k", []byte(`1`)); err != nil {
		t.Fatalf("a write through a multi-host URL whose first host is a standby: %v", err)
	}
	h := m.Health(ctx)
	if h.Status != StatusHealthy {
		t.Fatalf("Health = %+v", h)
	}
	assertLogged(t, logs, "hosts="+want)
	b, _ := json.Marshal(info)
	hj, _ := json.Marshal(h)
	assertNoLeakIn(t, "Info, Health or logs", string(b), string(hj), logs.String())
}

// TestHealthSeesAReadOnlyPrimary: the node the pool is on turns read-only
// while running, with no other writer. Health must say unhealthy (its
// check is refused like a write), never healthy; after the node accepts
// writes again it says healthy.
func TestHealthSeesAReadOnlyPrimary(t *testing.T) {
	ctx := context.Background()
	srv := pgtest.NewServer(t)
	m, logs := newTestManager(t, envConfig(t, "DATABASE_URL", srv.URL(t), "DB_CONNECT_TIMEOUT", "1"))
	if err := m.Init(ctx); err != nil {
		t.Fatal(err)
	}
	s := m.Store()
	for range 5 {
		if _, err := s.Put(ctx, "c", "k", []byte(`1`)); err != nil {
			t.Fatal(err)
		}
	}
	if h := m.Health(ctx); h.Status != StatusHealthy {
		t.Fatalf("Health before = %+v", h)
	}
	srv.Fence(t)
	for i := range 3 {
		h := m.Health(ctx)
		if h.Status != StatusUnhealthy || !strings.Contains(h.Message, "read-only") {
			t.Fatalf("Health %d on a read-only primary = %+v; want unhealthy, saying read-only", i, h)
		}
		if _, err := s.Get(ctx, "c", "k"); err != nil {
			t.Logf("a read on the read-only node: %v", err)
		}
		cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		_, err := s.Put(cctx, "c", "k", []byte(`2`))
		cancel()
		if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrOutcomeUnknown) {
			t.Fatalf("a write on a read-only node = %v; want ErrUnavailable (it never ran)", err)
		}
	}
	srv.Unfence(t)
	eventually(t, 5*time.Second, "health to say healthy again", func() bool { return m.Health(ctx).Status == StatusHealthy })
	if _, err := s.Put(ctx, "c", "k", []byte(`3`)); err != nil {
		t.Fatal(err)
	}
	if n := countLines(logs, "Primary database connection lost"); n != 1 {
		t.Errorf("%d 'connection lost' lines for one outage; log:\n%s", n, logs)
	}
	if n := countLines(logs, "Primary database connection restored"); n != 1 {
		t.Errorf("%d 'restored' lines for one outage; log:\n%s", n, logs)
	}
}

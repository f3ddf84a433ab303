package dbmanager

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/gatewaykit/dbmanager/internal/faultproxy"
	"github.com/gatewaykit/dbmanager/internal/pgtest"
)

// viaProxy rewrites a database URL to go through a fault proxy.
func viaProxy(t *testing.T, raw string) (string, *faultproxy.Proxy) {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	p := faultproxy.New(t, u.Host)
	u.Host = p.Addr()
	return u.String(), p
}

func TestPrimaryStoppedWhileRunning(t *testing.T) {
	ctx := context.Background()
	srv := pgtest.NewServer(t)
	m, logs := newTestManager(t, envConfig(t, "DATABASE_URL", srv.URL(t), "DB_CONNECT_TIMEOUT", "1"))
	if err := m.Init(ctx); err != nil {
		t.Fatal(err)
	}
	s := m.Store()
	for i := range 10 { // several pooled connections
		if _, err := s.Put(ctx, "apis", fmt.Sprint("k", i), []byte(`{"before":true}`)); err != nil {
			t.Fatal(err)
		}
	}

	srv.Stop(t)
	for i := range 5 {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		start := time.Now()
		_, err := s.Get(cctx, "apis", "k1")
		cancel()
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Get %d while the server is down = %v; want ErrUnavailable", i, err)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("Get while down took %s; want it to fail fast", took)
		}
	}
	if h := m.Health(ctx); h.Status != StatusUnhealthy || !h.UsingPrimary {
		t.Errorf("Health while down = %+v; want unhealthy on the primary", h)
	}
	if !m.Info().PrimaryFailing {
		t.Error("Info().PrimaryFailing = false while the server is down")
	}
	if _, err := s.Get(ctx, "apis", "k1"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("data in PostgreSQL must not be shadowed by memory while it is down: %v", err)
	}

	srv.Start(t)
	back := eventually(t, 10*time.Second, "calls to succeed again", func() bool {
		_, err := s.Get(ctx, "apis", "k1")
		return err == nil
	})
	t.Logf("calls succeed %s after the server started", back)
	// From now on no caller may meet a connection that died in the outage.
	for i := range 50 {
		if _, err := s.Get(ctx, "apis", fmt.Sprint("k", i%10)); err != nil {
			t.Fatalf("call %d after recovery: %v", i, err)
		}
	}
	if h := m.Health(ctx); h.Status != StatusHealthy {
		t.Errorf("Health after restart = %+v", h)
	}
	assertLogged(t, logs, "Primary database connection lost", "Primary database connection restored")
}

func TestPrimaryRestartedQuicklyNoCallerSeesDeadConnection(t *testing.T) {
	ctx := context.Background()
	srv := pgtest.NewServer(t)
	m, _ := newTestManager(t, envConfig(t, "DATABASE_URL", srv.URL(t)))
	if err := m.Init(ctx); err != nil {
		t.Fatal(err)
	}
	s := m.Store()
	// Fill the pool with connections that were used a moment ago.
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Put(ctx, "apis", fmt.Sprint("k", i), []byte(`1`)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	srv.Stop(t)
	srv.Start(t)
	// Every pooled connection died with the old server, a moment ago (too
	// recently for the idle ping). No call, read or write, may meet one.
	for i := range 40 {
		if i%2 == 0 {
			if _, err := s.Get(ctx, "apis", fmt.Sprint("k", i%8)); err != nil {
				t.Fatalf("Get %d after the restart: %v", i, err)
			}
		} else if _, err := s.Put(ctx, "apis", fmt.Sprint("k", i%8), []byte(`2`)); err != nil {
			t.Fatalf("Put %d after the restart: %v", i, err)
		}
	}
}

func TestPartitionAndResetWhileRunning(t *testing.T) {
	ctx := context.Background()
	dbURL, proxy := viaProxy(t, pgtest.URL(t))
	m, _ := newTestManager(t, envConfig(t, "DATABASE_URL", dbURL, "DB_CONNECT_TIMEOUT", "1"))
	if err := m.Init(ctx); err != nil {
		t.Fatal(err)
	}
	s := m.Store()
	if _, err := s.Put(ctx, "apis", "k", []byte(`1`)); err != nil {
		t.Fatal(err)
	}

	// bounded asserts the bound: a Get through the broken network
	// fails within its deadline plus 50 ms. On a loaded machine a single
	// call can overshoot by a scheduling delay (460 ms seen at load 8.7), so
	// an overshoot is measured again, up to three times: a call that really
	// waits past its deadline does so every time.
	bounded := func(what string) {
		t.Helper()
		const deadline = 300 * time.Millisecond
		var took time.Duration
		var err error
		for range 3 {
			cctx, cancel := context.WithTimeout(ctx, deadline)
			start := time.Now()
			_, err = s.Get(cctx, "apis", "k")
			took = time.Since(start)
			cancel()
			if err == nil {
				t.Errorf("%s: Get succeeded through a broken network", what)
				return
			}
			if took <= deadline+50*time.Millisecond {
				return
			}
			t.Logf("%s: Get took %s (deadline %s + 50ms); measuring again", what, took, deadline)
		}
		t.Errorf("%s: Get took %s three times; want at most its deadline %s + 50ms (err %v)", what, took, deadline, err)
	}
	heals := func(what string) {
		t.Helper()
		proxy.Heal()
		took := eventually(t, 5*time.Second, what+": calls to succeed after healing", func() bool {
			cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			defer cancel()
			_, err := s.Get(cctx, "apis", "k")
			return err == nil
		})
		t.Logf("%s: healed %s after the network", what, took)
		if took > time.Second {
			t.Errorf("%s: the pool took %s to heal; want within a second", what, took)
		}
	}

	proxy.BlackHole()
	bounded("black hole")
	bounded("black hole, again")
	heals("black hole")

	proxy.Reset()
	bounded("reset")
	heals("reset")

	proxy.Reset() // cut the pooled connections, then refuse new ones
	proxy.Refuse()
	bounded("refused")
	heals("refused")
}

func TestCloseDuringRecoveryAndLoadLeavesNothing(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ctx := context.Background()

	// During recovery: the primary never answers.
	m := New(envConfig(t, "DATABASE_URL", "postgres://u:p@"+refusedAddr(t)+"/db?sslmode=disable"),
		WithLogger(discardLogger()), WithRecoveryBackoff(5*time.Millisecond, 20*time.Millisecond))
	if err := m.Init(ctx); err != nil {
		t.Fatal(err)
	}
	load(t, m, func() {
		time.Sleep(50 * time.Millisecond)
		if err := m.Close(ctx); err != nil {
			t.Errorf("Close during recovery: %v", err)
		}
	})

	// During load on the primary.
	m2 := New(envConfig(t, "DATABASE_URL", pgtest.URL(t)), WithLogger(discardLogger()))
	if err := m2.Init(ctx); err != nil {
		t.Fatal(err)
	}
	load(t, m2, func() {
		time.Sleep(100 * time.Millisecond)
		if err := m2.Close(ctx); err != nil {
			t.Errorf("Close under load: %v", err)
		}
	})
}

// load runs writers against m's Store until they see ErrClosed, calling
// during() meanwhile.
func load(t *testing.T, m *Manager, during func()) {
	t.Helper()
	var wg sync.WaitGroup
	var closedSeen atomic.Int32
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				_, err := m.Store().Put(context.Background(), "c", fmt.Sprint(w, "-", i), []byte(`{}`))
				if errors.Is(err, ErrClosed) {
					closedSeen.Add(1)
					return
				}
			}
		}()
	}
	during()
	wg.Wait()
	if closedSeen.Load() != 8 {
		t.Errorf("%d of 8 writers saw ErrClosed", closedSeen.Load())
	}
}

// TestCallerCancelEndsABoundedCallAtOnce: a call whose context can be
// cancelled but has no deadline gets the router's bound (no timer of its
// own), and the caller's cancel still ends it at once on a silent network,
// long before that bound.
func TestCallerCancelEndsABoundedCallAtOnce(t *testing.T) {
	ctx := context.Background()
	s, proxy := storeWithOneRowBehindAProxy(t, "10", "10")
	proxy.BlackHole()
	defer proxy.Heal()
	cctx, cancel := context.WithCancel(ctx)
	time.AfterFunc(200*time.Millisecond, cancel)
	start := time.Now()
	_, err := s.Get(cctx, "apis", "k")
	took := time.Since(start)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Get after the caller's cancel: %v; want context.Canceled", err)
	}
	if errors.Is(err, ErrUnavailable) {
		t.Errorf("the caller's cancel was reported as the router's bound: %v", err)
	}
	// The bound is DB_CONNECT_TIMEOUT + DB_POOL_TIMEOUT = 20 s.
	if took > 10*time.Second {
		t.Errorf("Get took %s after a cancel at 200 ms; want it to end at once", took)
	}
}

// storeWithOneRowBehindAProxy is a Manager's Store on PostgreSQL reached
// through a fault proxy, with DB_CONNECT_TIMEOUT and DB_POOL_TIMEOUT as
// given (seconds) and the row apis/k written.
func storeWithOneRowBehindAProxy(t *testing.T, connectTimeout, poolTimeout string) (Store, *faultproxy.Proxy) {
	t.Helper()
	ctx := context.Background()
	dbURL, proxy := viaProxy(t, pgtest.URL(t))
	m, _ := newTestManager(t, envConfig(t, "DATABASE_URL", dbURL, "DB_CONNECT_TIMEOUT", connectTimeout, "DB_POOL_TIMEOUT", poolTimeout))
	if err := m.Init(ctx); err != nil {
		t.Fatal(err)
	}
	s := m.Store()
	if _, err := s.Put(ctx, "apis", "k", []byte(`1`)); err != nil {
		t.Fatal(err)
	}
	return s, proxy
}

func TestCallWithoutDeadlineDoesNotHangOnAPartition(t *testing.T) {
	ctx := context.Background()
	s, proxy := storeWithOneRowBehindAProxy(t, "1", "1")
	proxy.BlackHole()
	start := time.Now()
	_, err := s.Get(ctx, "apis", "k") // no deadline of its own
	took := time.Since(start)
	if err == nil {
		t.Fatal("Get succeeded through a black hole")
	}
	// The default bound is DB_CONNECT_TIMEOUT + DB_POOL_TIMEOUT = 2 s.
	if took > 3*time.Second {
		t.Errorf("Get without a deadline took %s; want about 2 s", took)
	}
	proxy.Heal()
}

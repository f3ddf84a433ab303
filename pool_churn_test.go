package dbmanager

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gatewaykit/dbmanager/internal/pgtest"
)

// churnTimes are the warm-up and the measured window of the churn test:
// short by default, the 2 s + 10 s with DBMANAGER_MEASURE=1.
func churnTimes() (warmUp, window time.Duration, long bool) {
	if os.Getenv("DBMANAGER_MEASURE") != "" {
		return 2 * time.Second, 10 * time.Second, true
	}
	return 500 * time.Millisecond, time.Second, false
}

// withURLParams appends query parameters to a postgres:// URL.
func withURLParams(dsn string, params ...string) string {
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	return dsn + sep + strings.Join(params, "&")
}

// serverSessions reads how many sessions the server has counted for the
// current database (pg_stat_database.sessions, PostgreSQL 14+). A backend
// reports its session when it first goes idle, so a count just after a
// connect may lag: it polls (up to 3 s) until the count reaches want and
// returns what it last read. ok is false on a server without the column.
func serverSessions(t *testing.T, conn *pgx.Conn, want int64) (n int64, ok bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		err := conn.QueryRow(context.Background(),
			`SELECT sessions FROM pg_stat_database WHERE datname = current_database()`).Scan(&n)
		if err != nil {
			if strings.Contains(err.Error(), "sessions") {
				return 0, false
			}
			t.Fatal(err)
		}
		if n >= want || time.Now().After(deadline) {
			return n, true
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// steadyGets runs Store().Get on goroutines goroutines until stop is
// closed and counts failed calls.
func steadyGets(store Store, goroutines int, stop <-chan struct{}) (wait func() (calls, failed int64)) {
	var wg sync.WaitGroup
	var calls, failed atomic.Int64
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := store.Get(context.Background(), "churn", fmt.Sprintf("k%02d", (g*7+i)%50)); err != nil {
					failed.Add(1)
				}
				calls.Add(1)
			}
		}()
	}
	return func() (int64, int64) { wg.Wait(); return calls.Load(), failed.Load() }
}

// TestPoolSteadyLoadOpensNoConnections counts the connections the default
// pool (DB_POOL_SIZE 5, DB_MAX_OVERFLOW 10) opens under a steady load of
// Store().Get after a warm-up, at 1, 4, 8, 15 and 32 goroutines: none, by
// the pool's own count and by the server's. It asserts counts, never
// times. DBMANAGER_MEASURE=1 runs the 2 s warm-up and 10 s window
// and, wherever the load grew the pool, also waits for it to shrink back
// to DB_POOL_SIZE on the default settings (up to 90 s each); by default
// the shrink is checked by TestPoolShrinksToSizeWhenIdle with a short idle
// time.
func TestPoolSteadyLoadOpensNoConnections(t *testing.T) {
	warmUp, window, long := churnTimes()
	for _, goroutines := range []int{1, 4, 8, 15, 32} {
		t.Run(fmt.Sprintf("goroutines=%d", goroutines), func(t *testing.T) {
			ctx := context.Background()
			dsn := pgtest.URL(t)
			m := New(envConfig(t, "DATABASE_URL", dsn), WithLogger(slog.New(slog.DiscardHandler)))
			if err := m.Init(ctx); err != nil {
				t.Fatal(err)
			}
			defer m.Close(ctx)
			pool, ok := m.Pool()
			if !ok {
				t.Fatal("not on PostgreSQL")
			}
			for i := range 50 {
				if _, err := m.Store().Put(ctx, "churn", fmt.Sprintf("k%02d", i), []byte(`{"n":1}`)); err != nil {
					t.Fatal(err)
				}
			}
			monitor, err := pgx.Connect(ctx, dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer monitor.Close(ctx)

			stop := make(chan struct{})
			wait := steadyGets(m.Store(), goroutines, stop)
			time.Sleep(warmUp)
			newBefore := pool.Stat().NewConnsCount()
			// Every session so far: the pool's and the monitor's own.
			sessionsBefore, haveSessions := serverSessions(t, monitor, newBefore+1)
			time.Sleep(window)
			newAfter := pool.Stat().NewConnsCount()
			close(stop)
			calls, failed := wait()
			sessionsAfter, _ := serverSessions(t, monitor, sessionsBefore+newAfter-newBefore)
			st := poolStatsOf(pool)
			t.Logf("%d goroutines: %d calls (%d failed); pool %v, %d connections opened before the window, %d in it; server sessions %d -> %d",
				goroutines, calls, failed, st, newBefore, newAfter-newBefore, sessionsBefore, sessionsAfter)
			if failed > 0 {
				t.Errorf("%d of %d calls failed", failed, calls)
			}
			if newAfter != newBefore {
				t.Errorf("the pool opened %d connections during %v of steady load after warm-up", newAfter-newBefore, window)
			}
			if haveSessions && sessionsAfter != sessionsBefore {
				t.Errorf("the server counted %d new sessions during %v of steady load after warm-up", sessionsAfter-sessionsBefore, window)
			}
			if long && st.Total > DefaultPoolSize {
				// The default idle policy: back to DB_POOL_SIZE within
				// overflowIdleTime + healthCheckPeriod of the load stopping.
				waitForPoolSize(t, pool, DefaultPoolSize, overflowIdleTime+healthCheckPeriod+10*time.Second)
			}
		})
	}
}

// waitForPoolSize waits until the idle pool holds exactly size connections,
// for at most limit (a bound on the wait, not a measurement), and checks
// that it does not go on below size.
func waitForPoolSize(t *testing.T, pool *pgxpool.Pool, size int32, limit time.Duration) {
	t.Helper()
	start := time.Now()
	for s := poolStatsOf(pool); s.Total != size || s.Acquired != 0; s = poolStatsOf(pool) {
		if time.Since(start) > limit {
			t.Fatalf("pool still at %v %v after the load stopped; want %d connections", s, limit, size)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("pool back to %d connections %v after the load stopped", size, time.Since(start).Round(time.Millisecond))
	time.Sleep(300 * time.Millisecond) // several health checks at the short period
	if s := poolStatsOf(pool); s.Total < size {
		t.Fatalf("pool shrank below DB_POOL_SIZE: %v", s)
	}
}

// TestPoolShrinksToSizeWhenIdle grows the default pool to its maximum
// (5 + 10) with a burst of 32 goroutines, stops, and checks that the extra
// connections are closed once idle, down to DB_POOL_SIZE and not below.
// It shortens the idle time and the health-check period through the URL
// (pool_max_conn_idle_time, pool_health_check_period) so as not to wait
// the default 60 s + 30 s; DBMANAGER_MEASURE=1 checks the defaults in
// TestPoolSteadyLoadOpensNoConnections.
func TestPoolShrinksToSizeWhenIdle(t *testing.T) {
	ctx := context.Background()
	dsn := withURLParams(pgtest.URL(t), "pool_max_conn_idle_time=500ms", "pool_health_check_period=50ms")
	m := New(envConfig(t, "DATABASE_URL", dsn), WithLogger(slog.New(slog.DiscardHandler)))
	if err := m.Init(ctx); err != nil {
		t.Fatal(err)
	}
	defer m.Close(ctx)
	pool, _ := m.Pool()
	if _, err := m.Store().Put(ctx, "churn", "k00", []byte(`1`)); err != nil {
		t.Fatal(err)
	}
	// Hold every connection at once, so the pool must open all 15.
	conns := make([]*pgxpool.Conn, 0, DefaultPoolSize+DefaultMaxOverflow)
	for range cap(conns) {
		c, err := pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	if s := poolStatsOf(pool); s.Total != DefaultPoolSize+DefaultMaxOverflow {
		t.Fatalf("burst: %v", s)
	}
	for _, c := range conns {
		c.Release()
	}
	// Released connections stay: none is closed on release.
	if s := poolStatsOf(pool); s.Total != DefaultPoolSize+DefaultMaxOverflow {
		t.Fatalf("connections closed on release: %v", s)
	}
	waitForPoolSize(t, pool, DefaultPoolSize, 10*time.Second)
}

// resetPool drops every pooled connection, so that the next call must log
// in again. It first waits (up to 5 s) for the connections the pool is
// still opening in the background to keep DB_POOL_SIZE: a Reset does not
// reach those, and one logged in before a password change would serve the
// next call without a new login.
func resetPool(t testing.TB, pool *pgxpool.Pool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for pool.Stat().ConstructingConns() > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	pool.Reset()
}

package dbmanager

import (
	"context"
	"errors"
	"github.com/gatewaykit/dbmanager/internal/writerwatch"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatewaykit/dbmanager/internal/pgtest"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// poolConfigFor is newPoolConfig for the configuration the variables
// give, as a caller's own pool would get it.
func poolConfigFor(t *testing.T, vars ...string) *pgxpool.Config {
	t.Helper()
	cfg := envConfig(t, vars...)
	tg, err := resolveTarget(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := newPoolConfig(cfg, tg)
	if err != nil {
		t.Fatal(err)
	}
	return pc
}

// poolFor opens a pool from newPoolConfig for dbURL.
func poolFor(t *testing.T, dbURL string, adjust func(*pgxpool.Config)) *pgxpool.Pool {
	t.Helper()
	pc := poolConfigFor(t, "DATABASE_URL", dbURL, "DB_CONNECT_TIMEOUT", "1")
	if adjust != nil {
		adjust(pc)
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), pc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// TestPoolDropsConnectionsOnAReadOnlyNode: callers' own SQL on a pool
// from newPoolConfig gets the same care as the Store's. A write refused as
// read-only closes its connection; the connections that sat idle are
// checked at their next use and dropped; no connection to a read-only node
// is opened; once the node accepts writes, the pool works again.
func TestPoolDropsConnectionsOnAReadOnlyNode(t *testing.T) {
	ctx := context.Background()
	srv := pgtest.NewServer(t)
	pool := poolFor(t, srv.URL(t), nil)
	if _, err := pool.Exec(ctx, "CREATE TABLE t (v int)"); err != nil {
		t.Fatal(err)
	}
	var conns []*pgxpool.Conn
	for range 4 {
		c, err := pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	for _, c := range conns {
		c.Release()
	}
	// The pool also keeps DB_POOL_SIZE (5) open, opened in the background.
	eventually(t, 5*time.Second, "the pool to settle", func() bool {
		s := pool.Stat()
		return s.ConstructingConns() == 0 && s.AcquiredConns() == 0 && s.IdleConns() >= 4
	})
	before := pool.Stat().TotalConns()

	srv.Fence(t)
	_, err := pool.Exec(ctx, "INSERT INTO t VALUES (1)")
	var pg *pgconn.PgError
	if !errors.As(err, &pg) || pg.Code != writerwatch.SQLStateReadOnly {
		t.Fatalf("a write on the fenced node = %v; want 25006", err)
	}
	eventually(t, 5*time.Second, "the refused connection to be closed", func() bool { return pool.Stat().TotalConns() == before-1 })
	// The next acquire checks the other suspects, drops them, and refuses
	// to open a connection to the read-only node (nor does the pool's
	// health check, which would keep DB_POOL_SIZE open).
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	_, err = pool.Exec(cctx, "SELECT 1")
	cancel()
	if !isReadOnlyError(err) {
		t.Errorf("an acquire with only a read-only node = %v; want a read-only refusal", safeError(err))
	}
	eventually(t, 5*time.Second, "no connection to the read-only node left in the pool", func() bool { return pool.Stat().TotalConns() == 0 })

	srv.Unfence(t)
	if _, err := pool.Exec(ctx, "INSERT INTO t VALUES (2)"); err != nil {
		t.Fatalf("a write once the node accepts writes again: %v", err)
	}
}

// TestPoolIdleConnectionsAreNotPingedWithoutCause: the check of idle
// connections only runs after a connection was found on a read-only node;
// an ordinary acquire of a connection idle under a second costs no round
// trip.
func TestPoolIdleConnectionsAreNotPingedWithoutCause(t *testing.T) {
	ctx := context.Background()
	var pings atomic.Int32
	pool := poolFor(t, pgtest.URL(t), func(pc *pgxpool.Config) {
		inner := pc.ShouldPing
		pc.ShouldPing = func(ctx context.Context, p pgxpool.ShouldPingParams) bool {
			ping := inner(ctx, p)
			if ping {
				pings.Add(1)
			}
			return ping
		}
	})
	for range 20 {
		if _, err := pool.Exec(ctx, "SELECT 1"); err != nil {
			t.Fatal(err)
		}
	}
	if n := pings.Load(); n != 0 {
		t.Errorf("%d pings of connections idle under a second, with no read-only node seen", n)
	}
}

// TestNewConnectionsResolveTheHostAgain: pgx looks the host name up on
// every new connection, and the pool's config keeps it that way, so a
// writer endpoint whose DNS moved is followed by the next connection.
func TestNewConnectionsResolveTheHostAgain(t *testing.T) {
	ctx := context.Background()
	dbURL := pgtest.URL(t)
	var lookups atomic.Int32
	pool := poolFor(t, strings.Replace(dbURL, "127.0.0.1:", "writer.test:", 1), func(pc *pgxpool.Config) {
		pc.ConnConfig.LookupFunc = func(ctx context.Context, host string) ([]string, error) {
			if host != "writer.test" {
				return net.DefaultResolver.LookupHost(ctx, host)
			}
			lookups.Add(1)
			return []string{"127.0.0.1"}, nil
		}
	})
	var conns []*pgxpool.Conn
	for range 3 {
		c, err := pool.Acquire(ctx)
		if err != nil {
			t.Fatal(safeError(err))
		}
		conns = append(conns, c)
	}
	for _, c := range conns {
		c.Release()
	}
	// The pool also opens DB_POOL_SIZE in the background: count them all.
	eventually(t, 5*time.Second, "the pool to settle", func() bool { return pool.Stat().ConstructingConns() == 0 })
	if n, opened := lookups.Load(), pool.Stat().NewConnsCount(); int64(n) != opened || opened < 3 {
		t.Fatalf("%d lookups for %d new connections; want one each", n, opened)
	}
}

// TestRouterBoundOnlyRelabelsItsOwnDeadline: a call without a deadline
// that fails for another reason keeps its error; only the router's own
// bound running out turns into ErrUnavailable.
func TestRouterBoundOnlyRelabelsItsOwnDeadline(t *testing.T) {
	r := &routingStore{callTimeout: time.Hour}
	r.switchTo(closedStore, true)            // any backend, taken as the primary
	c := r.begin(context.Background(), true) // no deadline: bounded
	err := c.end(opError("put", "c", "k", ErrConflict))
	if errors.Is(err, ErrUnavailable) || !errors.Is(err, ErrConflict) {
		t.Fatalf("a conflict on a bounded call became %v", err)
	}
	r.callTimeout = time.Millisecond
	c = r.begin(context.Background(), true)
	time.Sleep(5 * time.Millisecond)
	err = c.end(opError("put", "c", "k", context.DeadlineExceeded))
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("the router's bound running out = %v; want ErrUnavailable and the deadline", err)
	}
	var oe *OpError
	if !errors.As(err, &oe) || oe.Key != "k" {
		t.Fatalf("the error lost its *OpError: %T", err)
	}
}

// TestClosedPoolIsNotWaitedFor: a call racing the pool's Close fails at
// once; there is no writer to wait for.
func TestClosedPoolIsNotWaitedFor(t *testing.T) {
	pool := newTestPool(t)
	s, err := newPGStore(context.Background(), pool, withRetryBudget(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	pool.Close()
	start := time.Now()
	_, err = s.Put(context.Background(), "c", "k", []byte(`1`))
	if err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("a Put on a closed pool = %v after %s; want an error at once", err, time.Since(start))
	}
}

package dbmanager

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gatewaykit/dbmanager/internal/netconn"
	"github.com/gatewaykit/dbmanager/internal/pgtest"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

func targetFor(t *testing.T, dsn string) connTarget {
	t.Helper()
	dsn, err := parseDatabaseURL(dsn)
	if err != nil {
		t.Fatal(err)
	}
	return newTarget(SourceDatabaseURL, dsn)
}

func TestPoolConfigDefaults(t *testing.T) {
	pc, err := newPoolConfig(DefaultConfig(), targetFor(t, "postgres://u:pw@db.example/app"))
	if err != nil {
		t.Fatal(err)
	}
	if pc.MaxConns != 15 || pc.MaxConnLifetime != time.Hour || pc.MaxConnLifetimeJitter != 6*time.Minute ||
		pc.PingTimeout != 5*time.Second || pc.ConnConfig.ConnectTimeout != 5*time.Second {
		t.Fatalf("mapping: max %d life %v jitter %v ping %v connect %v", pc.MaxConns, pc.MaxConnLifetime, pc.MaxConnLifetimeJitter, pc.PingTimeout, pc.ConnConfig.ConnectTimeout)
	}
	// DB_POOL_SIZE kept, the overflow closed only after idling a minute,
	// never on release (which churned: see pool_churn_test.go).
	if pc.MinConns != 5 || pc.MaxConnIdleTime != time.Minute || pc.HealthCheckPeriod != 30*time.Second || pc.AfterRelease != nil {
		t.Fatalf("overflow policy: min %d idle %v check %v afterRelease %v", pc.MinConns, pc.MaxConnIdleTime, pc.HealthCheckPeriod, pc.AfterRelease != nil)
	}
	ctx := context.Background()
	if pc.ShouldPing(ctx, pgxpool.ShouldPingParams{IdleDuration: 500 * time.Millisecond}) ||
		!pc.ShouldPing(ctx, pgxpool.ShouldPingParams{IdleDuration: 2 * time.Second}) {
		t.Fatal("pre-ping must ping only connections idle over 1s")
	}
	noPing := DefaultConfig()
	noPing.PoolPrePing = false
	pc, _ = newPoolConfig(noPing, targetFor(t, "postgres://u:pw@db.example/app"))
	if pc.ShouldPing(ctx, pgxpool.ShouldPingParams{IdleDuration: time.Hour}) {
		t.Fatal("DB_POOL_PRE_PING=false still pings")
	}
	never := DefaultConfig()
	never.PoolRecycle = 0
	pc, _ = newPoolConfig(never, targetFor(t, "postgres://u:pw@db.example/app"))
	if pc.MaxConnLifetime != 0 || pc.MaxConnLifetimeJitter != 0 {
		t.Fatal("recycle -1 must mean never")
	}
	if _, err := newPoolConfig(DefaultConfig(), connTarget{Source: SourceNone}); !errors.Is(err, ErrConfig) {
		t.Fatalf("empty target: %v", err)
	}
}

func TestPoolURLParamsHonouredUnlessEnvSetsThem(t *testing.T) {
	url := "postgres://u:pw@db.example/app?pool_max_conns=3&pool_max_conn_lifetime=10m&pool_max_conn_lifetime_jitter=1s&pool_ping_timeout=2s&connect_timeout=2" +
		"&pool_min_conns=1&pool_max_conn_idle_time=5m&pool_health_check_period=10s"
	cfg, _ := LoadConfig(envOf(nil))
	pc, err := newPoolConfig(cfg, targetFor(t, url))
	if err != nil {
		t.Fatal(err)
	}
	if pc.MaxConns != 3 || pc.MaxConnLifetime != 10*time.Minute || pc.MaxConnLifetimeJitter != time.Second ||
		pc.PingTimeout != 2*time.Second || pc.ConnConfig.ConnectTimeout != 2*time.Second {
		t.Fatalf("URL params lost: max %d life %v jitter %v ping %v connect %v", pc.MaxConns, pc.MaxConnLifetime, pc.MaxConnLifetimeJitter, pc.PingTimeout, pc.ConnConfig.ConnectTimeout)
	}
	if pc.MinConns != 1 || pc.MaxConnIdleTime != 5*time.Minute || pc.HealthCheckPeriod != 10*time.Second {
		t.Fatalf("URL idle policy lost: min %d idle %v check %v", pc.MinConns, pc.MaxConnIdleTime, pc.HealthCheckPeriod)
	}
	if _, ok := pc.ConnConfig.RuntimeParams["pool_max_conns"]; ok {
		t.Fatal("pool_max_conns would be sent to the server")
	}
	cfg, _ = LoadConfig(envOf(map[string]string{
		"DB_POOL_SIZE": "4", "DB_MAX_OVERFLOW": "1", "DB_POOL_RECYCLE": "60", "DB_POOL_PRE_PING": "true", "DB_CONNECT_TIMEOUT": "7",
	}))
	pc, err = newPoolConfig(cfg, targetFor(t, url))
	if err != nil {
		t.Fatal(err)
	}
	if pc.MaxConns != 5 || pc.MaxConnLifetime != time.Minute || pc.MaxConnLifetimeJitter != 6*time.Second ||
		pc.PingTimeout != 7*time.Second || pc.ConnConfig.ConnectTimeout != 7*time.Second {
		t.Fatalf("env must win: max %d life %v jitter %v ping %v connect %v", pc.MaxConns, pc.MaxConnLifetime, pc.MaxConnLifetimeJitter, pc.PingTimeout, pc.ConnConfig.ConnectTimeout)
	}
	// A bad pool_* value is a redacted configuration error.
	_, err = newPoolConfig(cfg, targetFor(t, "postgres://u:"+leakMarker+"@db.example/app?pool_max_conns=zero"))
	if !errors.Is(err, ErrConfig) {
		t.Fatalf("bad pool_max_conns: %v", err)
	}
	assertNothingLeaks(t, "pool_max_conns error", err)
}

func openPool(t *testing.T, cfg Config, dsn string, opts ...poolOption) *pgxpool.Pool {
	t.Helper()
	pc, err := newPoolConfig(cfg, targetFor(t, dsn), opts...)
	if err != nil {
		t.Fatal(err)
	}
	p, err := pgxpool.NewWithConfig(context.Background(), pc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// waitFor polls cond for up to 5 s (a generous bound for async pool work).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func acquireN(t *testing.T, p *pgxpool.Pool, n int) []*pgxpool.Conn {
	t.Helper()
	conns := make([]*pgxpool.Conn, n)
	for i := range conns {
		c, err := acquireConn(context.Background(), p, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	return conns
}

func TestPoolReleaseGoesToWaiter(t *testing.T) {
	cfg := DefaultConfig()
	cfg.PoolSize, cfg.MaxOverflow = 2, 3
	p := openPool(t, cfg, pgtest.URL(t))
	// Under load a released connection goes to a waiter, not to the bin.
	conns := acquireN(t, p, 5)
	created := p.Stat().NewConnsCount()
	got := make(chan *pgxpool.Conn)
	go func() {
		c, err := p.Acquire(context.Background())
		if err != nil {
			got <- nil
			return
		}
		got <- c
	}()
	waitFor(t, "waiter to block", func() bool { return p.Stat().EmptyAcquireCount() > 0 && poolStatsOf(p).Acquired == 5 })
	conns[0].Release()
	c := <-got
	if c == nil {
		t.Fatal("waiter failed")
	}
	if n := p.Stat().NewConnsCount(); n != created {
		t.Fatalf("a connection was closed and reopened under load: %d new", n-created)
	}
	c.Release()
	for _, c := range conns[1:] {
		c.Release()
	}
}

func TestPoolExhaustedError(t *testing.T) {
	cfg := DefaultConfig()
	cfg.PoolSize, cfg.MaxOverflow = 1, 0
	cfg.PoolTimeout = 200 * time.Millisecond
	p := openPool(t, cfg, pgtest.URL(t))
	held := acquireN(t, p, 1)
	defer held[0].Release()

	_, err := acquireConn(context.Background(), p, cfg.PoolTimeout)
	var pe *PoolExhaustedError
	if !errors.As(err, &pe) || !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want *PoolExhaustedError: %v", err)
	}
	if !strings.Contains(err.Error(), "exhausted") || !strings.Contains(err.Error(), "1/1 in use") {
		t.Fatalf("message should show the stats: %v", err)
	}

	// Pool methods that acquire internally are bounded by DB_POOL_TIMEOUT too.
	ctx := context.Background()
	start := time.Now()
	_, err = p.Exec(ctx, "select 1")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Exec on an exhausted pool: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Exec waited %v with a 200ms pool timeout", d)
	}
	if err := explainAcquireError(ctx, p, err); !errors.As(err, &pe) {
		t.Fatalf("explainAcquireError: %v", err)
	}
	// The caller's own deadline is not reported as exhaustion.
	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	_, err = p.Exec(cctx, "select 1")
	if err = explainAcquireError(cctx, p, err); errors.As(err, &pe) {
		t.Fatalf("caller deadline reported as exhaustion: %v", err)
	}
}

func TestSQLEcho(t *testing.T) {
	dsn := pgtest.URL(t)
	for _, withArgs := range []bool{false, true} {
		var buf logBuffer
		cfg := DefaultConfig()
		cfg.SQLEcho, cfg.SQLEchoArgs = true, withArgs
		p := openPool(t, cfg, dsn, withPoolLogger(slog.New(slog.NewTextHandler(&buf, nil))))
		var out string
		if err := p.QueryRow(context.Background(), "select $1::text", "arg-"+leakMarker).Scan(&out); err != nil {
			t.Fatal(err)
		}
		b := &pgx.Batch{}
		b.Queue("select 2")
		if err := p.SendBatch(context.Background(), b).Close(); err != nil {
			t.Fatal(err)
		}
		_, _ = p.Exec(context.Background(), "select * from no_such_table")
		log := buf.String()
		for _, want := range []string{"select $1::text", "duration=", "select 2", "no_such_table", "42P01"} {
			if !strings.Contains(log, want) {
				t.Errorf("args=%v: log misses %q:\n%s", withArgs, want, log)
			}
		}
		if strings.Contains(log, leakMarker) != withArgs {
			t.Errorf("args=%v: argument values logged=%v:\n%s", withArgs, !withArgs, log)
		}
		p.Close()
	}
	// Without SQL_ECHO nothing is logged.
	var buf logBuffer
	p := openPool(t, DefaultConfig(), dsn, withPoolLogger(slog.New(slog.NewTextHandler(&buf, nil))))
	if _, err := p.Exec(context.Background(), "select 1"); err != nil {
		t.Fatal(err)
	}
	if buf.String() != "" {
		t.Fatalf("logged without SQL_ECHO: %s", buf.String())
	}
}

func TestPoolBeforeConnectSuppliesPassword(t *testing.T) {
	admin := pgtest.URL(t)
	host, port, db := serverParts(t, admin)
	role := roleWithPassword(t, admin, specialPassword)
	cfg := DefaultConfig()
	tg := newTarget(SourceSecret, BuildURL(role, "", host, port, db)+"?sslmode=disable")
	pc, err := newPoolConfig(cfg, tg, withBeforeConnect(func(_ context.Context, cc *pgx.ConnConfig) error {
		cc.Password = specialPassword
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	p, err := pgxpool.NewWithConfig(context.Background(), pc)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.Ping(context.Background()); err != nil {
		t.Fatal(classifyConnectError(err, ""))
	}
}

func TestPoolConnectFailureIsClassifiedAndRedacted(t *testing.T) {
	admin := pgtest.URL(t)
	host, port, db := serverParts(t, admin)
	role := roleWithPassword(t, admin, "right")
	var buf logBuffer
	cfg := DefaultConfig()
	cfg.SQLEcho = true
	p := openPool(t, cfg, BuildURL(role, "wrong-"+leakMarker, host, port, db)+"?sslmode=disable",
		withPoolLogger(slog.New(slog.NewJSONHandler(&buf, nil))))
	_, err := acquireConn(context.Background(), p, time.Second)
	wantReason(t, err, ReasonAuth)
	_, err = p.Exec(context.Background(), "select 1")
	err = explainAcquireError(context.Background(), p, err)
	wantReason(t, err, ReasonAuth)
	if strings.Contains(buf.String(), leakMarker) {
		t.Fatal("log leaks the password")
	}
}

// TestPoolConnectionsCarryKeepAliveAndUserTimeout checks the options on a
// connection the pool's config really opens to PostgreSQL: the pool dials
// with netconn.NewDialer and the configured durations (or the defaults,
// DefaultTCPKeepAlive and DefaultTCPUserTimeout).
func TestPoolConnectionsCarryKeepAliveAndUserTimeout(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads Linux socket options")
	}
	url := pgtest.URL(t)
	for _, c := range []struct {
		env  []string
		want netconn.SocketOptions
	}{
		{[]string{"DB_TCP_USER_TIMEOUT", "3", "DB_TCP_KEEPALIVE", "4"},
			netconn.SocketOptions{KeepAlive: 1, Idle: 4, Interval: 1, Count: netconn.KeepAliveProbes, UserTimeout: 3 * time.Second}},
		{nil, netconn.SocketOptions{KeepAlive: 1, Idle: int(DefaultTCPKeepAlive / time.Second), Interval: 1,
			Count: netconn.KeepAliveProbes, UserTimeout: DefaultTCPUserTimeout}},
	} {
		pc := poolConfigFor(t, append([]string{"DATABASE_URL", url}, c.env...)...)
		conn, err := pgx.ConnectConfig(context.Background(), pc.ConnConfig)
		if err != nil {
			t.Fatal(safeError(err))
		}
		got, err := netconn.ReadSocketOptions(conn.PgConn().Conn())
		conn.Close(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("pool connection options with %q: %+v; want %+v", c.env, got, c.want)
		}
	}
}

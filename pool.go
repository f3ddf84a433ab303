package dbmanager

import (
	"context"
	"errors"
	"fmt"
	"github.com/gatewaykit/dbmanager/internal/tlstrust"
	"github.com/gatewaykit/dbmanager/internal/writerwatch"
	"log/slog"
	"time"

	"github.com/gatewaykit/dbmanager/internal/connstr"
	"github.com/gatewaykit/dbmanager/internal/deadline"
	"github.com/gatewaykit/dbmanager/internal/netconn"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Pool settings: the seed's SQLAlchemy engine mapped onto pgxpool.
//
//	SQLAlchemy          environment          pgxpool
//	pool_size           DB_POOL_SIZE (5)     MinConns = size: kept open (opened in the background
//	                                         at start and after a loss); MaxConns = size+overflow
//	max_overflow        DB_MAX_OVERFLOW (10) MaxConns = size+overflow; a connection above MinConns
//	                                         is closed once idle for MaxConnIdleTime (60 s), seen
//	                                         by the health check every HealthCheckPeriod (30 s)
//	pool_pre_ping       DB_POOL_PRE_PING     ShouldPing: ping connections idle > 1 s before use,
//	                                         bounded by PingTimeout (= DB_CONNECT_TIMEOUT); and
//	                                         PrepareConn: on every acquire, a non-blocking peek
//	                                         drops connections the server already closed
//	pool_recycle        DB_POOL_RECYCLE      MaxConnLifetime, with MaxConnLifetimeJitter = 10 %
//	pool_timeout        DB_POOL_TIMEOUT      every Acquire (also Query/Exec/Begin on the pool) is
//	                                         bounded by it through the pool's AcquireTracer
//	connect_args timeout DB_CONNECT_TIMEOUT  ConnConfig.ConnectTimeout
//	echo                SQL_ECHO             a pgx QueryTracer logging via slog
//	(none)              DB_QUERY_EXEC_MODE   ConnConfig.DefaultQueryExecMode: SQL on Pool()
//	(none)              DB_TCP_KEEPALIVE,    ConnConfig.DialFunc: keepalives and TCP_USER_TIMEOUT
//	                    DB_TCP_USER_TIMEOUT  on every connection (internal/netconn)
//
// and, unless target_session_attrs asks for another kind of node, the
// pool follows the writer (internal/writerwatch): ValidateConnect refuses read-only
// nodes, OnPgError and PrepareConn drop connections found on
// one, ShouldPing checks the connections that were idle then.
//
// pool_max_conns, pool_max_conn_lifetime, pool_max_conn_lifetime_jitter,
// pool_ping_timeout, connect_timeout and default_query_exec_mode in the
// connection string win over the defaults, but not over a variable the
// environment set (Config.explicit); so do pool_min_conns,
// pool_max_conn_idle_time and pool_health_check_period (no variable sets
// those). pool_min_idle_conns keeps pgxpool's meaning.
//
// Why overflow connections live on for a while: a pool that closes a
// connection as soon as it is released with enough others idle (QueuePool's
// rule, which this package followed before) churns under steady load,
// because "how many are idle" is stale by the time a release acts on it
// (pgxpool runs AfterRelease in a goroutine of its own) and the next
// acquire dials again: measured, 48 new connections a second with 8
// goroutines on the default pool, each a TLS handshake, a login and a
// server process on RDS. Closing only connections that stayed idle for a
// minute, as HikariCP's idleTimeout does above minimumIdle, keeps a steady
// load at any concurrency on the connections it warmed up, and still gives
// the extra ones back when the load goes away (pool_churn_test.go counts
// both). One rare exception: the health check takes every idle connection
// for an instant to look at it, and an acquire in that instant finds none
// idle and opens one (measured: about once in 500 checks at 4 to 8
// goroutines, so about once in four hours at the 30 s period; the hourly
// DB_POOL_RECYCLE opens far more).

// preDelayIdle is how long a connection must have been idle before the
// pre-ping checks it (pgxpool's own default rule).
const preDelayIdle = time.Second

// Defaults for closing connections above DB_POOL_SIZE: one that stayed idle
// for overflowIdleTime is closed by the pool's health check, which runs
// every healthCheckPeriod, so the pool is back to DB_POOL_SIZE within
// overflowIdleTime + healthCheckPeriod (90 s) of the load going away.
const (
	overflowIdleTime  = time.Minute
	healthCheckPeriod = 30 * time.Second
)

// poolOption adjusts newPoolConfig.
type poolOption func(*poolOptions)

type poolOptions struct {
	logger        *slog.Logger
	beforeConnect func(context.Context, *pgx.ConnConfig) error
	tls           *tlstrust.Recorder // records verified handshakes (the Manager's Info)
	readOnly      func()             // hears each connection found on a read-only node
	connectFailed func(error)        // hears each failed connection attempt (NewPool)
}

// withConnectFailureNotice makes the pool call f with the error of each
// connection attempt that fails.
func withConnectFailureNotice(f func(error)) poolOption {
	return func(o *poolOptions) { o.connectFailed = f }
}

// withReadOnlyNotice makes the pool call f each time it finds a
// connection on a read-only node (and closes it).
func withReadOnlyNotice(f func()) poolOption { return func(o *poolOptions) { o.readOnly = f } }

// withPoolLogger sets the logger for SQL_ECHO and pool warnings
// (slog.Default() otherwise).
func withPoolLogger(l *slog.Logger) poolOption { return func(o *poolOptions) { o.logger = l } }

// withBeforeConnect sets the pool's BeforeConnect hook: it runs before
// every new connection with a copy of the connection settings and may set
// the password (a rotated secret, an IAM token). Setting
// pgxpool.Config.BeforeConnect on the result does the same.
func withBeforeConnect(f func(context.Context, *pgx.ConnConfig) error) poolOption {
	return func(o *poolOptions) { o.beforeConnect = f }
}

// newPoolConfig maps cfg onto a *pgxpool.Config for target t: the TLS
// policy (see tlsconfig.go), the pool settings in the table above, the
// connect timeout, the dialer's keepalives and SQL_ECHO; and, unless the
// connection string's target_session_attrs asks for another kind of node,
// a pool that connects only to a writable node and drops connections that
// find themselves on a read-only one. It does not dial. Errors are
// redacted and wrap ErrConfig.
//
// The result's ConnConfig.Tracer implements the acquire timeout (and
// SQL_ECHO); to add a tracer, wrap the existing one rather than replacing
// it. Use one config for one pool.
func newPoolConfig(cfg Config, t connTarget, opts ...poolOption) (*pgxpool.Config, error) {
	var o poolOptions
	for _, opt := range opts {
		opt(&o)
	}
	if !t.DSN.IsSet() {
		return nil, &ConfigError{Var: "target", Problem: "no connection string (source " + string(t.Source) + ")"}
	}
	dsn, trust, err := prepareTLS(cfg, t.DSN.Reveal())
	if err != nil {
		return nil, err
	}
	params, err := connstr.Params(dsn)
	if err != nil {
		return nil, &ConfigError{Var: "connection string", Problem: "cannot read its parameters"}
	}
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, safeError(err)
	}
	if err := finishTLS(cfg, &pc.ConnConfig.Config, trust, o.tls); err != nil {
		return nil, err
	}
	applyConnectTimeout(cfg, dsn, pc.ConnConfig)
	pc.ConnConfig.DialFunc = netconn.NewDialer(pc.ConnConfig.ConnectTimeout, cfg.TCPKeepAlive, cfg.TCPUserTimeout).DialContext

	_, urlMax := params["pool_max_conns"]
	if !urlMax || cfg.explicit.PoolSize || cfg.explicit.MaxOverflow {
		pc.MaxConns = int32(max(cfg.MaxConns(), 1))
	}
	size := int32(max(cfg.PoolSize, 1))
	size = min(size, pc.MaxConns)
	// DB_POOL_SIZE connections are kept; those above it are closed once
	// idle for a while (see the top of this file), never on release.
	if _, ok := params["pool_min_conns"]; !ok {
		pc.MinConns = size
	}
	if _, ok := params["pool_max_conn_idle_time"]; !ok {
		pc.MaxConnIdleTime = overflowIdleTime
	}
	if _, ok := params["pool_health_check_period"]; !ok {
		pc.HealthCheckPeriod = healthCheckPeriod
	}

	_, urlLife := params["pool_max_conn_lifetime"]
	if !urlLife || cfg.explicit.PoolRecycle {
		pc.MaxConnLifetime = cfg.PoolRecycle // 0: never
	}
	_, urlJitter := params["pool_max_conn_lifetime_jitter"]
	if !urlJitter || cfg.explicit.PoolRecycle {
		pc.MaxConnLifetimeJitter = pc.MaxConnLifetime / 10
	}

	if err := applyQueryExecMode(cfg, params, pc.ConnConfig); err != nil {
		return nil, err
	}

	if cfg.PoolPrePing {
		pc.ShouldPing = func(_ context.Context, p pgxpool.ShouldPingParams) bool {
			return p.IdleDuration > preDelayIdle
		}
		_, urlPing := params["pool_ping_timeout"]
		if !urlPing || cfg.explicit.PoolPrePing || pc.PingTimeout <= 0 {
			pc.PingTimeout = cfg.ConnectTimeout
		}
		// Every acquire also checks, without a round trip, that the server
		// has not closed the connection while it sat idle.
		pc.PrepareConn = netconn.DropClosed(func(c *pgx.Conn) { markClose(c, closeDeadPeer) })
	} else {
		pc.ShouldPing = func(context.Context, pgxpool.ShouldPingParams) bool { return false }
	}

	// Follow the writer (internal/writerwatch), unless the string asks for another
	// kind of node.
	watch := writerwatch.New(params, o.readOnly, func(c *pgconn.PgConn) { markPgClose(c, closeReadOnly) })
	if watch != nil {
		watch.Install(pc)
	}

	h := &poolHooks{logger: o.logger, acquireTimeout: cfg.PoolTimeout, connectFailed: o.connectFailed}
	if cfg.PoolTimeout > 0 {
		h.waits = deadline.NewWaits(cfg.PoolTimeout)
	}
	h.statements.mode = pc.ConnConfig.DefaultQueryExecMode
	if cfg.SQLEcho {
		pc.ConnConfig.Tracer = &echoHooks{poolHooks: h, args: cfg.SQLEchoArgs}
	} else {
		pc.ConnConfig.Tracer = h
	}
	// No AfterRelease hook, not even the writer watch's: with one, pgxpool
	// releases every connection from a goroutine of its own, so the
	// caller's next acquire often finds it not yet back and dials another
	// (measured: 8 new connections in 8 s of one goroutine's steady load,
	// and a pool grown to its maximum by 4 goroutines, with a 1 s idle
	// time). The watch's PrepareConn already drops a connection that
	// reports a read-only node before any caller gets it, and one that
	// failed with 25006 is closed at once and dropped on release.
	pc.BeforeConnect = o.beforeConnect
	return pc, nil
}

// poolHooks is the pool's tracer: it bounds every acquire by the pool
// timeout.
type poolHooks struct {
	logger         *slog.Logger
	acquireTimeout time.Duration
	waits          *deadline.Waits // shared deadlines for acquires nobody can cancel
	statements     poolerWarning   // warns once when a pooler breaks statements
	connectFailed  func(error)     // see withConnectFailureNotice
}

func (h *poolHooks) log() *slog.Logger {
	if h.logger != nil {
		return h.logger
	}
	return slog.Default()
}

type acquireKey struct{}

type acquireState struct {
	parent context.Context
	cancel context.CancelFunc
}

// waitCtx is an acquire's context when the caller's cannot be cancelled:
// the caller's values, and the deadline of its slice (internal/deadline's
// Waits). It also carries what the pool's tracer records about the
// acquire.
type waitCtx struct {
	context.Context // the caller's
	slice           *deadline.Slice
	acq             acquireState
}

// Deadline is the slice's, or the caller's when that comes first (the
// router's bound never does: it is longer than the pool timeout).
func (c *waitCtx) Deadline() (time.Time, bool) {
	if d, ok := c.Context.Deadline(); ok && d.Before(c.slice.Deadline()) {
		return d, true
	}
	return c.slice.Deadline(), true
}

// Value finds the acquire's state under acquireKey (poolHooks), and the
// caller's values otherwise.
func (c *waitCtx) Value(key any) any {
	if _, ok := key.(acquireKey); ok {
		return &c.acq
	}
	return c.Context.Value(key)
}

// Done closes when the slice's deadline passes.
func (c *waitCtx) Done() <-chan struct{} { return c.slice.Done() }

// Err is context.DeadlineExceeded once the slice's deadline has passed
// (the caller's context has no Done channel: it never ends).
func (c *waitCtx) Err() error {
	if c.slice.Passed() {
		return context.DeadlineExceeded
	}
	return nil
}

func (c *waitCtx) String() string { return "dbmanager pool wait" }

// TraceAcquireStart bounds the acquire by the pool timeout: with a
// deadline shared by the acquires of a slice of time when the caller's
// context cannot be cancelled (internal/deadline's Waits), with a timer of its own
// otherwise.
func (h *poolHooks) TraceAcquireStart(ctx context.Context, pool *pgxpool.Pool, _ pgxpool.TraceAcquireStartData) context.Context {
	if h.acquireTimeout <= 0 {
		return ctx
	}
	if h.waits != nil && ctx.Done() == nil {
		slice := h.waits.Current()
		if d, ok := ctx.Deadline(); !ok || !d.Before(slice.Deadline()) {
			w := &waitCtx{Context: ctx, slice: slice}
			w.acq.parent = ctx
			return w
		}
	}
	actx, cancel := context.WithTimeout(ctx, h.acquireTimeout)
	return context.WithValue(actx, acquireKey{}, &acquireState{parent: ctx, cancel: cancel})
}

// TraceAcquireEnd releases the timer and warns when the pool was exhausted.
func (h *poolHooks) TraceAcquireEnd(ctx context.Context, pool *pgxpool.Pool, data pgxpool.TraceAcquireEndData) {
	st, ok := ctx.Value(acquireKey{}).(*acquireState)
	if !ok {
		return
	}
	if st.cancel != nil {
		st.cancel()
	}
	if data.Err != nil && errors.Is(data.Err, context.DeadlineExceeded) && st.parent.Err() == nil {
		s := poolStatsOf(pool)
		if s.Acquired >= s.Max {
			h.log().Warn("Connection pool exhausted", "wait", h.acquireTimeout, "stats", s)
		}
	}
}

// TraceQueryStart does nothing without SQL_ECHO (ConnConfig.Tracer must be
// a pgx.QueryTracer).
func (h *poolHooks) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return ctx
}

// TraceQueryEnd watches for errors a transaction pooler causes.
func (h *poolHooks) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryEndData) {
	h.statements.observe(ctx, h.log(), data.Err)
}

// echoHooks adds SQL_ECHO logging to poolHooks.
type echoHooks struct {
	*poolHooks
	args bool
}

type queryKey struct{}

type queryState struct {
	sql   string
	args  []any
	start time.Time
}

// TraceQueryStart records the statement and its start time.
func (h *echoHooks) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	return context.WithValue(ctx, queryKey{}, &queryState{sql: data.SQL, args: data.Args, start: time.Now()})
}

// TraceQueryEnd logs the statement, its duration and outcome.
func (h *echoHooks) TraceQueryEnd(ctx context.Context, c *pgx.Conn, data pgx.TraceQueryEndData) {
	h.poolHooks.TraceQueryEnd(ctx, c, data)
	q, ok := ctx.Value(queryKey{}).(*queryState)
	if !ok {
		return
	}
	h.logStatement(ctx, q.sql, q.args, time.Since(q.start), data.CommandTag, data.Err)
}

// TraceBatchStart records the batch start time.
func (h *echoHooks) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return context.WithValue(ctx, queryKey{}, &queryState{start: time.Now()})
}

// TraceBatchQuery logs one statement of a batch (duration since the batch
// started).
func (h *echoHooks) TraceBatchQuery(ctx context.Context, c *pgx.Conn, data pgx.TraceBatchQueryData) {
	h.poolHooks.TraceBatchQuery(ctx, c, data)
	start := time.Now()
	if q, ok := ctx.Value(queryKey{}).(*queryState); ok {
		start = q.start
	}
	h.logStatement(ctx, data.SQL, data.Args, time.Since(start), data.CommandTag, data.Err)
}

// TraceBatchEnd logs nothing (each statement was logged) but watches for
// errors a transaction pooler causes.
func (h *echoHooks) TraceBatchEnd(ctx context.Context, c *pgx.Conn, data pgx.TraceBatchEndData) {
	h.poolHooks.TraceBatchEnd(ctx, c, data)
}

func (h *echoHooks) logStatement(ctx context.Context, sql string, args []any, d time.Duration, tag pgconn.CommandTag, err error) {
	attrs := []slog.Attr{slog.String("sql", sql), slog.Duration("duration", d)}
	if h.args && len(args) > 0 {
		attrs = append(attrs, slog.String("args", fmt.Sprint(args)))
	}
	if err != nil {
		attrs = append(attrs, slog.String("error", safeError(err).Error()))
	} else {
		attrs = append(attrs, slog.Int64("rows", tag.RowsAffected()))
	}
	h.log().LogAttrs(ctx, slog.LevelInfo, "sql", attrs...)
}

// PoolStats is a snapshot of a pool's counters, shown in errors and health.
type PoolStats struct {
	Max          int32 `json:"max_conns"`
	Total        int32 `json:"total_conns"`
	Acquired     int32 `json:"acquired_conns"`
	Idle         int32 `json:"idle_conns"`
	Constructing int32 `json:"constructing_conns"`
	// EmptyAcquires counts acquires that had to wait for a connection.
	EmptyAcquires int64 `json:"empty_acquire_count"`
	// Acquires counts successful acquires.
	Acquires int64 `json:"acquire_count"`
}

// String is a short human form: "3/15 in use, 2 idle, 0 opening".
func (s PoolStats) String() string {
	return fmt.Sprintf("%d/%d in use, %d idle, %d opening", s.Acquired, s.Max, s.Idle, s.Constructing)
}

// poolStatsOf returns the pool's current statistics.
func poolStatsOf(p *pgxpool.Pool) PoolStats {
	st := p.Stat()
	return PoolStats{
		Max: st.MaxConns(), Total: st.TotalConns(), Acquired: st.AcquiredConns(), Idle: st.IdleConns(),
		Constructing: st.ConstructingConns(), EmptyAcquires: st.EmptyAcquireCount(), Acquires: st.AcquireCount(),
	}
}

// acquireConn takes a connection from pool, waiting at most timeout (the
// Config's PoolTimeout; <= 0 means only ctx bounds it). When the wait ends
// because every connection is in use, the error is a *PoolExhaustedError;
// a connection that could not be opened gives a *ConnectionError; both
// wrap ErrUnavailable. Pools from newPoolConfig bound every acquire by the
// pool timeout anyway; acquireConn adds the explanatory error.
func acquireConn(ctx context.Context, pool *pgxpool.Pool, timeout time.Duration) (*pgxpool.Conn, error) {
	actx := ctx
	if timeout > 0 {
		var cancel context.CancelFunc
		actx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	start := time.Now()
	c, err := pool.Acquire(actx)
	if err != nil {
		err = explainAcquire(ctx, pool, err, time.Since(start))
		return nil, err
	}
	return c, nil
}

// explainAcquireError turns an error from a pool operation (Acquire,
// Query, Exec, Begin on a pool from newPoolConfig) into the library's
// error when the pool is the cause: a *PoolExhaustedError when the pool
// timeout ran out with every connection in use, a *ConnectionError when a
// new connection could not be opened. ctx is the caller's context (its
// own deadline is not the pool's fault). Other errors come back redacted
// but otherwise unchanged.
func explainAcquireError(ctx context.Context, pool *pgxpool.Pool, err error) error {
	return explainAcquire(ctx, pool, err, 0)
}

func explainAcquire(ctx context.Context, pool *pgxpool.Pool, err error, waited time.Duration) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		s := poolStatsOf(pool)
		if s.Acquired >= s.Max {
			return &PoolExhaustedError{Wait: waited, Stats: s}
		}
		return classifyConnectError(err, "")
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		target := ""
		if ce.Config != nil {
			target = connstr.ConfigAddr(ce.Config)
		}
		return classifyConnectError(err, target)
	}
	return safeError(err)
}

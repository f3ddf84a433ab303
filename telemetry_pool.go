package dbmanager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/gatewaykit/dbmanager/internal/connstr"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/multitracer"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/gatewaykit/dbmanager/internal/telemetry"
)

// poolTelemetry is the OpenTelemetry side of one pool: a pgx tracer
// (queries, batches, connects, acquires, releases) composed with the
// pool's own tracer, the callback that reads the pool's statistics, the
// reasons connections are closed, slow-query logging and leak detection.
type poolTelemetry struct {
	t        *instrumentation
	pool     *pgxpool.Pool // set by observe
	name     string        // db.client.connection.pool.name: host:port/database
	poolSet  attribute.Set // {pool name}
	poolOpts measureOpts
	idleSet  attribute.Set // {pool name, state=idle}
	usedSet  attribute.Set // {pool name, state=used}
	base     []attribute.KeyValue
	stmts    *telemetry.StatementCache[stmtEntry]
	batches  *telemetry.StatementCache[stmtEntry]
	lifetime time.Duration // MaxConnLifetime (0: never)
	idleTime time.Duration // MaxConnIdleTime (0: never)
	minIdle  int32

	pending  atomic.Int64 // acquires waiting now
	timeouts atomic.Int64 // acquires the pool timeout ended
	closing  atomic.Bool  // the pool is being closed
	reg      metric.Registration
}

// stmtEntry is what a statement's summary gives its metrics and spans,
// built once per distinct statement text.
type stmtEntry struct {
	st        telemetry.Statement
	okOpts    measureOpts          // db.client.operation.duration on success
	attrs     []attribute.KeyValue // the same, as a slice (spans, failures)
	slowSet   attribute.Set        // dbmanager.slow_queries
	spanAttrs []attribute.KeyValue
}

// instrumentPool adds the Manager's tracer to the pool config pc (in front
// of the tracer it already has: the pool timeout, SQL_ECHO) and its hooks
// to AfterRelease and BeforeClose. Call observe with the pool once it
// exists.
func (t *instrumentation) instrumentPool(pc *pgxpool.Config) *poolTelemetry {
	cc := pc.ConnConfig
	name := connstr.DisplayHostPort(cc.Host, int(cc.Port)) + "/" + cc.Database
	pt := &poolTelemetry{
		t:        t,
		name:     name,
		poolSet:  attribute.NewSet(telemetry.PoolName(name)),
		idleSet:  attribute.NewSet(telemetry.PoolName(name), telemetry.StateIdle),
		usedSet:  attribute.NewSet(telemetry.PoolName(name), telemetry.StateUsed),
		lifetime: pc.MaxConnLifetime,
		idleTime: pc.MaxConnIdleTime,
		minIdle:  pc.MinIdleConns,
	}
	pt.poolOpts = optsFor(pt.poolSet)
	pt.base = []attribute.KeyValue{telemetry.SystemPostgreSQL, semconv.ServerAddress(cc.Host)}
	if cc.Port != 0 && cc.Port != 5432 {
		pt.base = append(pt.base, semconv.ServerPort(int(cc.Port)))
	}
	if cc.Database != "" {
		pt.base = append(pt.base, semconv.DBNamespace(cc.Database))
	}
	pt.stmts = telemetry.NewStatementCache(pt.entry)
	pt.batches = telemetry.NewStatementCache(pt.entry)

	if existing, ok := cc.Tracer.(pgx.QueryTracer); ok && existing != nil {
		cc.Tracer = multitracer.New(pt, existing)
	} else {
		cc.Tracer = pt
	}
	if inner := pc.AfterRelease; inner != nil {
		pc.AfterRelease = func(c *pgx.Conn) bool {
			keep := inner(c)
			if !keep {
				markClose(c, closeOverflow)
			}
			return keep
		}
	}
	innerClose := pc.BeforeClose
	pc.BeforeClose = func(c *pgx.Conn) {
		pt.connClosed(c)
		if innerClose != nil {
			innerClose(c)
		}
	}
	return pt
}

func (pt *poolTelemetry) entry(st telemetry.Statement) *stmtEntry {
	attrs := append([]attribute.KeyValue{}, pt.base...)
	if st.Operation != "" {
		attrs = append(attrs, semconv.DBOperationName(st.Operation))
	}
	if st.Table != "" {
		attrs = append(attrs, semconv.DBCollectionName(st.Table))
	}
	attrs = append(attrs, semconv.DBQuerySummary(st.Summary))
	slow := []attribute.KeyValue{telemetry.PoolName(pt.name), semconv.DBOperationName(st.Operation)}
	if st.Table != "" {
		slow = append(slow, semconv.DBCollectionName(st.Table))
	}
	return &stmtEntry{st: st, okOpts: optsFor(attribute.NewSet(attrs...)), attrs: attrs, slowSet: attribute.NewSet(slow...), spanAttrs: attrs}
}

// observe registers the callback that reads the pool's statistics; close
// unregisters it.
func (pt *poolTelemetry) observe(pool *pgxpool.Pool) *poolTelemetry {
	if pt == nil {
		return nil
	}
	pt.pool = pool
	in := pt.t.inst
	reg, err := pt.t.meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		st := pool.Stat()
		o.ObserveInt64(in.ConnectionCount, int64(st.IdleConns()), metric.WithAttributeSet(pt.idleSet))
		o.ObserveInt64(in.ConnectionCount, int64(st.AcquiredConns()), metric.WithAttributeSet(pt.usedSet))
		o.ObserveInt64(in.ConnectionMax, int64(st.MaxConns()), metric.WithAttributeSet(pt.poolSet))
		o.ObserveInt64(in.ConnectionIdleMin, int64(pt.minIdle), metric.WithAttributeSet(pt.poolSet))
		o.ObserveInt64(in.ConnectionPending, pt.pending.Load(), metric.WithAttributeSet(pt.poolSet))
		o.ObserveInt64(in.ConnectionTimeouts, pt.timeouts.Load(), metric.WithAttributeSet(pt.poolSet))
		return nil
	}, in.ConnectionCount, in.ConnectionMax, in.ConnectionIdleMin, in.ConnectionPending, in.ConnectionTimeouts)
	if err != nil {
		otel.Handle(err)
	} else {
		pt.reg = reg
	}
	return pt
}

// closePool closes pool, counting its connections as closed at shutdown,
// and unregisters the pool's callback.
func (pt *poolTelemetry) closePool(pool *pgxpool.Pool) {
	if pt == nil {
		closeAndDrain(pool)
		return
	}
	pt.closing.Store(true)
	closeAndDrain(pool)
	if pt.reg != nil {
		if err := pt.reg.Unregister(); err != nil {
			otel.Handle(err)
		}
	}
}

// closeAndDrain closes pool and waits, up to drainLimit, for the
// connections that were still being opened: pgxpool's Close cancels them
// but returns without waiting (puddle destroys a resource whose
// construction ends after Close), so without the wait a Manager's Close
// could return while such a connection is still open.
func closeAndDrain(pool *pgxpool.Pool) {
	pool.Close()
	deadline := time.Now().Add(drainLimit)
	for pool.Stat().TotalConns() > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
}

// drainLimit bounds closeAndDrain's wait; a cancelled connection attempt
// ends long before.
const drainLimit = 5 * time.Second

// SQL round trips.

type sqlCallKey struct{}

// clientSpan is the kind of a statement's span, built once.
var clientSpan = trace.WithSpanKind(trace.SpanKindClient)

// sqlCall is one statement (or batch) in progress.
type sqlCall struct {
	start time.Time
	stmt  *stmtEntry
	span  trace.Span // nil without a recording parent
	lib   *libraryCall
}

func (pt *poolTelemetry) startSQL(ctx context.Context, e *stmtEntry, sql string, args []any, batchSize int) context.Context {
	c := &sqlCall{start: time.Now(), stmt: e, lib: libraryCallOf(ctx)}
	if pt.t.tracing() && pt.parentRecords(ctx, c.lib) {
		attrs := make([]attribute.KeyValue, 0, len(e.spanAttrs)+2+len(args))
		attrs = append(attrs, e.spanAttrs...)
		if batchSize > 0 {
			attrs = append(attrs, semconv.DBOperationBatchSize(batchSize))
		}
		switch {
		case c.lib != nil && c.lib.op != "" && sql != "":
			// The Store's own statement: its text is fixed and holds no
			// literal; its arguments (keys, values) are never recorded.
			attrs = append(attrs, semconv.DBQueryText(sql))
		case pt.t.traceSQL && sql != "":
			attrs = append(attrs, semconv.DBQueryText(sql))
			for i, a := range args {
				attrs = append(attrs, semconv.DBQueryParameter(strconv.Itoa(i+1), argText(a)))
			}
		}
		ctx, c.span = pt.t.tracer.Start(ctx, e.st.Summary, clientSpan, trace.WithAttributes(attrs...))
	}
	return context.WithValue(ctx, sqlCallKey{}, c)
}

// parentRecords reports whether the span a statement would be a child of
// records. Within a Store call that span is the call's own (nothing
// starts a span between the call and its statements), whose mark says so
// without walking the context.
func (pt *poolTelemetry) parentRecords(ctx context.Context, lib *libraryCall) bool {
	if lib != nil && lib.op != "" {
		return lib.recording
	}
	return trace.SpanFromContext(ctx).IsRecording()
}

// timesStatements reports whether a statement's timing has a reader: a
// meter that reaches an SDK, a tracer that may record its span, or
// DB_SLOW_QUERY_MS. Without one the tracer skips the statement.
func (pt *poolTelemetry) timesStatements() bool {
	return pt.t.slow > 0 || pt.t.metering() || pt.t.tracing()
}

// maxArgText bounds an argument value recorded with DB_TRACE_SQL.
const maxArgText = 256

func argText(a any) string {
	s := fmt.Sprint(a)
	if b, ok := a.([]byte); ok {
		s = string(b)
	}
	if len(s) > maxArgText {
		s = s[:maxArgText] + "..."
	}
	return s
}

func (pt *poolTelemetry) endSQL(ctx context.Context, err error) {
	c, ok := ctx.Value(sqlCallKey{}).(*sqlCall)
	if !ok {
		return
	}
	d := time.Since(c.start)
	in := pt.t.inst
	mctx := measureContext(ctx, c.span != nil)
	if err == nil || errors.Is(err, pgx.ErrNoRows) {
		in.OperationDuration.Record(mctx, d.Seconds(), c.stmt.okOpts.rec...)
	} else {
		attrs := append(append(make([]attribute.KeyValue, 0, len(c.stmt.attrs)+2), c.stmt.attrs...), sqlErrorAttrs(err)...)
		in.OperationDuration.Record(mctx, d.Seconds(), metric.WithAttributes(attrs...))
	}
	if pt.t.slow > 0 && d > pt.t.slow {
		pt.slowStatement(ctx, c, d)
	}
	if c.span != nil {
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			c.span.SetAttributes(sqlErrorAttrs(err)...)
			c.span.SetStatus(codes.Error, pt.sqlErrorText(c, err))
		}
		c.span.End()
	}
}

// sqlErrorAttrs are error.type (the SQLSTATE, or a class) and, for a
// server error, db.response.status_code.
func sqlErrorAttrs(err error) []attribute.KeyValue {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return []attribute.KeyValue{attribute.String("error.type", pgErr.Code), semconv.DBResponseStatusCode(pgErr.Code)}
	}
	return []attribute.KeyValue{attribute.String("error.type", errorType(err))}
}

// sqlErrorText is a failed statement's span status. A server error on the
// caller's own SQL is shown by its SQLSTATE only, unless DB_TRACE_SQL is
// on: PostgreSQL's messages can quote the statement's literals.
func (pt *poolTelemetry) sqlErrorText(c *sqlCall, err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && !pt.t.traceSQL && (c.lib == nil || c.lib.op == "") {
		return "SQLSTATE " + pgErr.Code
	}
	return errorText(err)
}

// slowStatement logs a statement slower than DB_SLOW_QUERY_MS (never its
// arguments) and counts it.
func (pt *poolTelemetry) slowStatement(ctx context.Context, c *sqlCall, d time.Duration) {
	pt.t.inst.SlowQueries.Add(ctx, 1, metric.WithAttributeSet(c.stmt.slowSet))
	attrs := []slog.Attr{
		slog.String("statement", c.stmt.st.Summary),
		slog.Duration("duration", d.Round(time.Microsecond)),
		slog.Duration("threshold", pt.t.slow),
	}
	if c.lib != nil && c.lib.op != "" {
		attrs = append(attrs, slog.String("operation", c.lib.op))
		if c.lib.collection != "" {
			attrs = append(attrs, slog.String("collection", c.lib.collection))
		}
	}
	pt.t.log.LogAttrs(ctx, slog.LevelWarn, "Slow database statement", attrs...)
}

// TraceQueryStart starts timing a statement, and a span under a recording
// parent.
func (pt *poolTelemetry) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	if !pt.timesStatements() {
		return ctx // nothing would read it (endSQL then skips too)
	}
	return pt.startSQL(ctx, pt.stmts.Get(data.SQL), data.SQL, data.Args, 0)
}

// TraceQueryEnd records the statement's duration and ends its span.
func (pt *poolTelemetry) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryEndData) {
	pt.endSQL(ctx, data.Err)
}

// TraceBatchStart times a batch as one operation, named after its
// statements when they all share a summary ("BATCH INSERT t").
func (pt *poolTelemetry) TraceBatchStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceBatchStartData) context.Context {
	if !pt.timesStatements() {
		return ctx
	}
	summary, size := "BATCH", 0
	if data.Batch != nil && len(data.Batch.QueuedQueries) > 0 {
		size = len(data.Batch.QueuedQueries)
		first := pt.stmts.Get(data.Batch.QueuedQueries[0].SQL)
		summary = "BATCH " + first.st.Summary
		for _, q := range data.Batch.QueuedQueries[1:] {
			if pt.stmts.Get(q.SQL).st.Summary != first.st.Summary {
				summary = "BATCH"
				break
			}
		}
	}
	return pt.startSQL(ctx, pt.batches.Get(summary), "", nil, size)
}

// TraceBatchQuery does nothing: a batch is one operation.
func (pt *poolTelemetry) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}

// TraceBatchEnd records the batch's duration and ends its span.
func (pt *poolTelemetry) TraceBatchEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceBatchEndData) {
	pt.endSQL(ctx, data.Err)
}

// Connections and the pool.

type connectKey struct{}

// TraceConnectStart times a new connection.
func (pt *poolTelemetry) TraceConnectStart(ctx context.Context, _ pgx.TraceConnectStartData) context.Context {
	return context.WithValue(ctx, connectKey{}, time.Now())
}

// TraceConnectEnd records db.client.connection.create_time and gives the
// connection its bookkeeping.
func (pt *poolTelemetry) TraceConnectEnd(ctx context.Context, data pgx.TraceConnectEndData) {
	start, ok := ctx.Value(connectKey{}).(time.Time)
	if !ok {
		return
	}
	now := time.Now()
	pt.t.inst.ConnectionCreate.Record(ctx, now.Sub(start).Seconds(), pt.poolOpts.rec...)
	if data.Err == nil && data.Conn != nil {
		data.Conn.PgConn().CustomData()[connStatsKey] = &connStats{created: now}
	}
}

type acquireCallKey struct{}

type acquireCall struct {
	start  time.Time
	caller context.Context // before the pool timeout was added
}

// TraceAcquireStart counts a pending request. It runs before the pool's
// own hook adds the pool timeout, so it keeps the caller's context to tell
// the pool timeout from the caller's deadline.
func (pt *poolTelemetry) TraceAcquireStart(ctx context.Context, _ *pgxpool.Pool, _ pgxpool.TraceAcquireStartData) context.Context {
	if pt.t.leak == 0 && !pt.t.metering() {
		return ctx // nothing would read it (TraceAcquireEnd then skips too)
	}
	pt.pending.Add(1)
	return context.WithValue(ctx, acquireCallKey{}, &acquireCall{start: time.Now(), caller: ctx})
}

// TraceAcquireEnd records the wait, counts a pool timeout, and starts the
// use time (and leak detection for connections taken by the caller).
func (pt *poolTelemetry) TraceAcquireEnd(ctx context.Context, _ *pgxpool.Pool, data pgxpool.TraceAcquireEndData) {
	a, ok := ctx.Value(acquireCallKey{}).(*acquireCall)
	if !ok {
		return
	}
	pt.pending.Add(-1)
	now := time.Now()
	lib := libraryCallOf(ctx)
	// A Store call's mark says whether its span records; the caller's own
	// acquires keep their context (its span, if any, is the exemplar's).
	pt.t.inst.ConnectionWait.Record(measureContext(ctx, lib == nil || lib.op == "" || lib.recording), now.Sub(a.start).Seconds(), pt.poolOpts.rec...)
	if data.Err != nil {
		if errors.Is(data.Err, context.DeadlineExceeded) && a.caller.Err() == nil {
			pt.timeouts.Add(1)
		}
		return
	}
	cs := statsOf(data.Conn)
	if cs == nil {
		return
	}
	cs.acquired(now)
	if pt.t.leak > 0 && lib == nil {
		cs.watchLeak(pt, now)
	}
}

// TraceRelease records the use time and ends leak detection.
func (pt *poolTelemetry) TraceRelease(_ *pgxpool.Pool, data pgxpool.TraceReleaseData) {
	cs := statsOf(data.Conn)
	if cs == nil {
		return
	}
	now := time.Now()
	if used, ok := cs.released(now); ok {
		pt.t.inst.ConnectionUse.Record(context.Background(), now.Sub(used).Seconds(), pt.poolOpts.rec...)
	}
}

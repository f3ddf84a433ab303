package dbmanager

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/trace"

	"github.com/gatewaykit/dbmanager/internal/pgtest"
	"github.com/gatewaykit/dbmanager/internal/telemetry"
)

// checkShapes verifies every metric the library reported against its
// definition in internal/telemetry: unit, kind, and attribute keys (the
// declared ones only; the required ones always).
func checkShapes(t *testing.T, rm metricdata.ResourceMetrics) {
	t.Helper()
	defs := map[string]telemetry.Metric{}
	for _, d := range telemetry.All {
		defs[d.Name] = d
	}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != telemetry.ScopeName {
			t.Errorf("scope %q; want %q", sm.Scope.Name, telemetry.ScopeName)
		}
		for _, m := range sm.Metrics {
			d, ok := defs[m.Name]
			if !ok {
				t.Errorf("metric %q is not declared in internal/telemetry", m.Name)
				continue
			}
			if m.Unit != d.Unit {
				t.Errorf("%s: unit %q; want %q", m.Name, m.Unit, d.Unit)
			}
			if m.Description != d.Description {
				t.Errorf("%s: description %q; want %q", m.Name, m.Description, d.Description)
			}
			switch data := m.Data.(type) {
			case metricdata.Sum[int64]:
				monotonic := d.Kind == telemetry.Counter || d.Kind == telemetry.ObservedCounter
				if (d.Kind != telemetry.Counter && d.Kind != telemetry.ObservedCounter && d.Kind != telemetry.ObservedUpDown) || data.IsMonotonic != monotonic {
					t.Errorf("%s: a sum (monotonic %v); declared %s", m.Name, data.IsMonotonic, d.Kind)
				}
			case metricdata.Histogram[float64]:
				if d.Kind != telemetry.Histogram {
					t.Errorf("%s: a histogram; declared %s", m.Name, d.Kind)
				}
			case metricdata.Gauge[int64]:
				if d.Kind != telemetry.ObservedGauge {
					t.Errorf("%s: a gauge; declared %s", m.Name, d.Kind)
				}
			default:
				t.Errorf("%s: unexpected data %T", m.Name, m.Data)
			}
			var allowed, required []string
			for _, a := range d.Attributes {
				if name, opt := strings.CutSuffix(a, "?"); opt {
					allowed = append(allowed, name)
				} else {
					allowed, required = append(allowed, a), append(required, a)
				}
			}
			for _, p := range pointsOf(m) {
				keys := attrKeys(p.attrs)
				for _, k := range keys {
					if !slices.Contains(allowed, k) {
						t.Errorf("%s: attribute %q not declared (%v)", m.Name, k, keys)
					}
				}
				for _, k := range required {
					if !slices.Contains(keys, k) {
						t.Errorf("%s: required attribute %q missing (%v)", m.Name, k, keys)
					}
				}
			}
		}
	}
}

func TestTelemetryMetricsOnPostgreSQL(t *testing.T) {
	ctx := context.Background()
	h := newOTelHarness(t)
	m, _ := newTestManager(t, envConfig(t, "DATABASE_URL", pgtest.URL(t)), h.options()...)
	if err := m.Init(ctx); err != nil {
		t.Fatal(err)
	}
	s := m.Store()
	for i := range 7 {
		if _, err := s.Put(ctx, "apis", fmt.Sprint("k", i), []byte(`{"n":1}`)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		if _, err := s.Get(ctx, "apis", fmt.Sprint("k", i)); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		if _, err := s.Get(ctx, "apis", "missing"); !errors.Is(err, ErrNotFound) {
			t.Fatal(err)
		}
	}
	if _, err := s.Put(ctx, "apis", "k1", []byte(`{}`), IfVersion(99)); !errors.Is(err, ErrConflict) {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, "apis", "k1", []byte(`not json`)); !errors.Is(err, ErrInvalid) {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "apis", "k6"); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := s.List(ctx, "apis", ListOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}

	// pgxpool hands a released connection back on a goroutine of its own:
	// wait until the last one is idle again.
	pool := "db.client.connection.pool.name=" + m.Info().Host + ":" + fmt.Sprint(m.Info().Port) + "/" + m.Info().Database
	h.eventuallyMetric(t, 5*time.Second, "no connection in use", func(rm metricdata.ResourceMetrics) bool {
		return sumWhere(rm, "db.client.connection.count", pool, "db.client.connection.state=used") == 0
	})
	rm := h.collect(t)
	checkShapes(t, rm)
	const ops = "dbmanager.store.operations"
	pg := "dbmanager.backend=postgresql"
	for _, c := range []struct {
		match []string
		want  float64
	}{
		{[]string{"dbmanager.operation=put", pg, "dbmanager.outcome=ok"}, 7},
		{[]string{"dbmanager.operation=get", pg, "dbmanager.outcome=ok"}, 5},
		{[]string{"dbmanager.operation=get", pg, "dbmanager.outcome=not_found"}, 2},
		{[]string{"dbmanager.operation=put", pg, "dbmanager.outcome=conflict"}, 1},
		{[]string{"dbmanager.operation=put", pg, "dbmanager.outcome=invalid", "error.type=invalid"}, 1},
		{[]string{"dbmanager.operation=delete", pg, "dbmanager.outcome=ok"}, 1},
		{[]string{"dbmanager.operation=list", pg, "dbmanager.outcome=ok"}, 3},
		{[]string{"dbmanager.operation=ping", pg, "dbmanager.outcome=ok"}, 1},
		{[]string{"dbmanager.backend=in-memory"}, 0},
	} {
		if got := sumWhere(rm, ops, c.match...); got != c.want {
			t.Errorf("%s%v = %v; want %v", ops, c.match, got, c.want)
		}
		if got := sumWhere(rm, "dbmanager.store.operation.duration", c.match...); got != c.want {
			t.Errorf("duration count %v = %v; want %v", c.match, got, c.want)
		}
	}
	if n := sumWhere(rm, ops, "error.type=invalid") + sumWhere(rm, ops, "dbmanager.outcome=not_found", "error.type=not_found"); n != 1 {
		t.Errorf("error.type must mark failures only (not a missing key): %v", n)
	}
	if _, ok := metricNamed(rm, ops); ok {
		om, _ := metricNamed(rm, ops)
		for _, p := range pointsOf(om) {
			if _, has := p.attrs.Value(telemetry.AttrCollection); has {
				t.Errorf("collection attribute without WithCollectionAttribute: %v", p.attrs.ToSlice())
			}
		}
	}

	// SQL round trips: every Get ran one SELECT (the not-found ones too).
	sel := []string{"db.system.name=postgresql", "db.operation.name=SELECT", "db.collection.name=dbmanager.records",
		"db.query.summary=SELECT dbmanager.records", "server.address=127.0.0.1"}
	if got := sumWhere(rm, "db.client.operation.duration", sel...); got != 5+2+3 {
		t.Errorf("db.client.operation.duration%v = %v; want 10 (7 gets, 3 lists)", sel, got)
	}
	if got := sumWhere(rm, "db.client.operation.duration", "db.query.summary=INSERT dbmanager.records"); got != 7 {
		t.Errorf("INSERT round trips = %v; want 7", got)
	}

	if got := sumWhere(rm, "db.client.connection.max", pool); got != float64(DefaultPoolSize+DefaultMaxOverflow) {
		t.Errorf("db.client.connection.max = %v; want %d (pool %s)", got, DefaultPoolSize+DefaultMaxOverflow, pool)
	}
	if idle, used := sumWhere(rm, "db.client.connection.count", pool, "db.client.connection.state=idle"),
		sumWhere(rm, "db.client.connection.count", pool, "db.client.connection.state=used"); idle < 1 || used != 0 {
		t.Errorf("db.client.connection.count idle=%v used=%v; want idle >= 1, used 0", idle, used)
	}
	if got := sumWhere(rm, "db.client.connection.pending_requests", pool); got != 0 {
		t.Errorf("pending_requests = %v at rest", got)
	}
	if got := sumWhere(rm, "db.client.connection.timeouts", pool); got != 0 {
		t.Errorf("timeouts = %v", got)
	}
	calls := 7.0 + 5 + 2 + 1 + 1 + 3 + 1 // the invalid Put never reached the pool
	for _, name := range []string{"db.client.connection.wait_time", "db.client.connection.use_time"} {
		if got := sumWhere(rm, name, pool); got < calls {
			t.Errorf("%s count = %v; want at least %v (one per Store call)", name, got, calls)
		}
	}
	if got := sumWhere(rm, "db.client.connection.create_time", pool); got < 1 {
		t.Errorf("create_time count = %v; want at least one connection", got)
	}
	if pgOn, memOn := sumWhere(rm, "dbmanager.store.backend", pg), sumWhere(rm, "dbmanager.store.backend", "dbmanager.backend=in-memory"); pgOn != 1 || memOn != 0 {
		t.Errorf("dbmanager.store.backend postgresql=%v in-memory=%v; want 1 and 0", pgOn, memOn)
	}
}

func TestTelemetrySpans(t *testing.T) {
	ctx := context.Background()
	h := newOTelHarness(t)
	m, _ := newTestManager(t, envConfig(t, "DATABASE_URL", pgtest.URL(t)), h.options()...)
	if err := m.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if init := h.spansNamed("dbmanager.Init"); len(init) != 1 || spanAttr(init[0], "dbmanager.backend") != BackendPostgreSQL {
		t.Fatalf("Init spans = %v", init)
	}
	h.spans.Reset()
	s := m.Store()
	if _, err := s.Put(ctx, "apis", "k", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "apis", "k"); err != nil {
		t.Fatal(err)
	}
	gets := h.spansNamed("dbmanager.Get")
	if len(gets) != 1 {
		t.Fatalf("%d dbmanager.Get spans; want 1", len(gets))
	}
	get := gets[0]
	if get.SpanKind() != trace.SpanKindClient || spanAttr(get, "db.system.name") != "postgresql" ||
		spanAttr(get, "dbmanager.backend") != BackendPostgreSQL || spanAttr(get, "dbmanager.outcome") != "ok" {
		t.Errorf("Get span: kind %v attrs %v", get.SpanKind(), get.Attributes())
	}
	var child []string
	for _, sp := range h.spans.Ended() {
		if sp.Parent().SpanID() == get.SpanContext().SpanID() {
			child = append(child, sp.Name())
			if sp.SpanKind() != trace.SpanKindClient || !strings.HasPrefix(spanAttr(sp, "db.query.text"), "SELECT value") ||
				spanAttr(sp, "db.operation.name") != "SELECT" {
				t.Errorf("SQL span: kind %v attrs %v", sp.SpanKind(), sp.Attributes())
			}
			for _, kv := range sp.Attributes() {
				if strings.HasPrefix(string(kv.Key), "db.query.parameter") {
					t.Errorf("the Store's arguments were recorded: %v", kv)
				}
			}
		}
	}
	if !slices.Equal(child, []string{"SELECT dbmanager.records"}) {
		t.Errorf("children of the Get span = %v; want the one SELECT", child)
	}

	// The caller's own SQL: a span only under a recording parent, without
	// its text or arguments unless DB_TRACE_SQL is on.
	pool, _ := m.Pool()
	h.spans.Reset()
	if _, err := pool.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	if n := len(h.spans.Ended()); n != 0 {
		t.Errorf("%d spans for SQL without a recording parent; want none", n)
	}
	pctx, parent := h.tp.Tracer("test").Start(ctx, "handler")
	var n int
	if err := pool.QueryRow(pctx, "select count(*) from pg_catalog.pg_class where relname = $1", "secret-arg").Scan(&n); err != nil {
		t.Fatal(err)
	}
	parent.End()
	sqls := h.spansNamed("SELECT pg_catalog.pg_class")
	if len(sqls) != 1 || spanAttr(sqls[0], "db.query.text") != "" || strings.Contains(fmt.Sprint(sqls[0].Attributes()), "secret-arg") {
		t.Errorf("caller SQL spans = %v", sqls)
	}

	// On memory the Store's spans are internal.
	mm, _ := newTestManager(t, envConfig(t, "DATABASE_URL", "memory://"), h.options()...)
	if err := mm.Init(ctx); err != nil {
		t.Fatal(err)
	}
	h.spans.Reset()
	if _, err := mm.Store().Get(ctx, "apis", "none"); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	if mg := h.spansNamed("dbmanager.Get"); len(mg) != 1 || mg[0].SpanKind() != trace.SpanKindInternal ||
		spanAttr(mg[0], "db.system.name") != "" || mg[0].Status().Code.String() != "Unset" {
		t.Errorf("memory Get spans = %v", mg)
	}
}

func TestTelemetryCollectionAttributeOptIn(t *testing.T) {
	ctx := context.Background()
	h := newOTelHarness(t)
	m, _ := newTestManager(t, envConfig(t, "DATABASE_URL", "memory://"), h.options(WithCollectionAttribute())...)
	if err := m.Init(ctx); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := m.Store().Put(ctx, "orders", "k", []byte(`1`)); err != nil {
			t.Fatal(err)
		}
	}
	rm := h.collect(t)
	checkShapes(t, rm)
	if got := sumWhere(rm, "dbmanager.store.operations", "dbmanager.collection=orders", "dbmanager.backend=in-memory", "dbmanager.outcome=ok"); got != 3 {
		t.Errorf("operations with the collection = %v; want 3", got)
	}
	if puts := h.spansNamed("dbmanager.Put"); len(puts) != 3 || spanAttr(puts[0], "dbmanager.collection") != "orders" {
		t.Errorf("Put spans = %v", puts)
	}
}

func TestTelemetryBackendFollowsFallbackAndRecovery(t *testing.T) {
	ctx := context.Background()
	srv := pgtest.NewServer(t)
	url := srv.URL(t)
	srv.Stop(t)
	h := newOTelHarness(t)
	m, _ := newTestManager(t, envConfig(t, "DATABASE_URL", url, "DB_CONNECT_TIMEOUT", "1"), h.options()...)
	if err := m.Init(ctx); err != nil {
		t.Fatal(err)
	}
	s := m.Store()
	for i := range 4 {
		if _, err := s.Put(ctx, "apis", fmt.Sprint("outage", i), []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	rm := h.collect(t)
	checkShapes(t, rm)
	if got := sumWhere(rm, "dbmanager.store.operations", "dbmanager.backend=in-memory", "dbmanager.operation=put"); got != 4 {
		t.Errorf("puts served from memory = %v; want 4", got)
	}
	if mem, pg := sumWhere(rm, "dbmanager.store.backend", "dbmanager.backend=in-memory"), sumWhere(rm, "dbmanager.store.backend", "dbmanager.backend=postgresql"); mem != 1 || pg != 0 {
		t.Errorf("backend gauge during the fallback: in-memory=%v postgresql=%v", mem, pg)
	}
	if got := sumWhere(rm, "dbmanager.fallbacks", "error.type=connection_refused"); got != 1 {
		t.Errorf("dbmanager.fallbacks{refused} = %v; want 1", got)
	}
	h.eventuallyMetric(t, 10*time.Second, "a failed recovery attempt", func(rm metricdata.ResourceMetrics) bool {
		return sumWhere(rm, "dbmanager.recovery.attempts", "dbmanager.outcome=failed", "error.type=connection_refused") >= 1
	})

	srv.Start(t)
	eventually(t, 15*time.Second, "the Store to move back to PostgreSQL", func() bool { return m.Info().UsingPrimary })
	for i := range 2 {
		if _, err := s.Put(ctx, "apis", fmt.Sprint("after", i), []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	rm = h.collect(t)
	checkShapes(t, rm)
	if mem, pg := sumWhere(rm, "dbmanager.store.backend", "dbmanager.backend=in-memory"), sumWhere(rm, "dbmanager.store.backend", "dbmanager.backend=postgresql"); mem != 0 || pg != 1 {
		t.Errorf("backend gauge after the move: in-memory=%v postgresql=%v", mem, pg)
	}
	if got := sumWhere(rm, "dbmanager.store.operations", "dbmanager.backend=postgresql", "dbmanager.operation=put"); got != 2 {
		t.Errorf("puts on PostgreSQL after the move = %v; want 2", got)
	}
	for name, want := range map[string]float64{"dbmanager.recoveries": 1, "dbmanager.recovery.records_moved": 4, "dbmanager.recovery.conflicts": 0} {
		if got := sumWhere(rm, name); got != want {
			t.Errorf("%s = %v; want %v", name, got, want)
		}
	}
	if got := sumWhere(rm, "dbmanager.recovery.attempts", "dbmanager.outcome=ok"); got != 1 {
		t.Errorf("successful attempts = %v; want 1", got)
	}
	if got := sumWhere(rm, "dbmanager.recovery.move.duration", "dbmanager.outcome=ok"); got != 1 {
		t.Errorf("moves timed = %v; want 1", got)
	}
	moves := h.spansNamed("dbmanager.recovery.move")
	if len(moves) != 1 || spanAttr(moves[0], "dbmanager.recovery.records_moved") != "4" {
		t.Fatalf("move spans = %v", moves)
	}
	var failed, ok int
	for _, a := range h.spansNamed("dbmanager.recovery.attempt") {
		switch {
		case a.Status().Code.String() == "Error" && spanAttr(a, "error.type") == "connection_refused":
			failed++
		case a.SpanContext().SpanID() == moves[0].Parent().SpanID():
			ok++
		}
	}
	if failed < 1 || ok != 1 {
		t.Errorf("attempt spans: %d failed, %d holding the move; want >= 1 and 1", failed, ok)
	}
}

func TestTelemetryPendingAndTimeoutsOnAFullPool(t *testing.T) {
	ctx := context.Background()
	h := newOTelHarness(t)
	m, _ := newTestManager(t, envConfig(t, "DATABASE_URL", pgtest.URL(t),
		"DB_POOL_SIZE", "1", "DB_MAX_OVERFLOW", "0", "DB_POOL_TIMEOUT", "1"), h.options()...)
	if err := m.Init(ctx); err != nil {
		t.Fatal(err)
	}
	pool, _ := m.Pool()
	held, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := m.Store().Get(ctx, "apis", "k")
		done <- err
	}()
	h.eventuallyMetric(t, 5*time.Second, "one pending request", func(rm metricdata.ResourceMetrics) bool {
		return sumWhere(rm, "db.client.connection.pending_requests") == 1
	})
	rm := h.collect(t)
	if used := sumWhere(rm, "db.client.connection.count", "db.client.connection.state=used"); used != 1 {
		t.Errorf("used connections while one is held = %v", used)
	}
	var exhausted *PoolExhaustedError
	if err := <-done; !errors.As(err, &exhausted) {
		t.Fatalf("Get on a full pool = %v", err)
	}
	held.Release()
	rm = h.collect(t)
	checkShapes(t, rm)
	if got := sumWhere(rm, "db.client.connection.timeouts"); got != 1 {
		t.Errorf("timeouts = %v; want 1", got)
	}
	if got := sumWhere(rm, "db.client.connection.pending_requests"); got != 0 {
		t.Errorf("pending after the timeout = %v; want 0", got)
	}
	if got := sumWhere(rm, "dbmanager.store.operations", "dbmanager.outcome=pool_exhausted", "error.type=pool_exhausted"); got != 1 {
		t.Errorf("Store calls failed by the full pool = %v; want 1", got)
	}
}

func TestTelemetryNothingRecordedAfterClose(t *testing.T) {
	ctx := context.Background()
	h := newOTelHarness(t)
	m := New(envConfig(t, "DATABASE_URL", pgtest.URL(t)), h.options(WithLogger(discardLogger()))...)
	if err := m.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Store().Put(ctx, "apis", "k", []byte(`1`)); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(ctx); err != nil {
		t.Fatal(err)
	}
	rm := h.collect(t)
	for _, name := range []string{"db.client.connection.count", "db.client.connection.max", "db.client.connection.pending_requests", "dbmanager.store.backend"} {
		if mt, ok := metricNamed(rm, name); ok && len(pointsOf(mt)) > 0 {
			t.Errorf("%s still observed after Close: %v", name, pointsOf(mt))
		}
	}
	if got := sumWhere(rm, "dbmanager.connections.closed", "dbmanager.close.reason=shutdown"); got < 1 {
		t.Errorf("connections closed at shutdown = %v; want >= 1", got)
	}
	before := sumWhere(rm, "dbmanager.store.operations")
	if _, err := m.Store().Get(ctx, "apis", "k"); !errors.Is(err, ErrClosed) {
		t.Fatal(err)
	}
	h.spans.Reset()
	if after := sumWhere(h.collect(t), "dbmanager.store.operations"); after != before {
		t.Errorf("Store calls after Close were recorded: %v -> %v", before, after)
	}
	if n := len(h.spans.Ended()); n != 0 {
		t.Errorf("%d spans after Close", n)
	}
}

func TestTelemetryConnectionsClosedByReason(t *testing.T) {
	ctx := context.Background()
	url := pgtest.URL(t)
	h := newOTelHarness(t)
	m, _ := newTestManager(t, envConfig(t, "DATABASE_URL", url, "DB_POOL_RECYCLE", "1"), h.options()...)
	if err := m.Init(ctx); err != nil {
		t.Fatal(err)
	}
	s := m.Store()
	if _, err := s.Put(ctx, "apis", "k", []byte(`1`)); err != nil {
		t.Fatal(err)
	}
	// Older than DB_POOL_RECYCLE (1 s plus 10 % jitter): the next acquire
	// closes it.
	time.Sleep(1200 * time.Millisecond)
	h.eventuallyMetric(t, 10*time.Second, "a connection closed for its lifetime", func(rm metricdata.ResourceMetrics) bool {
		if _, err := s.Get(ctx, "apis", "k"); err != nil {
			t.Fatal(err)
		}
		return sumWhere(rm, "dbmanager.connections.closed", "dbmanager.close.reason=lifetime") >= 1
	})

	// The server closes the pool's idle connections: the next acquire
	// finds them dead (internal/netconn) and opens a new one.
	admin := openAdmin(t, url)
	pool, _ := m.Pool()
	var idle int
	eventually(t, 5*time.Second, "an idle connection", func() bool { idle = int(pool.Stat().IdleConns()); return idle > 0 })
	const others = `FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'`
	if _, err := admin.Exec(ctx, `SELECT pg_terminate_backend(pid) `+others); err != nil {
		t.Fatal(err)
	}
	// Once the server processes are gone, their goodbye waits in the
	// pool's idle sockets.
	eventually(t, 10*time.Second, "the server to close the pool's connections", func() bool {
		var n int
		if err := admin.QueryRow(ctx, `SELECT count(*) `+others).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 0
	})
	time.Sleep(50 * time.Millisecond)
	if _, err := s.Get(ctx, "apis", "k"); err != nil {
		t.Fatalf("Get after the server closed the idle connections: %v (the pool must drop them on acquire)", err)
	}
	h.eventuallyMetric(t, 5*time.Second, "a connection closed as found dead", func(rm metricdata.ResourceMetrics) bool {
		return sumWhere(rm, "dbmanager.connections.closed", "dbmanager.close.reason=dead_peer") >= 1
	})
	checkShapes(t, h.collect(t))
}

func TestTelemetryConnectionClosedOnAReadOnlyNode(t *testing.T) {
	ctx := context.Background()
	srv := pgtest.NewServer(t)
	h := newOTelHarness(t)
	m, _ := newTestManager(t, envConfig(t, "DATABASE_URL", srv.URL(t), "DB_CONNECT_TIMEOUT", "1"), h.options()...)
	if err := m.Init(ctx); err != nil {
		t.Fatal(err)
	}
	s := m.Store()
	if _, err := s.Put(ctx, "apis", "k", []byte(`1`)); err != nil {
		t.Fatal(err)
	}
	// The node the pool is on turns read-only: the pooled connection's
	// next write gets 25006 and the library closes it.
	srv.Fence(t)
	wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if _, err := s.Put(wctx, "apis", "k", []byte(`2`)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Put on a read-only node = %v; want ErrUnavailable", err)
	}
	h.eventuallyMetric(t, 5*time.Second, "a connection closed as found on a read-only node", func(rm metricdata.ResourceMetrics) bool {
		return sumWhere(rm, "dbmanager.connections.closed", "dbmanager.close.reason=read_only") >= 1
	})
	checkShapes(t, h.collect(t))
}

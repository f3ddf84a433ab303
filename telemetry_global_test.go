package dbmanager

import (
	"context"
	"sync/atomic"
	"testing"

	"go.opentelemetry.io/otel"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// globalProviderTest is set once the global provider has been installed.
var globalProviderTest atomic.Bool

// TestTelemetryReachesAGlobalProviderInstalledAfterNew is the only test
// that installs a global MeterProvider: a Manager built without options
// (Default, say) before the application sets up its SDK is seen by it.
// Until then neither the Store wrapper nor the pool's tracer does
// per-call work (metering is false: nothing could read it); from the
// first call after the SDK is installed they measure: one Get then is one
// count, one wait, one use and one statement duration.
func TestTelemetryReachesAGlobalProviderInstalledAfterNew(t *testing.T) {
	if !globalProviderTest.CompareAndSwap(false, true) {
		t.Skip("the global MeterProvider delegates to the first one installed, once per process (-count > 1)")
	}
	if !isGlobalDelegate(otel.GetMeterProvider()) {
		t.Fatal("a global MeterProvider was installed before this test")
	}
	ctx := context.Background()
	m, _ := newTestManager(t, envConfig(t, "DATABASE_URL", "memory://"))
	pg, _ := newTestManager(t, envConfig(t, "DATABASE_URL", pgtestURL(t)))
	if err := pg.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if pg.tel.metering() {
		t.Fatal("metering() is true with the global no-op delegate")
	}
	tracedBefore := pg.tel.tracing() // a global TracerProvider installed by another test observes calls
	if _, err := pg.Store().Put(ctx, "apis", "k", []byte(`1`)); err != nil {
		t.Fatal(err)
	}
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(ctx) })
	otel.SetMeterProvider(mp)
	if !pg.tel.metering() {
		t.Fatal("metering() is false after an SDK was installed globally")
	}
	if err := m.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Store().Put(ctx, "apis", "k", []byte(`1`)); err != nil {
		t.Fatal(err)
	}
	if _, err := pg.Store().Get(ctx, "apis", "k"); err != nil {
		t.Fatal(err)
	}
	var pgm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &pgm); err != nil {
		t.Fatal(err)
	}
	for name, match := range map[string][]string{
		"db.client.operation.duration":       {"db.operation.name=SELECT"},
		"db.client.connection.wait_time":     nil,
		"db.client.connection.use_time":      nil,
		"dbmanager.store.operation.duration": {"dbmanager.operation=get"},
	} {
		if got := sumWhere(pgm, name, match...); got != 1 {
			t.Errorf("%s%v: %v points after one Get with the SDK installed, want 1", name, match, got)
		}
	}
	// The Put before the SDK was not seen by anything, so it is not
	// counted either (the unobserved fast path); the Get after it is.
	// (It runs before TestStoreSpansFollowAGlobalSDKInstalledLater, whose
	// global TracerProvider would make every call observed.)
	wantPuts := 0.0
	if tracedBefore {
		wantPuts = 1
	}
	if put, get := sumWhere(pgm, "dbmanager.store.operations", "dbmanager.operation=put", "dbmanager.backend=postgresql"),
		sumWhere(pgm, "dbmanager.store.operations", "dbmanager.operation=get", "dbmanager.backend=postgresql"); put != wantPuts || get != 1 {
		t.Errorf("PostgreSQL calls counted: %v puts (before the SDK), %v gets (after); want %v and 1", put, get, wantPuts)
	}
	if _, ok := metricNamed(pgm, "db.client.connection.pending_requests"); !ok || sumWhere(pgm, "db.client.connection.pending_requests") != 0 {
		t.Errorf("pending requests after the calls ended: reported %v, %v; want 0", ok, sumWhere(pgm, "db.client.connection.pending_requests"))
	}
	// Closed, so that its backend gauge (postgresql) does not overwrite
	// the memory Manager's (same attributes).
	if err := pg.Close(ctx); err != nil {
		t.Fatal(err)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	if got := sumWhere(rm, "dbmanager.store.operations", "dbmanager.operation=put", "dbmanager.backend=in-memory"); got != 1 {
		t.Errorf("puts seen by the global provider installed after New = %v; want 1", got)
	}
	if got := sumWhere(rm, "dbmanager.store.backend", "dbmanager.backend=in-memory"); got != 1 {
		t.Errorf("backend gauge seen by the global provider = %v; want 1", got)
	}
}

// TestStoreSpansFollowAGlobalSDKInstalledLater: without a TracerProvider
// option the Store starts no span while OpenTelemetry's global provider
// is its own no-op delegate (the fast path), and traces from the first
// call after an SDK is installed globally. The test leaves that SDK
// installed (the global cannot be put back), shut down: it records
// nothing afterwards.
func TestStoreSpansFollowAGlobalSDKInstalledLater(t *testing.T) {
	if !isGlobalDelegate(otel.GetTracerProvider()) {
		t.Skip("a global TracerProvider is already installed in this process")
	}
	ctx := context.Background()
	m, _ := newTestManager(t, envConfig(t)) // memory: no DATABASE_URL
	if err := m.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if m.tel.tracing() {
		t.Fatal("tracing() is true with the global no-op delegate")
	}
	s := m.Store()
	if _, err := s.Put(ctx, "apis", "k", []byte(`1`)); err != nil {
		t.Fatal(err)
	}

	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	otel.SetTracerProvider(tp)
	if isGlobalDelegate(tp) {
		t.Fatal("an SDK provider taken for the global delegate")
	}
	if !m.tel.tracing() {
		t.Fatal("tracing() is false after an SDK was installed globally")
	}
	if _, err := s.Get(ctx, "apis", "k"); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, sp := range spans.Ended() {
		names = append(names, sp.Name())
	}
	if len(names) != 1 || names[0] != "dbmanager.Get" {
		t.Fatalf("spans after installing an SDK: %q; want [dbmanager.Get]", names)
	}
}

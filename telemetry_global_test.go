package dbmanager

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

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

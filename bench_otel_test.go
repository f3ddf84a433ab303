package dbmanager

import (
	"context"
	"testing"

	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/gatewaykit/dbmanager/internal/pgtest"
)

// The telemetry benchmarks measure what OpenTelemetry costs a Store call
// through the Manager: the same Get on two Managers over the same data,
// one reporting to the SDK (a MeterProvider read by a ManualReader, a
// TracerProvider with a sampler and a batch span processor), the other to
// no-op providers, interleaved (see interleaved) so the machine's drift
// cancels out. "store/raw" is SDK time over no-op time (target on
// PostgreSQL: <= 1.03).
//
//	go test -run '^$' -bench 'BenchmarkTelemetry' -count 5 ./

// discardSpans is a span exporter that drops every batch.
type discardSpans struct{}

func (discardSpans) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardSpans) Shutdown(context.Context) error                             { return nil }

// sdkOptions reports to the OpenTelemetry SDK, sampling traces with
// sampler.
func sdkOptions(b *testing.B, sampler sdktrace.Sampler) []Option {
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sampler), sdktrace.WithBatcher(discardSpans{}))
	b.Cleanup(func() {
		_ = mp.Shutdown(context.Background())
		_ = tp.Shutdown(context.Background())
	})
	return []Option{WithMeterProvider(mp), WithTracerProvider(tp)}
}

var noopOptions = []Option{WithMeterProvider(metricnoop.NewMeterProvider()), WithTracerProvider(tracenoop.NewTracerProvider())}

func benchManager(b *testing.B, url string, opts ...Option) Store {
	b.Helper()
	cfg, err := LoadConfig(func(k string) string {
		if k == "DATABASE_URL" {
			return url
		}
		return ""
	})
	if err != nil {
		b.Fatal(err)
	}
	m := New(cfg, append([]Option{WithLogger(discardLogger())}, opts...)...)
	if err := m.Init(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = m.Close(context.Background()) })
	return m.Store()
}

func benchTelemetryGet(b *testing.B, url string, sampler sdktrace.Sampler) {
	withSDK := benchManager(b, url, sdkOptions(b, sampler)...)
	withNoop := benchManager(b, url, noopOptions...)
	keys := benchKeyNames(benchKeys)
	ctx := context.Background()
	for _, s := range []Store{withSDK, withNoop} {
		for _, k := range keys {
			if _, err := s.Put(ctx, "bench", k, benchValue); err != nil {
				b.Fatal(err)
			}
		}
	}
	interleaved(b, func(k string) error {
		_, err := withSDK.Get(ctx, "bench", k)
		return err
	}, func(k string) error {
		_, err := withNoop.Get(ctx, "bench", k)
		return err
	}, keys)
}

func BenchmarkTelemetryGet(b *testing.B) {
	url := pgtest.URL(b)
	// A production-like sampler: one trace in ten, or the parent's choice.
	b.Run("postgresql/sampled-10pct", func(b *testing.B) {
		benchTelemetryGet(b, url, sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.1)))
	})
	b.Run("postgresql/sampled-all", func(b *testing.B) { benchTelemetryGet(b, url, sdktrace.AlwaysSample()) })
	b.Run("memory/sampled-10pct", func(b *testing.B) {
		benchTelemetryGet(b, "memory://", sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.1)))
	})
	b.Run("memory/sampled-all", func(b *testing.B) { benchTelemetryGet(b, "memory://", sdktrace.AlwaysSample()) })
}

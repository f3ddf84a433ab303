package dbmanager

import (
	"context"
	"strconv"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
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
	interleavedCPU(b, func(k string) error {
		_, err := withSDK.Get(ctx, "bench", k)
		return err
	}, func(k string) error {
		_, err := withNoop.Get(ctx, "bench", k)
		return err
	}, keys)
}

// interleavedCPU is interleaved in blocks of ops, measuring the process's
// CPU time (user + system, all threads) besides the wall time of each
// block. On a loaded machine the wall time of a round trip swings with the
// scheduling of the server's processes; the client's CPU time per call is
// what the telemetry adds to, so "extra-cpu-ns/op" (SDK minus no-op) is
// the steadier measure of its cost, and "extra-cpu/wall" that cost over
// the no-op side's wall time per call.
func interleavedCPU(b *testing.B, sdk, noop func(key string) error, keys []string) {
	const block = 16
	var wall, cpu [2]time.Duration
	run := func(side int, f func(string) error, i int) {
		c0, t0 := processCPU(), time.Now()
		for j := range block {
			if err := f(keys[(i*block+j)%len(keys)]); err != nil {
				b.Fatal(err)
			}
		}
		wall[side] += time.Since(t0)
		cpu[side] += processCPU() - c0
	}
	n := 0
	for i := 0; b.Loop(); i++ {
		if i%2 == 0 {
			run(0, sdk, i)
			run(1, noop, i)
		} else {
			run(1, noop, i)
			run(0, sdk, i)
		}
		n += block
	}
	per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(n) }
	b.ReportMetric(float64(wall[0])/float64(wall[1]), "store/raw")
	b.ReportMetric(per(wall[0]), "sdk-ns/call")
	b.ReportMetric(per(wall[1]), "noop-ns/call")
	b.ReportMetric(per(cpu[0]), "sdk-cpu-ns/call")
	b.ReportMetric(per(cpu[1]), "noop-cpu-ns/call")
	b.ReportMetric(per(cpu[0]-cpu[1]), "extra-cpu-ns/call")
	b.ReportMetric(float64(cpu[0]-cpu[1])/float64(wall[1]), "extra-cpu/wall")
}

// processCPU is the CPU time the process has used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkTelemetryGet(b *testing.B) {
	url := pgtest.URL(b)
	// A production-like sampler: one trace in ten, or the parent's choice.
	b.Run("postgresql/sampled-10pct", func(b *testing.B) {
		benchTelemetryGet(b, url, sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.1)))
	})
	b.Run("postgresql/sampled-all", func(b *testing.B) { benchTelemetryGet(b, url, sdktrace.AlwaysSample()) })
	// Metrics alone: every span is started and dropped by the sampler.
	b.Run("postgresql/sampled-none", func(b *testing.B) { benchTelemetryGet(b, url, sdktrace.NeverSample()) })
	b.Run("memory/sampled-10pct", func(b *testing.B) {
		benchTelemetryGet(b, "memory://", sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.1)))
	})
	b.Run("memory/sampled-all", func(b *testing.B) { benchTelemetryGet(b, "memory://", sdktrace.AlwaysSample()) })
}

// BenchmarkTelemetrySDKFloor is what the SDK itself costs for each thing
// a PostgreSQL Get reports, in a hot loop (warm caches: a floor, not the
// cost inside a call): a histogram Record with 7 attributes (like
// db.client.operation.duration), 3 (dbmanager.store.operation.duration)
// and 1 (the pool's wait and use times), a counter Add with 3
// (dbmanager.store.operations), and a span that a 10 % sampler drops.
func BenchmarkTelemetrySDKFloor(b *testing.B) {
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.1))),
		sdktrace.WithBatcher(discardSpans{}))
	b.Cleanup(func() {
		_ = mp.Shutdown(context.Background())
		_ = tp.Shutdown(context.Background())
	})
	m := mp.Meter("floor")
	h, err := m.Float64Histogram("h", metric.WithExplicitBucketBoundaries(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10))
	if err != nil {
		b.Fatal(err)
	}
	c, err := m.Int64Counter("c")
	if err != nil {
		b.Fatal(err)
	}
	setOf := func(n int) metric.MeasurementOption {
		kvs := make([]attribute.KeyValue, n)
		for i := range kvs {
			kvs[i] = attribute.String("k"+strconv.Itoa(i), "value")
		}
		return metric.WithAttributeSet(attribute.NewSet(kvs...))
	}
	ctx := context.Background()
	for _, n := range []int{7, 3, 1} {
		o := setOf(n)
		b.Run("histogram-"+strconv.Itoa(n)+"-attrs", func(b *testing.B) {
			for b.Loop() {
				h.Record(ctx, 0.002, o)
			}
		})
	}
	o := setOf(3)
	b.Run("counter-3-attrs", func(b *testing.B) {
		for b.Loop() {
			c.Add(ctx, 1, o)
		}
	})
	tr := tp.Tracer("floor")
	b.Run("span-sampled-10pct", func(b *testing.B) {
		for b.Loop() {
			_, s := tr.Start(ctx, "dbmanager.Get")
			s.End()
		}
	})
}

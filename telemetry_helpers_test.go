package dbmanager

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// otelHarness is an SDK MeterProvider read by a ManualReader and a
// TracerProvider that records every span: what a test asserts on.
type otelHarness struct {
	reader *sdkmetric.ManualReader
	mp     *sdkmetric.MeterProvider
	spans  *tracetest.SpanRecorder
	tp     *sdktrace.TracerProvider
}

func newOTelHarness(t *testing.T) *otelHarness {
	t.Helper()
	h := &otelHarness{reader: sdkmetric.NewManualReader(), spans: tracetest.NewSpanRecorder()}
	h.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(h.reader))
	h.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(h.spans), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	t.Cleanup(func() {
		_ = h.mp.Shutdown(context.Background())
		_ = h.tp.Shutdown(context.Background())
	})
	return h
}

// options sends a Manager's telemetry to the harness.
func (h *otelHarness) options(extra ...Option) []Option {
	return append([]Option{WithMeterProvider(h.mp), WithTracerProvider(h.tp)}, extra...)
}

// collect reads every metric now.
func (h *otelHarness) collect(t *testing.T) metricdata.ResourceMetrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := h.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatalf("collect metrics: %v", err)
	}
	return rm
}

// metricNamed finds a metric by name.
func metricNamed(rm metricdata.ResourceMetrics, name string) (metricdata.Metrics, bool) {
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == name {
				return m, true
			}
		}
	}
	return metricdata.Metrics{}, false
}

// point is one data point, reduced to what the tests compare.
type point struct {
	attrs attribute.Set
	value float64 // a sum's or gauge's value; a histogram's count
}

// pointsOf returns the data points of a metric, whatever its kind.
func pointsOf(m metricdata.Metrics) []point {
	var out []point
	switch d := m.Data.(type) {
	case metricdata.Sum[int64]:
		for _, p := range d.DataPoints {
			out = append(out, point{p.Attributes, float64(p.Value)})
		}
	case metricdata.Sum[float64]:
		for _, p := range d.DataPoints {
			out = append(out, point{p.Attributes, p.Value})
		}
	case metricdata.Gauge[int64]:
		for _, p := range d.DataPoints {
			out = append(out, point{p.Attributes, float64(p.Value)})
		}
	case metricdata.Gauge[float64]:
		for _, p := range d.DataPoints {
			out = append(out, point{p.Attributes, p.Value})
		}
	case metricdata.Histogram[float64]:
		for _, p := range d.DataPoints {
			out = append(out, point{p.Attributes, float64(p.Count)})
		}
	}
	return out
}

// sumWhere adds up the points of metric name whose attributes include
// every key=value in match ("key=value" strings).
func sumWhere(rm metricdata.ResourceMetrics, name string, match ...string) float64 {
	m, ok := metricNamed(rm, name)
	if !ok {
		return 0
	}
	total := 0.0
	for _, p := range pointsOf(m) {
		if hasAttrs(p.attrs, match...) {
			total += p.value
		}
	}
	return total
}

func hasAttrs(set attribute.Set, match ...string) bool {
	for _, kv := range match {
		k, v, _ := strings.Cut(kv, "=")
		got, ok := set.Value(attribute.Key(k))
		if !ok || got.Emit() != v {
			return false
		}
	}
	return true
}

// attrKeys lists the attribute keys of a set.
func attrKeys(set attribute.Set) []string {
	var keys []string
	for _, kv := range set.ToSlice() {
		keys = append(keys, string(kv.Key))
	}
	sort.Strings(keys)
	return keys
}

// everyText is every string in the collected metrics and recorded spans:
// names, attribute keys and values, span status messages and events.
func (h *otelHarness) everyText(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	rm := h.collect(t)
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			b.WriteString(m.Name + " " + m.Description + "\n")
			for _, p := range pointsOf(m) {
				for _, kv := range p.attrs.ToSlice() {
					fmt.Fprintf(&b, "%s=%s\n", kv.Key, kv.Value.Emit())
				}
			}
		}
	}
	for _, s := range h.spans.Ended() {
		b.WriteString(s.Name() + " " + s.Status().Description + "\n")
		for _, kv := range s.Attributes() {
			fmt.Fprintf(&b, "%s=%s\n", kv.Key, kv.Value.Emit())
		}
		for _, e := range s.Events() {
			b.WriteString(e.Name + "\n")
			for _, kv := range e.Attributes {
				fmt.Fprintf(&b, "%s=%s\n", kv.Key, kv.Value.Emit())
			}
		}
	}
	return b.String()
}

// spansNamed returns the ended spans called name.
func (h *otelHarness) spansNamed(name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range h.spans.Ended() {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

// spanAttr returns a span's attribute value as text ("" if absent).
func spanAttr(s sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.Emit()
		}
	}
	return ""
}

// eventuallyMetric polls the metrics until cond holds on them.
func (h *otelHarness) eventuallyMetric(t *testing.T, d time.Duration, what string, cond func(metricdata.ResourceMetrics) bool) {
	t.Helper()
	eventually(t, d, what, func() bool { return cond(h.collect(t)) })
}

// openAdmin connects to url on a connection of its own, closed at the end
// of the test.
func openAdmin(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

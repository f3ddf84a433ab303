package dbmanager_test

import (
	"context"
	"fmt"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/gatewaykit/dbmanager"
)

// ExampleWithMeterProvider sends the Manager's metrics and spans to the
// application's OpenTelemetry SDK. Without the options the Manager uses
// the global providers (otel.SetMeterProvider, otel.SetTracerProvider),
// also when they are installed after New.
func ExampleWithMeterProvider() {
	ctx := context.Background()
	reader := sdkmetric.NewManualReader() // in a service: a Prometheus or OTLP exporter
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.1))))
	defer mp.Shutdown(ctx)
	defer tp.Shutdown(ctx)

	cfg, _ := dbmanager.LoadConfig(func(k string) string {
		return map[string]string{"DATABASE_URL": "memory://"}[k]
	})
	m := dbmanager.New(cfg, dbmanager.WithMeterProvider(mp), dbmanager.WithTracerProvider(tp))
	defer m.Close(ctx)
	if err := m.Init(ctx); err != nil {
		fmt.Println(err)
		return
	}
	_, _ = m.Store().Put(ctx, "apis", "orders", []byte(`{"base_path":"/orders"}`))

	var rm metricdata.ResourceMetrics
	_ = reader.Collect(ctx, &rm)
	for _, sm := range rm.ScopeMetrics {
		for _, mt := range sm.Metrics {
			if mt.Name == "dbmanager.store.operations" {
				p := mt.Data.(metricdata.Sum[int64]).DataPoints[0]
				backend, _ := p.Attributes.Value("dbmanager.backend")
				fmt.Println(mt.Name, backend.AsString(), p.Value)
			}
		}
	}
	// Output: dbmanager.store.operations in-memory 1
}

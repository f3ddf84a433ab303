package main

import (
	"context"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// newMetrics sets up the OpenTelemetry SDK's MeterProvider with a
// Prometheus exporter, installs it as the global provider (so other
// instrumentation finds it too), and returns it with the /metrics handler
// that serves its metrics in the Prometheus text format. shutdown flushes
// and stops it.
func newMetrics() (mp *sdkmetric.MeterProvider, handler http.Handler, shutdown func(context.Context) error, err error) {
	reg := prometheus.NewRegistry()
	exporter, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, nil, nil, err
	}
	mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))
	otel.SetMeterProvider(mp)
	return mp, promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), mp.Shutdown, nil
}

// withMetrics serves GET /metrics from metrics and everything else from
// next.
func withMetrics(metrics, next http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics)
	mux.Handle("/", next)
	return mux
}

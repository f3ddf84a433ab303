package dbmanager

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"reflect"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/gatewaykit/dbmanager/internal/credentials"
	"github.com/gatewaykit/dbmanager/internal/telemetry"
)

// WithMeterProvider sends the Manager's metrics (pool, SQL round trips,
// Store calls, fallback and recovery, secrets) to mp. Without it the
// Manager uses the global MeterProvider (otel.GetMeterProvider), which
// also reaches an SDK the application installs after New.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(o *managerOptions) { o.meterProvider = mp }
}

// WithTracerProvider sends the Manager's spans (one per Store call, one
// per SQL round trip under a recording span, Init, recovery attempts and
// moves) to tp. Without it the Manager uses the global TracerProvider
// (otel.GetTracerProvider), which also reaches an SDK installed after New.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(o *managerOptions) { o.tracerProvider = tp }
}

// WithCollectionAttribute adds the collection name (attribute
// dbmanager.collection) to the Store's metrics and spans. It is off by
// default because every collection then becomes a time series of its own;
// turn it on when a service has a few fixed collections. Keys and values
// are never recorded.
func WithCollectionAttribute() Option {
	return func(o *managerOptions) { o.collectionAttr = true }
}

// telemetry is a Manager's instruments, tracer and settings. Its zero
// value is not usable; newTelemetry never fails (a meter that refuses an
// instrument gets a no-op one and the error goes to otel.Handle).
type instrumentation struct {
	tracer      trace.Tracer
	inst        *telemetry.Instruments
	meter       metric.Meter
	log         *slog.Logger
	collections bool          // WithCollectionAttribute
	slow        time.Duration // DB_SLOW_QUERY_MS (0: off)
	leak        time.Duration // DB_LEAK_DETECTION_MS (0: off)
	traceSQL    bool          // DB_TRACE_SQL
	store       *storeSets
	managerReg  metric.Registration
	// defaultTP is OpenTelemetry's global delegate when tracer came from
	// it while no SDK was installed (nil otherwise): see tracing.
	defaultTP trace.TracerProvider
	// defaultMP is the same for meter: see metering.
	defaultMP metric.MeterProvider
}

// tracing reports whether a span the Manager starts could be recorded.
// It is false only while tracer is the global delegate and nothing has
// replaced it (otel.SetTracerProvider): then every span is a no-op, and
// the Store skips starting one (and its allocations). Once an SDK is
// installed, the next call traces.
func (t *instrumentation) tracing() bool {
	return t.defaultTP == nil || otel.GetTracerProvider() != t.defaultTP
}

// metering reports whether a measurement the Manager's pool records
// could reach a reader. It is false only while meter is the global
// delegate and nothing has replaced it (otel.SetMeterProvider): then the
// pool's tracer skips its per-call work (timing acquires and statements,
// and their allocations) unless slow-query logging, leak detection or a
// span needs it. Once an SDK is installed, the next acquire and statement
// are measured (the instruments made on the delegate forward to it).
func (t *instrumentation) metering() bool {
	return t.defaultMP == nil || otel.GetMeterProvider() != t.defaultMP
}

// isGlobalDelegate reports whether p (a TracerProvider or MeterProvider)
// is OpenTelemetry's own global provider, which records nothing until an
// SDK is installed behind it.
func isGlobalDelegate(p any) bool {
	rt := reflect.TypeOf(p)
	if rt != nil && rt.Kind() == reflect.Pointer {
		rt = rt.Elem()
	}
	return rt != nil && rt.PkgPath() == "go.opentelemetry.io/otel/internal/global"
}

func newTelemetry(cfg Config, o managerOptions, log *slog.Logger) *instrumentation {
	mp, tp := o.meterProvider, o.tracerProvider
	var defaultMP metric.MeterProvider
	if mp == nil {
		mp = otel.GetMeterProvider() // the global delegate: follows an SDK installed later
		if isGlobalDelegate(mp) {
			defaultMP = mp
		}
	}
	var defaultTP trace.TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
		if isGlobalDelegate(tp) {
			defaultTP = tp
		}
	}
	t := &instrumentation{
		tracer:      tp.Tracer(telemetry.ScopeName),
		meter:       mp.Meter(telemetry.ScopeName),
		log:         log,
		collections: o.collectionAttr,
		slow:        cfg.SlowQueryThreshold,
		leak:        cfg.LeakDetectionThreshold,
		traceSQL:    cfg.TraceSQL,
		defaultTP:   defaultTP,
		defaultMP:   defaultMP,
	}
	inst, err := telemetry.NewInstruments(t.meter)
	if err != nil {
		otel.Handle(err)
	}
	t.inst = inst
	t.store = newStoreSets()
	return t
}

// observeManager registers the callback that reports the Store's calls
// (counted by storeSets) and the backend the Store serves from; close
// unregisters it.
func (t *instrumentation) observeManager(backend func() (string, bool)) {
	reg, err := t.meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		t.store.observeCalls(o, t.inst.StoreOperations)
		name, ok := backend()
		if !ok {
			return nil
		}
		for _, b := range []string{BackendPostgreSQL, BackendMemory} {
			v := int64(0)
			if b == name {
				v = 1
			}
			o.ObserveInt64(t.inst.StoreBackend, v, metric.WithAttributeSet(backendSet(b)))
		}
		return nil
	}, t.inst.StoreBackend, t.inst.StoreOperations)
	if err != nil {
		otel.Handle(err)
		return
	}
	t.managerReg = reg
}

// close unregisters the Manager's callbacks (pools unregister their own).
func (t *instrumentation) close() {
	if t.managerReg != nil {
		if err := t.managerReg.Unregister(); err != nil {
			otel.Handle(err)
		}
	}
}

// measureContext is the context a measurement is recorded with: ctx when
// the span it belongs to records, else the background. The SDK's default
// exemplar filter keeps a measurement only under a sampled span, and it
// finds that span by walking ctx on every Add and Record; a Store call's
// context is many values deep, so an unsampled call (most of them) skips
// that walk, losing no exemplar.
func measureContext(ctx context.Context, recording bool) context.Context {
	if recording {
		return ctx
	}
	return context.Background()
}

// measureOpts are the options of a measurement with one attribute set,
// built once: passing a prebuilt slice spares each Add and Record the
// allocation of its variadic options.
type measureOpts struct {
	add []metric.AddOption
	rec []metric.RecordOption
}

func optsFor(set attribute.Set) measureOpts {
	o := metric.WithAttributeSet(set)
	return measureOpts{add: []metric.AddOption{o}, rec: []metric.RecordOption{o}}
}

func backendSet(b string) attribute.Set {
	return attribute.NewSet(attribute.String(telemetry.AttrBackend, b))
}

// span starts an internal span for one of the Manager's own steps (Init,
// a recovery attempt, a move). Its context is marked as the library's own
// work, so the pool's leak detection leaves its connections alone.
func (t *instrumentation) span(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	ctx, span := t.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindInternal), trace.WithAttributes(attrs...))
	return withLibraryCall(ctx, nil), span
}

// endSpan ends span, marking it failed with err's redacted one-line text.
func endSpan(span trace.Span, err error) {
	if err != nil {
		span.SetAttributes(attribute.String("error.type", errorType(err)))
		span.SetStatus(codes.Error, errorText(err))
	}
	span.End()
}

// errorType is the error.type of a failure: a low-cardinality class,
// never a message.
func errorType(err error) string {
	var ce *ConnectionError
	var pe *PoolExhaustedError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &pe):
		return "pool_exhausted"
	case errors.As(err, &ce):
		return "connection_" + reasonSlug(ce.Reason)
	case errors.Is(err, ErrClosed):
		return "closed"
	case errors.Is(err, ErrInvalid):
		return "invalid"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	case errors.Is(err, ErrConfig):
		return "config"
	case errors.Is(err, ErrSecretNotFound):
		return "secret_not_found"
	case errors.Is(err, ErrMalformedSecret):
		return "secret_malformed"
	case credentials.IsAuthFailure(err):
		return "authentication"
	case errors.Is(err, ErrUnavailable):
		return "unavailable"
	}
	return "_OTHER"
}

// reasonSlug turns a Reason into an attribute value ("missing database"
// becomes "missing_database").
func reasonSlug(r Reason) string {
	b := []byte(r)
	for i, c := range b {
		if c == ' ' {
			b[i] = '_'
		}
	}
	if len(b) == 0 {
		return "unknown"
	}
	return string(b)
}

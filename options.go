package dbmanager

import (
	"context"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// Option configures a Manager (see New).
type Option func(*managerOptions)

type managerOptions struct {
	logger        *slog.Logger
	secrets       SecretSource
	onConflict    func(context.Context, Conflict)
	schema        string
	retryInitial  time.Duration
	retryMax      time.Duration
	healthTimeout time.Duration
	// OpenTelemetry (telemetry.go); nil providers mean the globals.
	meterProvider  metric.MeterProvider
	tracerProvider trace.TracerProvider
	collectionAttr bool
	// Diagnose only.
	stepTimeout time.Duration
	writeTest   bool
}

// Defaults of the Manager's background reconnect (see WithRecoveryBackoff)
// and of Health's ping.
const (
	DefaultRecoveryInitial = 250 * time.Millisecond
	DefaultRecoveryMax     = 5 * time.Second
	DefaultHealthTimeout   = 2 * time.Second
)

// applyOptions is the defaults with opts applied in order (nil ones
// skipped): what New, NewPool, NewPGStore and Diagnose start from.
func applyOptions(opts []Option) managerOptions {
	o := defaultManagerOptions()
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	return o
}

func defaultManagerOptions() managerOptions {
	return managerOptions{
		logger:        slog.Default(),
		schema:        "dbmanager",
		retryInitial:  DefaultRecoveryInitial,
		retryMax:      DefaultRecoveryMax,
		healthTimeout: DefaultHealthTimeout,
	}
}

// WithLogger sends the Manager's logs, and those of its pool (SQL_ECHO)
// and secret cache, to l instead of slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(o *managerOptions) {
		if l != nil {
			o.logger = l
		}
	}
}

// WithSecretSource makes the Manager (and NewPool, Diagnose) read the
// secret named by AWS_DB_SECRET / AWS_SECRET_NAME from src instead of AWS
// Secrets Manager (another secret store, or a stand-in in tests).
func WithSecretSource(src SecretSource) Option {
	return func(o *managerOptions) { o.secrets = src }
}

// OnConflict registers f to receive every Conflict found when the Manager
// moves the writes made in memory during an outage back to PostgreSQL. f
// runs after the move, once per conflicting key, on the Manager's
// background goroutine; it should return quickly.
func OnConflict(f func(context.Context, Conflict)) Option {
	return func(o *managerOptions) { o.onConflict = f }
}

// WithStoreSchema sets the PostgreSQL schema of the Store (default
// "dbmanager"), for the Manager, NewPGStore and Diagnose. The name is used
// as a quoted identifier (any characters; at most 63 bytes, PostgreSQL's
// limit).
func WithStoreSchema(name string) Option {
	return func(o *managerOptions) { o.schema = name }
}

// WithRecoveryBackoff sets the waits between attempts to reach a primary
// that was unreachable at start-up: exponential from initial up to max,
// with jitter (defaults DefaultRecoveryInitial and DefaultRecoveryMax).
func WithRecoveryBackoff(initial, max time.Duration) Option {
	return func(o *managerOptions) {
		if initial > 0 {
			o.retryInitial = initial
		}
		if max >= o.retryInitial {
			o.retryMax = max
		}
	}
}

// WithHealthTimeout bounds the ping Health makes (default
// DefaultHealthTimeout, or the caller's deadline if sooner).
func WithHealthTimeout(d time.Duration) Option {
	return func(o *managerOptions) {
		if d > 0 {
			o.healthTimeout = d
		}
	}
}

// WithStepTimeout bounds each step of Diagnose and DiagnoseEnv (default
// DefaultStepTimeout, 10 s); zero or less keeps the default. The Manager
// and NewPool ignore it.
func WithStepTimeout(d time.Duration) Option {
	return func(o *managerOptions) { o.stepTimeout = d }
}

// WithWriteTest makes Diagnose's store step also write a scratch key, read
// it back and delete it (creating the Store's schema first if it is
// missing, as the Manager would). Without it, a diagnosis writes nothing.
// The Manager and NewPool ignore it.
func WithWriteTest() Option {
	return func(o *managerOptions) { o.writeTest = true }
}

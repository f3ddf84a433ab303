package dbmanager

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/gatewaykit/dbmanager/internal/telemetry"
)

// The Manager's own steps in telemetry: the backend gauge, Init, the
// fallback, recovery attempts and moves, secret fetches.

// servingBackend names the backend the Store serves from, for the
// dbmanager.store.backend gauge; false before Init and after Close.
func (m *Manager) servingBackend() (string, bool) {
	m.mu.Lock()
	md := m.mode
	m.mu.Unlock()
	switch md {
	case modeUninitialized, modeClosed:
		return "", false
	case modePrimary:
		return BackendPostgreSQL, true
	}
	return BackendMemory, true
}

// endInit ends Init's span, naming the backend it chose.
func (t *instrumentation) endInit(span trace.Span, err error, backend string) {
	if err == nil {
		span.SetAttributes(attribute.String(telemetry.AttrBackend, backend))
	}
	endSpan(span, err)
}

// fellBack counts a fall back to memory because the primary could not be
// reached (err says why).
func (t *instrumentation) fellBack(ctx context.Context, err error) {
	t.inst.Fallbacks.Add(ctx, 1, metric.WithAttributes(attribute.String("error.type", errorType(err))))
}

// attempt is one recovery attempt in progress: its span (a root span: the
// loop runs in the background) and its start.
type attempt struct {
	t     *instrumentation
	span  trace.Span
	start time.Time
}

// startAttempt starts the span of recovery attempt n.
func (t *instrumentation) startAttempt(ctx context.Context, n int) (context.Context, *attempt) {
	ctx, span := t.span(ctx, "dbmanager.recovery.attempt",
		attribute.Int(telemetry.AttrAttempt, n))
	return ctx, &attempt{t: t, span: span, start: time.Now()}
}

var (
	okOutcome     = attribute.String(telemetry.AttrOutcome, outcomeOK)
	failedOutcome = attribute.String(telemetry.AttrOutcome, "failed")
)

// failed ends an attempt that could not reach the primary or move to it.
func (a *attempt) failed(ctx context.Context, err error) {
	a.t.inst.RecoveryAttempts.Add(ctx, 1, metric.WithAttributes(failedOutcome, attribute.String("error.type", errorType(err))))
	endSpan(a.span, err)
}

// moveSpan starts the span of a move within the attempt.
func (a *attempt) moveSpan(ctx context.Context) (context.Context, trace.Span, time.Time) {
	ctx, span := a.t.span(ctx, "dbmanager.recovery.move")
	return ctx, span, time.Now()
}

// moved ends a move and its attempt: on success it counts the recovery,
// the records moved and the conflicts; either way its duration.
func (a *attempt) moved(ctx context.Context, span trace.Span, start time.Time, err error, records, conflicts int) {
	outcome := okOutcome
	if err != nil {
		outcome = failedOutcome
	}
	a.t.inst.MoveDuration.Record(ctx, time.Since(start).Seconds(), metric.WithAttributes(outcome))
	if err == nil {
		span.SetAttributes(attribute.Int("dbmanager.recovery.records_moved", records),
			attribute.Int("dbmanager.recovery.conflicts", conflicts))
		a.t.inst.Recoveries.Add(ctx, 1)
		a.t.inst.RecordsMoved.Add(ctx, int64(records))
		a.t.inst.Conflicts.Add(ctx, int64(conflicts))
		a.t.inst.RecoveryAttempts.Add(ctx, 1, metric.WithAttributes(okOutcome))
	}
	endSpan(span, err)
	if err != nil {
		a.failed(ctx, err)
	} else {
		endSpan(a.span, nil)
	}
}

// Secrets (the secret cache reports to a credentials.Observer).

// SecretFetched counts a fetch of the secret by outcome.
func (t *instrumentation) SecretFetched(ctx context.Context, err error) {
	if err == nil {
		t.inst.SecretFetches.Add(ctx, 1, metric.WithAttributes(okOutcome))
		return
	}
	t.inst.SecretFetches.Add(ctx, 1, metric.WithAttributes(failedOutcome, attribute.String("error.type", errorType(err))))
}

// RotationRetried counts a retry of a login that failed authentication.
func (t *instrumentation) RotationRetried(ctx context.Context) {
	t.inst.RotationRetries.Add(ctx, 1)
}

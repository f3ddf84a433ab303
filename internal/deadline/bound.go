package deadline

import (
	"context"
	"errors"
	"net"
	"os"
	"time"
)

// A call's default bound, without a timer.
//
// The router gives a call on the primary whose context has no deadline one
// of DB_CONNECT_TIMEOUT + DB_POOL_TIMEOUT, so that no call hangs on a
// network that silently drops packets. The bound is a deadline the call's
// context reports (Deadline) but no timer enforces, and each wait on the
// way ends by a mechanism it has anyway:
//
//   - waiting for a free connection: the pool timeout, which is shorter
//     (DB_POOL_TIMEOUT; the root's pool.go, and Waits);
//   - opening a connection: DB_CONNECT_TIMEOUT (the dialer also reads the
//     deadline);
//   - the statement on the wire: the connection's own read and write
//     deadline, set for the length of the statement (pgBackend.attempt);
//   - retries and their backoff: each first checks that the deadline
//     leaves time for it (nextWait, RetryAuth);
//   - anything else that would wait on the context's Done channel (the
//     rotation retry's secret fetch) runs under Enforce, a real timer.
//
// Code that asks whether the call is over uses Err, which also reports
// context.DeadlineExceeded once the bound has passed. The context's own
// Err and Done stay the caller's: a caller's cancellation still ends the
// call at once.

// boundCtx is a caller's context with the router's bound as its deadline.
type boundCtx struct {
	context.Context
	deadline time.Time
}

type boundKey struct{}

// WithBound returns ctx reporting deadline d, which no timer enforces
// (ctx has no deadline of its own).
func WithBound(ctx context.Context, d time.Time) context.Context {
	return &boundCtx{Context: ctx, deadline: d}
}

// Deadline is the bound.
func (c *boundCtx) Deadline() (time.Time, bool) { return c.deadline, true }

// Value finds the bound itself under boundKey (Unenforced), and the
// caller's values otherwise.
func (c *boundCtx) Value(key any) any {
	if _, ok := key.(boundKey); ok {
		return c
	}
	return c.Context.Value(key)
}

func (c *boundCtx) String() string { return "dbmanager call bound" }

// Unenforced returns the bound when ctx carries one from WithBound: a
// deadline no timer enforces, which a wait must enforce itself.
func Unenforced(ctx context.Context) (time.Time, bool) {
	if b, ok := ctx.Value(boundKey{}).(*boundCtx); ok {
		return b.deadline, true
	}
	return time.Time{}, false
}

// Enforce returns ctx with a timer behind its bound, for a wait that only
// the context can end. Without a bound it returns ctx as it is.
func Enforce(ctx context.Context) (context.Context, context.CancelFunc) {
	if dl, ok := Unenforced(ctx); ok {
		return context.WithDeadline(ctx, dl)
	}
	return ctx, func() {}
}

// Err is ctx.Err(), or context.DeadlineExceeded once ctx's deadline has
// passed although no timer said so yet (a bound from WithBound, or a
// deadline whose timer is about to fire). It reads the clock only when ctx
// has a deadline and is not done.
func Err(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		return context.DeadlineExceeded
	}
	return nil
}

// IsTimeout reports whether err says a deadline ran out: a context's, or
// a connection's read or write deadline.
func IsTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

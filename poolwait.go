package dbmanager

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// The pool timeout without a timer per acquire.
//
// Every acquire on a pool from newPoolConfig is bounded by DB_POOL_TIMEOUT.
// A context.WithTimeout per acquire costs a timer and its allocations
// although almost every acquire finds a free connection at once and never
// waits. When nobody can cancel the caller's context (its Done channel is
// nil: context.Background, or values and the router's bound on it), the
// acquire waits instead under a waitCtx whose Done channel it shares with
// every acquire that started within the same slice of time: one timer per
// slice closes it (poolWaits). A slice is a 32nd of the timeout, so a wait
// that runs out ends between the pool timeout and 1/32 more (30 s to
// 30.9 s by default), and a pool under steady load keeps at most 33 such
// timers. A caller's context that can be cancelled keeps a timer of its
// own (context.WithTimeout), and so does one whose deadline comes before
// the slice's.

// poolWaits hands out the shared deadlines of one pool's acquires.
type poolWaits struct {
	timeout time.Duration
	slice   time.Duration
	cur     atomic.Pointer[waitSlice]
	mu      sync.Mutex // serialises making a new slice
}

// waitSlice is the deadline shared by the acquires that start before
// joinBy.
type waitSlice struct {
	joinBy   time.Duration // monotonic (monoNow): the last start that may join
	deadline time.Time
	done     chan struct{}
}

func newPoolWaits(timeout time.Duration) *poolWaits {
	return &poolWaits{timeout: timeout, slice: max(timeout/32, time.Millisecond)}
}

// current returns the slice an acquire starting now joins: its deadline is
// at least the pool timeout away.
func (w *poolWaits) current() *waitSlice {
	now := monoNow()
	if s := w.cur.Load(); s != nil && now <= s.joinBy {
		return s
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if s := w.cur.Load(); s != nil && now <= s.joinBy {
		return s
	}
	wait := w.timeout + w.slice // an acquire joining at joinBy still waits the timeout
	s := &waitSlice{joinBy: now + w.slice, deadline: time.Now().Add(wait), done: make(chan struct{})}
	time.AfterFunc(wait, func() { close(s.done) })
	w.cur.Store(s)
	return s
}

// monoBase anchors monoNow.
var monoBase = time.Now()

// monoNow is the monotonic time since monoBase: one clock read, half the
// cost of time.Now.
func monoNow() time.Duration { return time.Since(monoBase) }

// waitCtx is an acquire's context when the caller's cannot be cancelled:
// the caller's values, and the deadline of its slice. It also carries what
// the pool's tracer records about the acquire.
type waitCtx struct {
	context.Context // the caller's
	slice           *waitSlice
	acq             acquireState
}

// Deadline is the slice's, or the caller's when that comes first (the
// router's bound never does: it is longer than the pool timeout).
func (c *waitCtx) Deadline() (time.Time, bool) {
	if d, ok := c.Context.Deadline(); ok && d.Before(c.slice.deadline) {
		return d, true
	}
	return c.slice.deadline, true
}

// Value finds the acquire's state under acquireKey (poolHooks), and the
// caller's values otherwise.
func (c *waitCtx) Value(key any) any {
	if _, ok := key.(acquireKey); ok {
		return &c.acq
	}
	return c.Context.Value(key)
}

// Done closes when the slice's deadline passes.
func (c *waitCtx) Done() <-chan struct{} { return c.slice.done }

// Err is context.DeadlineExceeded once the slice's deadline has passed
// (the caller's context has no Done channel: it never ends).
func (c *waitCtx) Err() error {
	select {
	case <-c.slice.done:
		return context.DeadlineExceeded
	default:
		return nil
	}
}

func (c *waitCtx) String() string { return "dbmanager pool wait" }

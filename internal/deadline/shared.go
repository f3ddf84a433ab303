package deadline

import (
	"sync"
	"sync/atomic"
	"time"
)

// The pool timeout without a timer per acquire.
//
// Every acquire on a pool from the root's newPoolConfig is bounded by
// DB_POOL_TIMEOUT. Almost every acquire finds a free connection at once
// and never waits, so a timer each would be waste. When nobody can cancel
// the caller's context (its Done channel is nil: context.Background, or
// values and the router's bound on it), the acquire waits instead under a
// context whose Done channel it shares with every acquire that started
// within the same slice of time: one timer per slice closes it (Waits). A
// slice is a 32nd of the timeout, so a wait that runs out ends between the
// pool timeout and 1/32 more (30 s to 30.9 s by default), and a pool under
// steady load keeps at most 33 such timers. A caller's context that can be
// cancelled keeps a timer of its own (context.WithTimeout), and so does
// one whose deadline comes before the slice's.

// Waits hands out the shared deadlines of one pool's acquires.
type Waits struct {
	timeout time.Duration
	slice   time.Duration
	cur     atomic.Pointer[Slice]
	mu      sync.Mutex // serialises making a new slice
}

// Slice is the deadline shared by the acquires that start before joinBy.
type Slice struct {
	joinBy   time.Duration // monotonic (monoNow): the last start that may join
	deadline time.Time
	done     chan struct{}
}

// NewWaits returns the shared deadlines of a pool whose acquires wait at
// most timeout.
func NewWaits(timeout time.Duration) *Waits {
	return &Waits{timeout: timeout, slice: max(timeout/32, time.Millisecond)}
}

// Current returns the slice an acquire starting now joins: its deadline is
// at least the timeout away.
func (w *Waits) Current() *Slice {
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
	s := &Slice{joinBy: now + w.slice, deadline: time.Now().Add(wait), done: make(chan struct{})}
	time.AfterFunc(wait, func() { close(s.done) })
	w.cur.Store(s)
	return s
}

// Deadline is when the slice's Done channel closes.
func (s *Slice) Deadline() time.Time { return s.deadline }

// Done closes when the slice's deadline passes.
func (s *Slice) Done() <-chan struct{} { return s.done }

// Passed reports whether the slice's deadline has passed (Done is closed).
func (s *Slice) Passed() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// monoBase anchors monoNow.
var monoBase = time.Now()

// monoNow is the monotonic time since monoBase: one clock read, half the
// cost of time.Now.
func monoNow() time.Duration { return time.Since(monoBase) }

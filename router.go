package dbmanager

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/gatewaykit/dbmanager/internal/deadline"
	"github.com/gatewaykit/dbmanager/internal/outage"
	"github.com/gatewaykit/dbmanager/internal/writegate"
)

// routingStore is the stable Store handle that Manager.Store returns. It
// sends each call to the backend that is current (the in-memory fallback or
// PostgreSQL), so a service can keep the handle it got at start-up while
// the Manager falls back and recovers underneath. Writes pass a write gate (internal/writegate)
// so that a move between backends can hold them briefly and lose none.
type routingStore struct {
	current atomic.Pointer[route]
	gate    writegate.Gate
	// observe is told the outcome of every call on the primary (the
	// outages epoch when it started, whether it wrote), so the Manager can
	// notice an outage and its end. It may be nil.
	observe func(epoch uint64, write bool, err error)
	// outages gives the epoch a call on the primary starts in: a call
	// that started in an earlier epoch says nothing about the outage
	// state of now (internal/outage). It may be nil (epoch 0).
	outages *outage.Tracker
	// callTimeout bounds calls on the primary whose context has no
	// deadline, so that no call hangs on a network that silently drops
	// packets (0: no bound).
	callTimeout time.Duration
	// instrument wraps each backend switched to (telemetry); may be nil.
	instrument func(s Store, primary bool) Store
}

// route is one backend the router can send calls to.
type route struct {
	store   Store
	primary bool // PostgreSQL, as opposed to the in-memory store
}

func (r *routingStore) target() *route { return r.current.Load() }

// switchTo makes s the backend for calls that start from now on.
func (r *routingStore) switchTo(s Store, primary bool) {
	if r.instrument != nil {
		s = r.instrument(s, primary)
	}
	r.current.Store(&route{store: s, primary: primary})
}

// call is one call on the current backend: its context bounded when it
// has no deadline (a deadline without a timer, see internal/deadline), and its
// outcome told to observe.
type call struct {
	r       *routingStore
	rt      *route
	caller  context.Context // the caller's own context
	ctx     context.Context // caller, bounded
	bounded bool            // ctx carries the router's bound
	epoch   uint64
	write   bool
}

func (r *routingStore) begin(ctx context.Context, write bool) call {
	rt := r.target()
	c := call{r: r, rt: rt, caller: ctx, ctx: ctx, write: write}
	if r.outages != nil {
		c.epoch = r.outages.Epoch()
	}
	if rt.primary && r.callTimeout > 0 {
		if _, ok := ctx.Deadline(); !ok {
			c.ctx, c.bounded = deadline.WithBound(ctx, time.Now().Add(r.callTimeout)), true
		}
	}
	return c
}

// end tells observe the call's outcome. A failure that comes from the
// caller's own context (its deadline, a cancel) says nothing about the
// primary and is not told. When the default bound ran out, the error says
// so and wraps ErrUnavailable: the primary did not answer within
// DB_CONNECT_TIMEOUT + DB_POOL_TIMEOUT.
func (c call) end(err error) error {
	if err != nil && c.bounded && !errors.Is(err, ErrUnavailable) && c.caller.Err() == nil &&
		deadline.IsTimeout(err) && deadline.Err(c.ctx) != nil {
		err = withCause(err, func(cause error) error {
			return fmt.Errorf("%w: no answer within %s (DB_CONNECT_TIMEOUT + DB_POOL_TIMEOUT): %w", ErrUnavailable, c.r.callTimeout, cause)
		})
	}
	if c.rt.primary && c.r.observe != nil && (err == nil || c.caller.Err() == nil) {
		c.r.observe(c.epoch, c.write, err)
	}
	return err
}

// withCause rewrites the cause inside an *OpError (keeping the Store's
// error type), or err itself.
func withCause(err error, f func(error) error) error {
	var oe *OpError
	if errors.As(err, &oe) {
		oe.Err = f(oe.Err)
		return err
	}
	return f(err)
}

// Get reads from the current backend.
func (r *routingStore) Get(ctx context.Context, collection, key string) (Record, error) {
	c := r.begin(ctx, false)
	rec, err := c.rt.store.Get(c.ctx, collection, key)
	return rec, c.end(err)
}

// Put writes to the current backend; during a move between backends it
// waits until the move is done.
func (r *routingStore) Put(ctx context.Context, collection, key string, value []byte, opts ...WriteOption) (Record, error) {
	if err := r.gate.Enter(ctx); err != nil {
		return Record{}, opError("put", collection, key, err)
	}
	defer r.gate.Leave()
	c := r.begin(ctx, true)
	rec, err := c.rt.store.Put(c.ctx, collection, key, value, opts...)
	return rec, c.end(err)
}

// Delete deletes from the current backend; during a move between backends
// it waits until the move is done.
func (r *routingStore) Delete(ctx context.Context, collection, key string, opts ...WriteOption) error {
	if err := r.gate.Enter(ctx); err != nil {
		return opError("delete", collection, key, err)
	}
	defer r.gate.Leave()
	c := r.begin(ctx, true)
	return c.end(c.rt.store.Delete(c.ctx, collection, key, opts...))
}

// List pages through the current backend.
func (r *routingStore) List(ctx context.Context, collection string, opts ListOptions) (Page, error) {
	c := r.begin(ctx, false)
	p, err := c.rt.store.List(c.ctx, collection, opts)
	return p, c.end(err)
}

// Ping pings the current backend.
func (r *routingStore) Ping(ctx context.Context) error {
	c := r.begin(ctx, false)
	return c.end(c.rt.store.Ping(c.ctx))
}

// Backend names the current backend.
func (r *routingStore) Backend() string { return r.target().store.Backend() }

// refusingStore is the backend while there is none to route to: before
// Init (err wraps ErrUnavailable) and after Close (ErrClosed). Every call
// fails with err, named by operation, collection and key like any Store
// error.
type refusingStore struct{ err error }

// closedStore answers every call after the Manager closed.
var closedStore = refusingStore{err: ErrClosed}

func (s refusingStore) Get(_ context.Context, c, k string) (Record, error) {
	return Record{}, opError("get", c, k, s.err)
}
func (s refusingStore) Put(_ context.Context, c, k string, _ []byte, _ ...WriteOption) (Record, error) {
	return Record{}, opError("put", c, k, s.err)
}
func (s refusingStore) Delete(_ context.Context, c, k string, _ ...WriteOption) error {
	return opError("delete", c, k, s.err)
}
func (s refusingStore) List(_ context.Context, c string, _ ListOptions) (Page, error) {
	return Page{}, opError("list", c, "", s.err)
}
func (s refusingStore) Ping(context.Context) error { return opError("ping", "", "", s.err) }
func (s refusingStore) Backend() string            { return BackendMemory }

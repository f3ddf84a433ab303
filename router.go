package dbmanager

import (
	"context"
	"sync/atomic"
	"time"
)

// routingStore is the stable Store handle that Manager.Store returns. It
// sends each call to the backend that is current (the in-memory fallback or
// PostgreSQL), so a service can keep the handle it got at start-up while
// the Manager falls back and recovers underneath. Writes pass a writeGate
// so that a move between backends can hold them briefly and lose none.
type routingStore struct {
	current atomic.Pointer[route]
	gate    writeGate
	// observe is told the outcome of every call on the primary, so the
	// Manager can notice an outage and its end. It may be nil.
	observe func(err error)
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

// bound gives a call on the primary the default deadline if ctx has none.
func (r *routingStore) bound(ctx context.Context, rt *route) (context.Context, context.CancelFunc) {
	if !rt.primary || r.callTimeout <= 0 {
		return ctx, func() {}
	}
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, r.callTimeout)
}

func (r *routingStore) note(rt *route, err error) {
	if rt.primary && r.observe != nil {
		r.observe(err)
	}
}

// Get reads from the current backend.
func (r *routingStore) Get(ctx context.Context, collection, key string) (Record, error) {
	rt := r.target()
	ctx, cancel := r.bound(ctx, rt)
	defer cancel()
	rec, err := rt.store.Get(ctx, collection, key)
	r.note(rt, err)
	return rec, err
}

// Put writes to the current backend; during a move between backends it
// waits until the move is done.
func (r *routingStore) Put(ctx context.Context, collection, key string, value []byte, opts ...WriteOption) (Record, error) {
	if err := r.gate.enter(ctx); err != nil {
		return Record{}, opError("put", collection, key, err)
	}
	defer r.gate.leave()
	rt := r.target()
	ctx, cancel := r.bound(ctx, rt)
	defer cancel()
	rec, err := rt.store.Put(ctx, collection, key, value, opts...)
	r.note(rt, err)
	return rec, err
}

// Delete deletes from the current backend; during a move between backends
// it waits until the move is done.
func (r *routingStore) Delete(ctx context.Context, collection, key string, opts ...WriteOption) error {
	if err := r.gate.enter(ctx); err != nil {
		return opError("delete", collection, key, err)
	}
	defer r.gate.leave()
	rt := r.target()
	ctx, cancel := r.bound(ctx, rt)
	defer cancel()
	err := rt.store.Delete(ctx, collection, key, opts...)
	r.note(rt, err)
	return err
}

// List pages through the current backend.
func (r *routingStore) List(ctx context.Context, collection string, opts ListOptions) (Page, error) {
	rt := r.target()
	ctx, cancel := r.bound(ctx, rt)
	defer cancel()
	p, err := rt.store.List(ctx, collection, opts)
	r.note(rt, err)
	return p, err
}

// Ping pings the current backend.
func (r *routingStore) Ping(ctx context.Context) error {
	rt := r.target()
	ctx, cancel := r.bound(ctx, rt)
	defer cancel()
	err := rt.store.Ping(ctx)
	r.note(rt, err)
	return err
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

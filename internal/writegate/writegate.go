// Package writegate holds writes back for the instant a store switches
// backends: any number of writes pass at once until the gate closes;
// closing waits for the writes in flight, and writes that arrive while it
// is closed wait, or give up when their context ends, until it opens.
package writegate

import (
	"context"
	"sync"
)

// Gate lets any number of writes run at once and lets its owner stop them
// briefly (while it moves a store from one backend to another): Close
// waits for the writes in flight, and writes that arrive meanwhile wait
// (or give up when their context ends) until Open. Unlike a sync.RWMutex,
// waiting respects the caller's context. The zero Gate is open.
type Gate struct {
	mu      sync.Mutex
	active  int
	closed  chan struct{} // non-nil while closed; closed by open
	drained chan struct{} // closed when active falls to zero during close
}

// Enter waits until the gate is open and counts the caller as a writer.
// Every successful enter must be followed by one Leave.
func (g *Gate) Enter(ctx context.Context) error {
	for {
		g.mu.Lock()
		wait := g.closed
		if wait == nil {
			g.active++
			g.mu.Unlock()
			return nil
		}
		g.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Leave ends a write started with Enter.
func (g *Gate) Leave() {
	g.mu.Lock()
	g.active--
	if g.active == 0 && g.drained != nil {
		close(g.drained)
		g.drained = nil
	}
	g.mu.Unlock()
}

// Close stops new writers and waits for those in flight. If ctx ends first
// the gate is opened again and ctx's error returned. Only one close may be
// pending at a time.
func (g *Gate) Close(ctx context.Context) error {
	g.mu.Lock()
	g.closed = make(chan struct{})
	var drained chan struct{}
	if g.active > 0 {
		drained = make(chan struct{})
		g.drained = drained
	}
	g.mu.Unlock()
	if drained == nil {
		return nil
	}
	select {
	case <-drained:
		return nil
	case <-ctx.Done():
		g.Open()
		return ctx.Err()
	}
}

// Open lets writers in again.
func (g *Gate) Open() {
	g.mu.Lock()
	if g.closed != nil {
		close(g.closed)
		g.closed = nil
	}
	g.drained = nil
	g.mu.Unlock()
}

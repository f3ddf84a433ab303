package dbmanager

import (
	"context"
	"sync"
)

// writeGate lets any number of writes run at once and lets the Manager
// stop them briefly while it moves the Store from one backend to another:
// close waits for the writes in flight, and writes that arrive meanwhile
// wait (or give up when their context ends) until open. Unlike a
// sync.RWMutex, waiting respects the caller's context.
type writeGate struct {
	mu      sync.Mutex
	active  int
	closed  chan struct{} // non-nil while closed; closed by open
	drained chan struct{} // closed when active falls to zero during close
}

// enter waits until the gate is open and counts the caller as a writer.
// Every successful enter must be followed by one leave.
func (g *writeGate) enter(ctx context.Context) error {
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

// leave ends a write started with enter.
func (g *writeGate) leave() {
	g.mu.Lock()
	g.active--
	if g.active == 0 && g.drained != nil {
		close(g.drained)
		g.drained = nil
	}
	g.mu.Unlock()
}

// close stops new writers and waits for those in flight. If ctx ends first
// the gate is opened again and ctx's error returned. Only one close may be
// pending at a time.
func (g *writeGate) close(ctx context.Context) error {
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
		g.open()
		return ctx.Err()
	}
}

// open lets writers in again.
func (g *writeGate) open() {
	g.mu.Lock()
	if g.closed != nil {
		close(g.closed)
		g.closed = nil
	}
	g.drained = nil
	g.mu.Unlock()
}

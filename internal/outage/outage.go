// Package outage decides when the running primary's outage begins and
// ends, so that one outage is one "connection lost" and one "restored"
// log line, however many calls fail during it and however they interleave
// with the calls that still succeed.
//
// Every call on the primary reads the Tracker's epoch when it starts and
// reports its outcome with it when it ends. The epoch moves when an
// outage begins and when it ends: a call that started before the last
// outage ended belongs to it, and its late failure does not open a new
// one; a call that started before the outage began cannot end it (seen:
// a write acknowledged by a killed primary's dying backend 1 ms after the
// first failure, then more failures).
package outage

import (
	"sync"
	"sync/atomic"
	"time"
)

// Tracker is the outage state of one Manager's primary. The zero Tracker
// is up, at epoch 0. Its methods are safe for concurrent use.
type Tracker struct {
	mu      sync.Mutex
	down    atomic.Bool
	epoch   atomic.Uint64
	suspect atomic.Int64 // unix nanos of the last failure (SuspectSince)
	// readOnly is set when the outage includes writes refused by a
	// read-only node: reads may still succeed there, so only a successful
	// write (or health check) ends it.
	readOnly bool
}

// Epoch is the epoch a call starting now reports its outcome with.
func (t *Tracker) Epoch() uint64 { return t.epoch.Load() }

// Down reports whether the primary is in an outage.
func (t *Tracker) Down() bool { return t.down.Load() }

// SuspectSince is when the last failure for want of a connection was
// reported, in Unix nanoseconds (0 if none): connections idle since then
// may be dead. One atomic load, for the pool's check on every acquire.
func (t *Tracker) SuspectSince() int64 { return t.suspect.Load() }

// Succeeded reports a call that started at epoch and succeeded; write is
// true for a write or the health check (which proves writes work). It
// returns true when that ends the outage: the caller logs "restored".
func (t *Tracker) Succeeded(epoch uint64, write bool) (ended bool) {
	if !t.down.Load() {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.down.Load() || (!write && t.readOnly) || epoch != t.epoch.Load() {
		return false
	}
	t.down.Store(false)
	t.epoch.Add(1)
	return true
}

// Failed reports a call that started at epoch and failed for want of a
// working connection (not a busy pool); readOnly is true when a read-only
// node refused it. It returns true when that begins an outage: the caller
// logs "lost".
func (t *Tracker) Failed(epoch uint64, readOnly bool) (began bool) {
	t.suspect.Store(time.Now().UnixNano())
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.down.Load() {
		t.readOnly = t.readOnly || readOnly
		return false
	}
	if epoch != t.epoch.Load() {
		return false // a straggler of the outage that just ended
	}
	t.down.Store(true)
	t.epoch.Add(1) // calls started before now cannot end this outage
	t.readOnly = readOnly
	return true
}

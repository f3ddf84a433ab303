package dbmanager

import (
	"errors"
	"log/slog"
	"sync"
	"time"
)

// outage is the state behind the "connection lost" / "restored" log pair
// of the running primary: one outage is one line of each, however many
// calls fail during it and however they interleave with the calls that
// still succeed.
type outage struct {
	mu sync.Mutex
	// readOnly is set when the outage includes writes refused by a
	// read-only node: reads may still succeed there, so only a successful
	// write (or health check) ends it.
	readOnly bool
}

// withoutCall returns the cause of a Store error without the call's
// description (operation, collection, key): a log line about the
// connection names no key.
func withoutCall(err error) error {
	var oe *OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err
	}
	return err
}

// observePrimary hears the outcome of every call on the running primary:
// epoch is the router's outage epoch when the call started (the epoch
// moves when an outage begins and when it ends: a call that started
// before the last outage ended belongs to it, and its late failure does
// not open a new one; a call that started before the outage began cannot
// end it); write is true for a write or the
// health check (which proves writes work). A failure for want of a
// working connection (ErrUnavailable, not a busy pool) marks the primary
// down, logged once, and makes the pool check its idle connections; the
// next success marks it up again, logged once.
func (m *Manager) observePrimary(epoch uint64, write bool, err error) {
	if err == nil {
		if !m.primaryDown.Load() {
			return
		}
		m.outage.mu.Lock()
		defer m.outage.mu.Unlock()
		if !m.primaryDown.Load() || (!write && m.outage.readOnly) {
			return
		}
		if epoch != m.router.epoch.Load() {
			// The call started before the outage was noticed: a statement
			// a dying server still finished says nothing about recovery
			// (seen: a write acknowledged 1 ms after the first failure of
			// a killed primary, then more failures).
			return
		}
		m.primaryDown.Store(false)
		m.router.epoch.Add(1)
		m.log.Info("Primary database connection restored")
		return
	}
	var exhausted *PoolExhaustedError
	if !errors.Is(err, ErrUnavailable) || errors.As(err, &exhausted) {
		return // a busy pool is not a lost connection
	}
	m.suspectSince.Store(time.Now().UnixNano())
	m.outage.mu.Lock()
	defer m.outage.mu.Unlock()
	if m.primaryDown.Load() {
		m.outage.readOnly = m.outage.readOnly || isReadOnlyError(err)
		return
	}
	if epoch != m.router.epoch.Load() {
		return // a straggler of the outage that just ended
	}
	m.primaryDown.Store(true)
	m.router.epoch.Add(1) // calls started before now cannot end this outage
	m.outage.readOnly = isReadOnlyError(err)
	m.log.Error("Primary database connection lost; calls fail with ErrUnavailable until it returns",
		slog.String("reason", errorText(withoutCall(err))))
}

package dbmanager

import (
	"errors"
	"log/slog"
)

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
// epoch is the outage tracker's epoch when the call started
// (internal/outage says which outcomes begin and end an outage); write is
// true for a write or the health check (which proves writes work). A
// failure for want of a working connection (ErrUnavailable, not a busy
// pool) marks the primary down, logged once, and makes the pool check its
// idle connections (checkSuspects); the next success of a call started
// during the outage marks it up again, logged once.
func (m *Manager) observePrimary(epoch uint64, write bool, err error) {
	if err == nil {
		if m.outage.Succeeded(epoch, write) {
			m.log.Info("Primary database connection restored")
		}
		return
	}
	var exhausted *PoolExhaustedError
	if !errors.Is(err, ErrUnavailable) || errors.As(err, &exhausted) {
		return // a busy pool is not a lost connection
	}
	if m.outage.Failed(epoch, isReadOnlyError(err)) {
		m.log.Error("Primary database connection lost; calls fail with ErrUnavailable until it returns",
			slog.String("reason", errorText(withoutCall(err))))
	}
}

package dbmanager

import "fmt"

// ErrOutcomeUnknown says a write was sent to PostgreSQL and the connection
// was lost (or the call's context ended) before the answer came: it may
// or may not have been applied. It wraps ErrUnavailable, so
// errors.Is(err, ErrUnavailable) holds too; the cause is wrapped as well.
// A caller that must know reads the key again (a Put's Version, or
// whether a Delete's key is gone) once the database answers.
//
// Writes that certainly did not run (no connection, a node that refused
// them as read-only, a server shutting down) are never reported this
// way: the Store retries them on the new writer within the call's
// deadline, and if none answers in time they fail with plain
// ErrUnavailable.
var ErrOutcomeUnknown = fmt.Errorf("write outcome unknown (sent, then the connection was lost; read the key again to learn whether it applied): %w", ErrUnavailable)

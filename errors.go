package dbmanager

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gatewaykit/dbmanager/internal/connfail"
	"github.com/gatewaykit/dbmanager/internal/safeerr"
)

// The errors callers check. Every Store operation returns an *OpError
// wrapping one of the sentinels below (test with errors.Is); a failed
// connection is a *ConnectionError with its Reason, a bad configuration a
// *ConfigError (config.go), a pool that had no free connection in time a
// *PoolExhaustedError. None of them ever shows a password.

// Sentinel errors. Store errors wrap them; test with errors.Is.
var (
	// ErrNotFound: the key does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict: an IfVersion or IfAbsent condition did not hold.
	ErrConflict = errors.New("conflict")
	// ErrInvalid: a collection, key, value or option broke the contract.
	ErrInvalid = errors.New("invalid argument")
	// ErrUnavailable: the backend could not be reached; the cause is
	// wrapped too.
	ErrUnavailable = errors.New("backend unavailable")
	// ErrClosed: the store or manager was closed.
	ErrClosed = errors.New("store closed")
)

// OpError is the error every Store operation returns. It names the
// operation, collection and key, and wraps the cause (one of the sentinel
// errors, often with more detail).
type OpError struct {
	Op         string // "get", "put", "delete", "list" or "ping"
	Collection string // empty for ping
	Key        string // empty for list and ping
	Err        error
}

func (e *OpError) Error() string {
	switch {
	case e.Collection == "" && e.Key == "":
		return "dbmanager: " + e.Op + ": " + e.Err.Error()
	case e.Key == "":
		return "dbmanager: " + e.Op + " in " + quote(e.Collection) + ": " + e.Err.Error()
	default:
		return "dbmanager: " + e.Op + " " + quote(e.Key) + " in " + quote(e.Collection) + ": " + e.Err.Error()
	}
}

// Unwrap returns the cause.
func (e *OpError) Unwrap() error { return e.Err }

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

// Reason classifies why a connection attempt failed.
type Reason string

// Connection failure reasons, as shown in logs and Info.
const (
	ReasonDNS            Reason = "dns"              // the host name does not resolve
	ReasonRefused        Reason = "refused"          // nothing listens on the port
	ReasonTimeout        Reason = "timeout"          // no answer within the connect timeout
	ReasonTLS            Reason = "tls"              // TLS failed: certificate, host name, or server without TLS
	ReasonAuth           Reason = "authentication"   // wrong user or password (SQLSTATE 28P01, 28000; PgBouncer's own 08P01 refusal, see README)
	ReasonNoDatabase     Reason = "missing database" // the database does not exist (3D000)
	ReasonServerStarting Reason = "server starting"  // the server is starting or shutting down (57P03, 57P01)
	ReasonReadOnly       Reason = "read-only"        // the server answers but refuses writes (a standby, a fenced writer)
	ReasonServer         Reason = "server error"     // another error reported by the server (e.g. too many connections)
	ReasonCanceled       Reason = "canceled"         // the caller's context was cancelled
	ReasonNetwork        Reason = "network"          // another network error (reset, unreachable)
	ReasonUnknown        Reason = "unknown"
)

// ConnectionError is a failed attempt to reach PostgreSQL. It wraps
// ErrUnavailable (so errors.Is(err, ErrUnavailable) holds) and the
// classified, redacted cause. Its message and fields never contain a
// password; json.Marshal shows Reason and Target only.
type ConnectionError struct {
	Reason Reason // why it failed
	Target string // redacted "host:port" (may be empty)
	err    error  // safe cause (*safeerr.Error or a network / server error)
}

// Error names the target, the reason and the redacted cause.
func (e *ConnectionError) Error() string {
	s := "dbmanager: cannot connect to PostgreSQL"
	if e.Target != "" {
		s += " at " + e.Target
	}
	s += ": " + string(e.Reason)
	if e.err != nil {
		s += ": " + e.err.Error()
	}
	return s
}

// Unwrap returns ErrUnavailable and the cause.
func (e *ConnectionError) Unwrap() []error {
	if e.err == nil {
		return []error{ErrUnavailable}
	}
	return []error{ErrUnavailable, e.err}
}

// PoolExhaustedError says that no connection became free within the pool
// timeout (DB_POOL_TIMEOUT) because all were in use. It wraps
// ErrUnavailable and context.DeadlineExceeded.
type PoolExhaustedError struct {
	Wait  time.Duration // how long the caller waited (0 if unknown)
	Stats PoolStats     // the pool when the wait ended
}

// Error says the pool was exhausted and shows its statistics.
func (e *PoolExhaustedError) Error() string {
	w := ""
	if e.Wait > 0 {
		w = " within " + e.Wait.String()
	}
	return "dbmanager: connection pool exhausted: no free connection" + w + " (" + e.Stats.String() + "); raise DB_POOL_SIZE/DB_MAX_OVERFLOW or look for long transactions"
}

// Unwrap returns ErrUnavailable and context.DeadlineExceeded.
func (e *PoolExhaustedError) Unwrap() []error {
	return []error{ErrUnavailable, context.DeadlineExceeded}
}

// safeError returns err with every secret kept out of it: a pgx error that
// can reveal a password becomes an internal/safeerr Error (a parse error
// then wraps ErrConfig); others are returned unchanged. Every error that
// leaves the package passes through it.
func safeError(err error) error { return safeerr.Redact(err, ErrConfig) }

// classifyConnectError turns an error from connecting or pinging (pgx,
// pgxpool) into a *ConnectionError with its Reason, redacted. target is a
// display string such as Target.Host:Port ("" if unknown). A nil error
// stays nil; an error that already is a *ConnectionError, or that is a
// configuration error (ErrConfig), is returned redacted but unchanged in
// kind.
func classifyConnectError(err error, target string) error {
	if err == nil {
		return nil
	}
	err = safeError(err)
	var ce *ConnectionError
	if errors.As(err, &ce) || errors.Is(err, ErrConfig) {
		return err
	}
	return &ConnectionError{Reason: classify(err), Target: target, err: err}
}

// classify decides the Reason of a connection failure (internal/connfail).
func classify(err error) Reason { return Reason(connfail.Classify(err)) }

// isContextError reports whether err is a context's cancellation or
// deadline.
func isContextError(err error) bool { return connfail.IsContext(err) }

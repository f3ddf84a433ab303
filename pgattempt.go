package dbmanager

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/puddle/v2"

	"github.com/gatewaykit/dbmanager/internal/connfail"
	"github.com/gatewaykit/dbmanager/internal/deadline"
	"github.com/gatewaykit/dbmanager/internal/writerwatch"
)

// How the PostgreSQL store runs a statement through a failover: an attempt
// that certainly did not run (no connection could be had, the node refused
// it as read-only, the server was shutting down) is tried again on a fresh
// connection, with a short backoff, until it succeeds, the retry budget
// (the Manager's DB_CONNECT_TIMEOUT) is spent or the call's deadline is
// near. Reads and idempotent statements are also tried again after a
// connection lost mid-statement. A write lost mid-statement, or whose
// session the server ended (FATAL), is never repeated: its outcome is
// unknown (ErrOutcomeUnknown).

// statementKind says what a failed attempt may do again.
type statementKind int

const (
	stmtOnce       statementKind = iota // never repeated
	stmtIdempotent                      // a read, the schema, the move's import: harmless to repeat
	stmtWrite                           // repeated only if it certainly did not run
)

// verdict is what to do after a failed attempt.
type verdict int

const (
	verdictFinal   verdict = iota // return the error
	verdictAgain                  // nothing ran: try again
	verdictUnknown                // a write that may have run: ErrOutcomeUnknown
)

// Backoff between attempts: doubling from retryFirstWait, at most
// retryMaxWait, each wait drawn between half and all of it.
const (
	retryFirstWait = 20 * time.Millisecond
	retryMaxWait   = 250 * time.Millisecond
)

// withConn runs one statement that may run twice without harm on a
// connection of its own, and maps the error. With retry set, a failed
// attempt is tried again as described above; without, it is run once.
func (b *pgBackend) withConn(ctx context.Context, retry bool, run func(*pgxpool.Conn) error) error {
	kind := stmtIdempotent
	if !retry {
		kind = stmtOnce
	}
	return b.runStatement(ctx, kind, run)
}

// withWrite runs one write that must not apply twice: it is tried again
// only when the failed attempt certainly did not run, and a write whose
// outcome is unknown fails with ErrOutcomeUnknown.
func (b *pgBackend) withWrite(ctx context.Context, run func(*pgxpool.Conn) error) error {
	return b.runStatement(ctx, stmtWrite, run)
}

func (b *pgBackend) runStatement(ctx context.Context, kind statementKind, run func(*pgxpool.Conn) error) error {
	start := time.Now()
	var last error // the last failure that was tried again
	for attempt := 0; ; attempt++ {
		err, acquireFailed := b.attempt(ctx, run)
		if err == nil || errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		v := judgeAttempt(ctx, err, acquireFailed, kind)
		if deadline.Err(ctx) != nil {
			return endedByContext(ctx, err, last, v, kind, acquireFailed)
		}
		switch v {
		case verdictFinal:
			return pgError(context.Background(), err) // ctx was live: the error is the statement's
		case verdictUnknown:
			return fmt.Errorf("%w: %w", ErrOutcomeUnknown, safeError(err))
		}
		last = err
		wait, ok := b.nextWait(ctx, start, attempt)
		if !ok {
			return pgError(context.Background(), err) // no time left to try again
		}
		if wait > 0 && sleepCtx(ctx, wait) != nil {
			return endedByContext(ctx, err, last, verdictAgain, kind, true)
		}
	}
}

// attempt acquires a connection, runs one statement on it and releases it.
// A connection the statement broke (or found on a read-only node) is
// closed and dropped from the pool on release. Under the router's bound,
// which no timer enforces (internal/deadline), the connection's read and write
// deadline is the bound while the statement runs: a server that stops
// answering fails the statement with a timeout then.
func (b *pgBackend) attempt(ctx context.Context, run func(*pgxpool.Conn) error) (err error, acquireFailed bool) {
	conn, err := b.acquire(ctx)
	if err != nil {
		return err, true
	}
	defer conn.Release()
	if dl, ok := deadline.Unenforced(ctx); ok {
		pc := conn.Conn().PgConn()
		_ = pc.Conn().SetDeadline(dl)
		defer func() {
			// Cleared before the deferred Release returns the connection to
			// the pool. A connection the statement broke is being closed by
			// pgconn in the background under a deadline of its own, which
			// must stay (clearing it could leave that close waiting on a
			// silent network for ever).
			if !pc.IsClosed() {
				_ = pc.Conn().SetDeadline(time.Time{})
			}
		}()
	}
	return b.runOn(ctx, conn, run), false
}

// judgeAttempt decides whether a failed attempt may be tried again.
func judgeAttempt(ctx context.Context, err error, acquireFailed bool, kind statementKind) verdict {
	if kind == stmtOnce || errors.Is(err, ErrConfig) || errors.Is(err, puddle.ErrClosedPool) {
		return verdictFinal // nothing to wait for: a misconfiguration, a pool closed under the call
	}
	if acquireFailed {
		var exhausted *PoolExhaustedError
		if errors.As(err, &exhausted) || (errors.Is(err, context.DeadlineExceeded) && deadline.Err(ctx) == nil && !isConnectFailure(err)) {
			return verdictFinal // the wait for a free connection ran out: another wait would too
		}
		if r := classify(err); r == ReasonAuth || r == ReasonNoDatabase || r == ReasonTLS {
			return verdictFinal // trying again cannot help (rotation has its own retry)
		}
		return verdictAgain // no statement was sent
	}
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		if pg.Severity == "FATAL" || pg.Severity == "PANIC" {
			// The server ended the session. That may follow a commit (a
			// terminated wait for a synchronous standby says "already
			// committed locally"), so a write's outcome is unknown.
			if kind == stmtWrite {
				return verdictUnknown
			}
			return verdictAgain
		}
		if connfail.ServerUnavailable(pg.Code) {
			return verdictAgain // an ERROR refusing it (read-only, out of space): nothing was applied
		}
		return verdictFinal
	}
	if pgconn.SafeToRetry(err) {
		return verdictAgain // never sent
	}
	if isConnectionLoss(err) {
		if kind == stmtWrite {
			return verdictUnknown
		}
		return verdictAgain
	}
	return verdictFinal
}

// endedByContext is the error of a call whose context ended while it ran
// or waited: the context's error, wrapped in ErrOutcomeUnknown when a
// write had been sent, and in ErrUnavailable when the deadline ran out
// before the statement could run (no connection in time, or retrying).
func endedByContext(ctx context.Context, err, last error, v verdict, kind statementKind, acquireFailed bool) error {
	ctxErr := deadline.Err(ctx)
	var pg *pgconn.PgError
	refused := errors.As(err, &pg) && pg.Severity != "FATAL" && pg.Severity != "PANIC" // an ERROR: nothing applied
	if kind == stmtWrite && !acquireFailed && !refused && !pgconn.SafeToRetry(err) {
		return fmt.Errorf("%w: %w", ErrOutcomeUnknown, ctxErr)
	}
	if errors.Is(ctxErr, context.DeadlineExceeded) {
		if last != nil {
			return fmt.Errorf("%w: %w while retrying after: %w", ErrUnavailable, ctxErr, safeError(last))
		}
		if v == verdictAgain {
			return fmt.Errorf("%w: %w before the statement could run: %w", ErrUnavailable, ctxErr, safeError(err))
		}
	}
	return ctxErr
}

// nextWait returns how long to wait before the next attempt, or false when
// there is no time for one: the retry budget since start is spent, or the
// context's deadline would pass. Without a budget, one immediate retry.
func (b *pgBackend) nextWait(ctx context.Context, start time.Time, attempt int) (time.Duration, bool) {
	if b.retryBudget <= 0 {
		return 0, attempt == 0
	}
	wait := min(retryFirstWait<<min(attempt, 10), retryMaxWait)
	wait = wait/2 + rand.N(wait/2+1)
	end := start.Add(b.retryBudget)
	if dl, ok := ctx.Deadline(); ok && dl.Before(end) {
		end = dl
	}
	if time.Now().Add(wait).After(end) {
		return 0, false
	}
	return wait, true
}

// isConnectFailure reports whether err came from opening a connection.
func isConnectFailure(err error) bool {
	var ce *pgconn.ConnectError
	var ours *ConnectionError
	return errors.As(err, &ce) || errors.As(err, &ours)
}

// isConnectionLoss reports whether err says the connection broke (reset,
// end of stream, a network timeout), as opposed to a statement the server
// or pgx rejected.
func isConnectionLoss(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed)
}

// pgError turns an error from pgx into what a backend returns:
//
//   - the context's own error when ctx is done (cancelled or past its
//     deadline), whatever pgx made of it;
//   - ErrUnavailable wrapping the cause when the server could not be
//     reached or is going away (network errors, connection exceptions,
//     shutdown, too many connections, a read-only server);
//   - otherwise the server's error, wrapped but without a sentinel.
//
// Every cause passes through safeError, so no password pgx may have put in
// an error reaches the caller.
func pgError(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		// A context inside pgx (a connect timeout, say): the server did not
		// answer in time.
		return fmt.Errorf("%w: %w", ErrUnavailable, safeError(err))
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && !connfail.ServerUnavailable(pgErr.Code) {
		return fmt.Errorf("postgresql: %w", safeError(err))
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, safeError(err))
}

// errNodeReadOnly says a node does not accept writes (writerwatch).
var errNodeReadOnly = writerwatch.ErrNodeReadOnly

// isReadOnlyError reports whether err says the node does not accept
// writes (a 25006, or a connection refused by the read-write check).
func isReadOnlyError(err error) bool { return writerwatch.IsReadOnlyError(err) }

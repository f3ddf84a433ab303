// Package writerwatch keeps a pgxpool on a node that accepts writes: it
// refuses read-only nodes at connect, drops connections that find
// themselves on one (Aurora's old writer, a fenced node, stale DNS after a
// failover) and checks the connections that were idle when that happened.
package writerwatch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The pool follows the writer. pgx checks target_session_attrs only when
// it connects, so on its own a pooled connection to a writer that later
// turned read-only (Aurora's old writer, a fenced node, stale DNS after a
// failover) keeps being handed out and every write on it fails with 25006.
// A Watch on the pool:
//
//   - connects only to a node that accepts writes: with no
//     target_session_attrs it asks for read-write, judged from what
//     PostgreSQL 14+ reports at connect (in_hot_standby,
//     default_transaction_read_only) without a round trip, else with
//     SHOW transaction_read_only as pgx does;
//   - closes a connection found on a read-only node instead of returning
//     it to the pool: a 25006 error on it, or the server reporting (on any
//     reply, PostgreSQL 14+) that it turned read-only;
//   - then checks, before reuse, the pool's connections that were already
//     idle when that happened (a ping, whose reply carries the server's
//     reports), and drops those that are read-only too. Connections made
//     since are on a writer by construction.
//
// New connections resolve the host name again (pgx looks it up on every
// connect), so a DNS name that moved to the new writer is followed.

// ErrNodeReadOnly says a node does not accept writes. It wraps
// pgconn.ErrReadOnlyConnection, which pgx's own read-write check returns.
var ErrNodeReadOnly = fmt.Errorf("server is read-only (a standby, or default_transaction_read_only is on): %w", pgconn.ErrReadOnlyConnection)

// SQLStateReadOnly is read_only_sql_transaction: a write on a read-only
// node (or in a read-only transaction).
const SQLStateReadOnly = "25006"

// Watch keeps a pool on a writable node (see the package comment).
type Watch struct {
	// primaryOnly is target_session_attrs=primary: only a node in
	// recovery is refused; default_transaction_read_only is not checked.
	primaryOnly bool
	// since is when (unix nanoseconds) a connection was last found on a
	// read-only node; connections idle since before then are suspect.
	since atomic.Int64
	// notice, if set, hears every such finding.
	notice func()
	// dropped, if set, hears each connection the watch closes.
	dropped func(*pgconn.PgConn)
}

// New returns the watch for a pool whose connection string has the given
// parameters, or nil when the string asks for something other than a
// writer (target_session_attrs any, read-only, standby, prefer-standby):
// that choice is honoured as it is. notice (may be nil) hears every
// connection found on a read-only node; dropped (may be nil) hears each
// one the watch closes, before it is closed.
func New(params map[string]string, notice func(), dropped func(*pgconn.PgConn)) *Watch {
	tsa, ok := params["target_session_attrs"]
	if !ok {
		tsa = os.Getenv("PGTARGETSESSIONATTRS") // pgx reads it too
	}
	switch strings.TrimSpace(tsa) {
	case "", "read-write":
		return &Watch{notice: notice, dropped: dropped}
	case "primary":
		return &Watch{primaryOnly: true, notice: notice, dropped: dropped}
	}
	return nil
}

// Install puts the watch's hooks on pc (ValidateConnect, OnPgError,
// PrepareConn, ShouldPing), keeping the hooks already there. It sets no
// AfterRelease hook: with one, pgxpool releases every connection from a
// goroutine of its own, and the pool churns.
func (w *Watch) Install(pc *pgxpool.Config) {
	pc.ConnConfig.ValidateConnect = w.validate
	inner := pc.ConnConfig.OnPgError
	pc.ConnConfig.OnPgError = func(c *pgconn.PgConn, e *pgconn.PgError) bool {
		if e.Code == SQLStateReadOnly {
			w.found()
			w.drop(c)
			return false // close it: pgxpool destroys a closed connection on release
		}
		return inner == nil || inner(c, e)
	}
	prepare := pc.PrepareConn
	pc.PrepareConn = func(ctx context.Context, c *pgx.Conn) (bool, error) {
		if w.reportsReadOnly(c.PgConn()) {
			w.found()
			w.drop(c.PgConn())
			return false, nil
		}
		if prepare != nil {
			return prepare(ctx, c)
		}
		return true, nil
	}
	shouldPing := pc.ShouldPing
	pc.ShouldPing = func(ctx context.Context, p pgxpool.ShouldPingParams) bool {
		if w.suspect(p.IdleDuration) {
			return true // the ping's reply brings the server's reports; PrepareConn judges them
		}
		return shouldPing != nil && shouldPing(ctx, p)
	}
}

// validate is the pool's ValidateConnect: it refuses a node that does not
// accept writes (or, for primaryOnly, a node in recovery).
func (w *Watch) validate(ctx context.Context, c *pgconn.PgConn) error {
	if _, _, known := serverReports(c); known {
		if w.reportsReadOnly(c) {
			return ErrNodeReadOnly
		}
		return nil
	}
	if w.primaryOnly {
		return pgconn.ValidateConnectTargetSessionAttrsPrimary(ctx, c)
	}
	if err := pgconn.ValidateConnectTargetSessionAttrsReadWrite(ctx, c); err != nil {
		if errors.Is(err, pgconn.ErrReadOnlyConnection) {
			return ErrNodeReadOnly
		}
		return err
	}
	return nil
}

// drop tells dropped that the watch closes c.
func (w *Watch) drop(c *pgconn.PgConn) {
	if w.dropped != nil {
		w.dropped(c)
	}
}

// serverReports returns what the server said about being read-only, and
// whether it said it at all (PostgreSQL 14+ reports both settings; older
// servers and some poolers do not).
func serverReports(c *pgconn.PgConn) (readOnly, inRecovery string, known bool) {
	inRecovery = c.ParameterStatus("in_hot_standby")
	readOnly = c.ParameterStatus("default_transaction_read_only")
	return readOnly, inRecovery, inRecovery != "" && readOnly != ""
}

// reportsReadOnly reports whether the server said the connection is on a
// node that refuses writes (never true without reports).
func (w *Watch) reportsReadOnly(c *pgconn.PgConn) bool {
	readOnly, inRecovery, _ := serverReports(c)
	if inRecovery == "on" {
		return true
	}
	return !w.primaryOnly && readOnly == "on"
}

// found records that a connection was on a read-only node: the
// connections idle since before now become suspect.
func (w *Watch) found() {
	w.since.Store(time.Now().UnixNano())
	if w.notice != nil {
		w.notice()
	}
}

// suspect reports whether a connection idle for idle was already idle
// when a connection was last found on a read-only node.
func (w *Watch) suspect(idle time.Duration) bool {
	since := w.since.Load()
	return since != 0 && time.Now().Add(-idle).UnixNano() <= since
}

// IsReadOnlyError reports whether err says the node does not accept
// writes: a 25006 from a statement, or a connection refused by the
// read-write check.
func IsReadOnlyError(err error) bool {
	var pg *pgconn.PgError
	if errors.As(err, &pg) && pg.Code == SQLStateReadOnly {
		return true
	}
	return errors.Is(err, pgconn.ErrReadOnlyConnection) || errors.Is(err, pgconn.ErrStandbyConnection)
}

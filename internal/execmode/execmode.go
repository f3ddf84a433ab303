// Package execmode is how the Store runs its statements behind connection
// poolers, and the names of pgx's query exec modes (DB_QUERY_EXEC_MODE).
//
// A transaction pooler (PgBouncer in transaction mode before 1.21, or
// with max_prepared_statements = 0; RDS Proxy) hands each transaction to
// whichever server connection is free. pgx's default, cache_statement,
// prepares a named statement once per client connection and then only
// binds it, so behind such a pooler the name is missing on the next server
// connection (26000) or already there from another client (42P05).
// describe_exec describes and executes in two round trips, which land on
// different server connections (08P01). cache_describe, exec and
// simple_protocol send everything a statement needs in one round trip and
// leave nothing behind on the server.
//
// On a direct connection cache_statement is clearly the fastest: the
// server parses and plans each statement once (BenchmarkPGExecModes and
// the README's "PgBouncer and RDS Proxy" have the numbers). So the store
// uses it (Direct) when nothing stands between it and PostgreSQL, and
// cache_describe (Proxied), the fastest of the pooler-safe modes,
// otherwise:
//
//   - NewPGStore asks the server (BehindProxy) for its backend process id and compares
//     it with the one the connection got at start-up (BackendKeyData).
//     PostgreSQL sends its own; PgBouncer (every pool mode), and any proxy
//     that multiplexes clients, must invent one to route cancel requests,
//     so they differ. This tells a proxy from PostgreSQL reliably, but not
//     session from transaction pooling: behind any proxy the store takes
//     the safe mode.
//   - If a statement still fails with 42P05 or 26000 in cache_statement
//     (a proxy that passes the server's key through), nothing ran: the
//     store switches to cache_describe for good and runs it again.
//
// The mode is passed as the first argument of each statement, so it never
// changes the pool's DefaultQueryExecMode, which belongs to the callers'
// own SQL (DB_QUERY_EXEC_MODE). Batches cannot take a mode per query in
// pgx, so the move's batches go through pgconn directly (internal/pgpipe).
package execmode

import (
	"context"
	"errors"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The Store's modes: Direct on a connection straight to PostgreSQL,
// Proxied behind a pooler or proxy.
const (
	Direct  = pgx.QueryExecModeCacheStatement
	Proxied = pgx.QueryExecModeCacheDescribe
)

// BehindProxy reports whether conn reaches PostgreSQL through a proxy that
// multiplexes clients: the backend process id the server reports differs
// from the one in the connection's BackendKeyData. The query is one simple
// protocol round trip that changes no session state (nothing for RDS Proxy
// to pin on).
func BehindProxy(ctx context.Context, conn *pgxpool.Conn) (bool, error) {
	var pid uint32
	err := conn.QueryRow(ctx, "SELECT pg_backend_pid()", pgx.QueryExecModeSimpleProtocol).Scan(&pid)
	if err != nil {
		return false, err
	}
	return pid != conn.Conn().PgConn().PID(), nil
}

// SQLSTATEs of a named prepared statement that is not where the client
// left it.
const (
	sqlstateDuplicatePreparedStatement = "42P05" // "prepared statement ... already exists"
	sqlstateInvalidStatementName       = "26000" // "prepared statement ... does not exist"
	sqlstateProtocolViolation          = "08P01"
)

// IsStatementCacheMiss reports whether err is the server refusing a named
// prepared statement: 42P05 when pgx prepared it (Parse) or 26000 when it
// bound it (Bind). Either way the statement did not run.
func IsStatementCacheMiss(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	return pgErr.Code == sqlstateDuplicatePreparedStatement || pgErr.Code == sqlstateInvalidStatementName
}

// IsPoolerStatementError reports whether err is one of the errors a
// transaction pooler causes for statements that rely on the server
// connection staying the same: IsStatementCacheMiss, or describe_exec's
// Bind landing on another client's unnamed statement ("bind message
// supplies 2 parameters, but prepared statement "" requires 3", 08P01).
func IsPoolerStatementError(err error) bool {
	if IsStatementCacheMiss(err) {
		return true
	}
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == sqlstateProtocolViolation &&
		strings.Contains(pgErr.Message, "prepared statement")
}

// Names are the values of DB_QUERY_EXEC_MODE, as pgx spells
// them in default_query_exec_mode.
var Names = map[string]pgx.QueryExecMode{
	"cache_statement": pgx.QueryExecModeCacheStatement,
	"cache_describe":  pgx.QueryExecModeCacheDescribe,
	"describe_exec":   pgx.QueryExecModeDescribeExec,
	"exec":            pgx.QueryExecModeExec,
	"simple_protocol": pgx.QueryExecModeSimpleProtocol,
}

// Name is the DB_QUERY_EXEC_MODE spelling of m ("" for the
// zero value, which means "not set").
func Name(m pgx.QueryExecMode) string {
	for name, mode := range Names {
		if mode == m {
			return name
		}
	}
	return ""
}

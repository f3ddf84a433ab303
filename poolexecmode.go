package dbmanager

import (
	"context"
	"log/slog"
	"sync/atomic"

	"github.com/jackc/pgx/v5"

	"github.com/gatewaykit/dbmanager/internal/execmode"
)

// applyQueryExecMode sets the pool's DefaultQueryExecMode from
// DB_QUERY_EXEC_MODE (cfg.QueryExecMode): it wins over the connection
// string's default_query_exec_mode only when the environment set it
// (cfg.explicit), like the pool_* settings. Unset, the connection string's
// value or pgx's default (cache_statement) stays.
func applyQueryExecMode(cfg Config, params map[string]string, cc *pgx.ConnConfig) error {
	if cfg.QueryExecMode == 0 {
		return nil
	}
	if execmode.Name(cfg.QueryExecMode) == "" {
		return &ConfigError{Var: "DB_QUERY_EXEC_MODE", Problem: "unknown pgx.QueryExecMode; want cache_statement, cache_describe, describe_exec, exec or simple_protocol"}
	}
	if _, inURL := params["default_query_exec_mode"]; inURL && !cfg.explicit.QueryExecMode {
		return nil
	}
	cc.DefaultQueryExecMode = cfg.QueryExecMode
	return nil
}

// msgPoolerStatements is the warning poolerWarning logs.
const msgPoolerStatements = "Prepared statements fail on this connection: a transaction pooler (PgBouncer in transaction mode, RDS Proxy) is the likely cause; set DB_QUERY_EXEC_MODE=exec (or cache_describe) for SQL on Pool()"

// msgBehindProxy is logged at start-up when the Store finds a pooler or
// proxy in front of PostgreSQL (pgexecmode.go).
const msgBehindProxy = "PostgreSQL is reached through a connection pooler or proxy; the Store uses no named prepared statements"

// logBehindProxy logs msgBehindProxy with the pool's exec mode, and a hint
// when that mode breaks behind transaction pooling.
func logBehindProxy(ctx context.Context, log *slog.Logger, poolMode pgx.QueryExecMode) {
	attrs := []slog.Attr{slog.String("query_exec_mode", execmode.Name(poolMode))}
	if poolMode == pgx.QueryExecModeCacheStatement || poolMode == pgx.QueryExecModeDescribeExec {
		attrs = append(attrs, slog.String("hint", "if it pools transactions (PgBouncer pool_mode=transaction, RDS Proxy), set DB_QUERY_EXEC_MODE=exec for SQL on Pool()"))
	}
	log.LogAttrs(ctx, slog.LevelInfo, msgBehindProxy, attrs...)
}

// poolerWarning logs msgPoolerStatements once per pool, the first time a
// statement fails as it does behind a transaction pooler
// (execmode.IsPoolerStatementError): 42P05 or 26000 on a statement pgx prepared, or
// describe_exec's 08P01. The Store recovers by itself (pgexecmode.go); SQL
// of the pool's other users does not, whence the hint.
type poolerWarning struct {
	mode   pgx.QueryExecMode // the pool's DefaultQueryExecMode
	warned atomic.Bool
}

func (w *poolerWarning) observe(ctx context.Context, log *slog.Logger, err error) {
	if err == nil || w.warned.Load() || !execmode.IsPoolerStatementError(err) || !w.warned.CompareAndSwap(false, true) {
		return
	}
	log.LogAttrs(ctx, slog.LevelWarn, msgPoolerStatements,
		slog.String("query_exec_mode", execmode.Name(w.mode)),
		slog.String("error", errorText(err)))
}

// The pool's tracer also sees batches and explicit Prepare calls, so the
// warning covers every statement on the pool. (echoHooks logs batch
// statements itself and calls these.)

// TraceBatchStart does nothing.
func (h *poolHooks) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return ctx
}

// TraceBatchQuery watches for errors a transaction pooler causes.
func (h *poolHooks) TraceBatchQuery(ctx context.Context, _ *pgx.Conn, data pgx.TraceBatchQueryData) {
	h.statements.observe(ctx, h.log(), data.Err)
}

// TraceBatchEnd watches for errors a transaction pooler causes (a batch
// whose statements could not be prepared fails here).
func (h *poolHooks) TraceBatchEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceBatchEndData) {
	h.statements.observe(ctx, h.log(), data.Err)
}

// TracePrepareStart does nothing.
func (h *poolHooks) TracePrepareStart(ctx context.Context, _ *pgx.Conn, _ pgx.TracePrepareStartData) context.Context {
	return ctx
}

// TracePrepareEnd watches for errors a transaction pooler causes.
func (h *poolHooks) TracePrepareEnd(ctx context.Context, _ *pgx.Conn, data pgx.TracePrepareEndData) {
	h.statements.observe(ctx, h.log(), data.Err)
}

package dbmanager

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// The two positions the read-your-writes rule compares, as int8 byte
// offsets. pg_current_wal_insert_lsn() includes every WAL record already
// inserted, committed or not, so read after a commit it is at or past the
// end of that commit record. pg_last_wal_replay_lsn() is the end of the
// last record a standby replayed, NULL on a node that is not in recovery.
// The comparison errs on the safe side only: an insert position read just
// after a page header is past a replay position at the page boundary
// before it, so that replica waits for the next record.
const (
	sqlWriterPosition = `SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::int8`
	sqlReplayPosition = `SELECT (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::int8`
)

// pipeStmt is one statement of runPipeline and, afterwards, its outcome.
type pipeStmt struct {
	sql  string
	args []any
	// scan reads the statement's rows; nil ignores them.
	scan func(pgx.Rows) error
	tag  pgconn.CommandTag
	// err is the statement's own error: the server's (a *PgError), or
	// scan's. The statements after it still ran.
	err error
	// done is set once the statement's outcome was read to its end (its
	// Sync included, with a Sync after each statement): a pipeline that
	// broke later leaves it known.
	done bool
}

// runPipeline sends every statement, each followed by a Sync, in one
// round trip, and reads their results in order. Each statement is
// therefore a transaction of its own that commits before the next one
// starts, and takes its own snapshot whatever the isolation level: this is
// what makes the positions exact.
//
//   - A write followed by sqlWriterPosition: the position is read after the
//     write's commit record was inserted. pg_current_wal_insert_lsn() in the
//     write's RETURNING list would be the position before it, and a replica
//     that replayed that far may not have replayed the commit yet (the row
//     is still invisible there).
//   - sqlReplayPosition followed by a read: the read's snapshot is taken
//     after the replica reported its position, so it sees everything up to
//     there. pg_last_wal_replay_lsn() in the read's own select list would be
//     evaluated after the read's snapshot, and may already include a
//     commit that snapshot does not see.
//
// With named, statements are prepared once per connection (conn.Prepare
// caches them) and then only bound; otherwise each is an unnamed statement
// with parameter types taken from its arguments, which leaves nothing
// behind on the server (for transaction poolers). Parameters and results
// travel in binary. The error is the pipeline's own (the connection
// broke, ctx ended); each statement's error is in its err.
func runPipeline(ctx context.Context, conn *pgx.Conn, named bool, stmts ...*pipeStmt) error {
	return sendPipeline(ctx, conn, named, true, stmts)
}

// runReadTransaction runs stmts in one round trip as one read-only READ
// COMMITTED transaction (BEGIN ... COMMIT, one Sync), unnamed. Behind a
// pooler or proxy that multiplexes transactions (PgBouncer's transaction
// pooling, RDS Proxy, which may also spread a reader endpoint's
// transactions over several readers) this keeps a replay check and the
// read after it on one server connection; READ COMMITTED still gives the
// read a snapshot of its own, taken after the check, whatever
// default_transaction_isolation says.
func runReadTransaction(ctx context.Context, conn *pgx.Conn, stmts ...*pipeStmt) error {
	all := append([]*pipeStmt{{sql: "BEGIN ISOLATION LEVEL READ COMMITTED READ ONLY"}}, stmts...)
	all = append(all, &pipeStmt{sql: "COMMIT"})
	return sendPipeline(ctx, conn, false, false, all)
}

// sendPipeline is runPipeline, with a Sync after each statement
// (syncEach) or only after the last.
func sendPipeline(ctx context.Context, conn *pgx.Conn, named, syncEach bool, stmts []*pipeStmt) (err error) {
	if tracer, ok := conn.Config().Tracer.(pgx.BatchTracer); ok {
		traced := &pgx.Batch{}
		for _, s := range stmts {
			traced.Queue(s.sql, s.args...)
		}
		ctx = tracer.TraceBatchStart(ctx, conn, pgx.TraceBatchStartData{Batch: traced})
		defer func() {
			for _, s := range stmts {
				tracer.TraceBatchQuery(ctx, conn, pgx.TraceBatchQueryData{SQL: s.sql, Args: s.args, CommandTag: s.tag, Err: s.err})
			}
			tracer.TraceBatchEnd(ctx, conn, pgx.TraceBatchEndData{Err: err})
		}()
	}
	tm := conn.TypeMap()
	binary := []int16{pgtype.BinaryFormatCode} // one code: every parameter, every column
	descs := make([]*pgconn.StatementDescription, len(stmts))
	values := make([][][]byte, len(stmts))
	oids := make([][]uint32, len(stmts))
	for i, s := range stmts {
		if named {
			if descs[i], err = conn.Prepare(ctx, s.sql, s.sql); err != nil {
				return err
			}
			oids[i] = descs[i].ParamOIDs
		} else if oids[i], err = paramOIDs(s.args); err != nil {
			return err
		}
		if len(oids[i]) != len(s.args) {
			return fmt.Errorf("dbmanager: pipeline: %d arguments for %d parameters", len(s.args), len(oids[i]))
		}
		values[i] = make([][]byte, len(s.args))
		for j, a := range s.args {
			// A non-nil buffer: an empty value must stay empty, not NULL.
			if values[i][j], err = tm.Encode(oids[i][j], pgtype.BinaryFormatCode, a, []byte{}); err != nil {
				return fmt.Errorf("dbmanager: pipeline: argument %d: %w", j+1, err)
			}
		}
	}

	p := conn.PgConn().StartPipeline(ctx)
	for i, s := range stmts {
		if named {
			p.SendQueryStatement(descs[i], values[i], binary, binary)
		} else {
			p.SendQueryParams(s.sql, values[i], oids[i], binary, binary)
		}
		if syncEach || i == len(stmts)-1 {
			p.SendPipelineSync()
		}
	}
	if err := p.Flush(); err != nil {
		_ = p.Close()
		return err
	}
	var failed error // within one transaction, the server skips what follows an error
	for i, s := range stmts {
		if failed != nil {
			s.err = failed
			continue
		}
		res, err := p.GetResults()
		var pgErr *pgconn.PgError
		switch {
		case errors.As(err, &pgErr):
			s.err = err // the server skipped to the Sync: read it below
			if !syncEach {
				failed = err
			}
		case err != nil:
			_ = p.Close()
			return err
		default:
			rr, ok := res.(*pgconn.ResultReader)
			if !ok {
				_ = p.Close()
				return fmt.Errorf("dbmanager: pipeline: unexpected %T", res)
			}
			rows := pgx.RowsFromResultReader(tm, rr)
			if s.scan != nil {
				s.err = s.scan(rows)
			}
			rows.Close()
			s.tag = rows.CommandTag()
			if s.err == nil {
				s.err = rows.Err()
			}
		}
		if !syncEach && i < len(stmts)-1 && failed == nil {
			continue
		}
		if res, err := p.GetResults(); err != nil || !isPipelineSync(res) {
			_ = p.Close()
			if err == nil {
				err = fmt.Errorf("dbmanager: pipeline: unexpected %T, want the Sync", res)
			}
			return err
		}
		if syncEach {
			s.done = true
		}
	}
	return p.Close()
}

func isPipelineSync(res any) bool { _, ok := res.(*pgconn.PipelineSync); return ok }

// paramOIDs gives each argument the type of the store's parameters of its
// Go type.
func paramOIDs(args []any) ([]uint32, error) {
	oids := make([]uint32, len(args))
	for i, a := range args {
		switch a.(type) {
		case string:
			oids[i] = pgtype.TextOID
		case []byte:
			oids[i] = pgtype.ByteaOID
		case int, int64, int32:
			oids[i] = pgtype.Int8OID
		case time.Time:
			oids[i] = pgtype.TimestamptzOID
		default:
			return nil, fmt.Errorf("dbmanager: pipeline: no parameter type for argument %d (%T)", i+1, a)
		}
	}
	return oids, nil
}

// scanOneRow returns a scan function that reads exactly the first row into
// dest, or pgx.ErrNoRows, as QueryRow(...).Scan does.
func scanOneRow(dest ...any) func(pgx.Rows) error {
	return func(rows pgx.Rows) error {
		if !rows.Next() {
			if err := rows.Err(); err != nil {
				return err
			}
			return pgx.ErrNoRows
		}
		return rows.Scan(dest...)
	}
}

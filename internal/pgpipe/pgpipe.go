// Package pgpipe runs several statements in one round trip through pgx's
// pgconn, in ways that work behind any transaction pooler: Send runs one
// statement for many argument lists before one Sync (the move's batches);
// Run sends different statements each followed by a Sync, so each commits
// before the next starts (a write and then the writer's WAL position, or a
// replica's replay position and then a read: the read-your-writes rule of
// internal/walpos). The connection's tracer sees them as a batch.
package pgpipe

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// Send runs sql once for each argument list in argRows, all in
// one round trip, as one implicit transaction (as pgx.Batch does). Unlike
// pgx.Batch, whose exec mode is always the connection's
// DefaultQueryExecMode, it works behind any transaction pooler whatever
// that mode is: sql is parsed once as the unnamed statement, with the
// parameter types given (oids), and bound and executed once per argument
// list, all before one Sync, so a pooler keeps every message on one server
// connection, there is no describe round trip, and no named prepared
// statement is left behind; the server parses the statement once, as for a
// prepared one. Parameters and results are binary. scan is called with
// each statement's rows, in order, and must read them; Send
// closes them.
//
// The connection's tracer sees the statements as a batch (SQL_ECHO, and
// the pool's prepared-statement warning), as it would for SendBatch.
func Send(ctx context.Context, conn *pgx.Conn, sql string, oids []uint32, argRows [][]any, scan func(i int, rows pgx.Rows) error) (err error) {
	if len(argRows) == 0 {
		return nil
	}
	tracer, _ := conn.Config().Tracer.(pgx.BatchTracer)
	if tracer != nil {
		traced := &pgx.Batch{}
		for _, args := range argRows {
			traced.Queue(sql, args...)
		}
		ctx = tracer.TraceBatchStart(ctx, conn, pgx.TraceBatchStartData{Batch: traced})
		defer func() { tracer.TraceBatchEnd(ctx, conn, pgx.TraceBatchEndData{Err: err}) }()
	}

	tm := conn.TypeMap()
	formats := make([]int16, len(oids))
	for i := range formats {
		formats[i] = pgtype.BinaryFormatCode
	}
	binaryResults := []int16{pgtype.BinaryFormatCode} // one code: every column
	batch := &pgconn.Batch{}
	for i, args := range argRows {
		if len(args) != len(oids) {
			return fmt.Errorf("Send: %d arguments for %d parameters", len(args), len(oids))
		}
		values := make([][]byte, len(args))
		for j, a := range args {
			// A non-nil buffer: an empty value must stay empty, not NULL.
			if values[j], err = tm.Encode(oids[j], pgtype.BinaryFormatCode, a, []byte{}); err != nil {
				return fmt.Errorf("Send: argument %d: %w", j+1, err)
			}
		}
		if i == 0 {
			batch.ExecParams(sql, values, oids, formats, binaryResults) // Parse "", Bind, Execute
		} else {
			batch.ExecPrepared("", values, formats, binaryResults) // Bind "" again, Execute
		}
	}

	results := conn.PgConn().ExecBatch(ctx, batch)
	for i := range argRows {
		if !results.NextResult() {
			// A statement failed and the server skipped the rest: Close
			// says why.
			if cerr := results.Close(); cerr != nil {
				return cerr
			}
			return fmt.Errorf("Send: %d results for %d statements", i, len(argRows))
		}
		rows := pgx.RowsFromResultReader(tm, results.ResultReader())
		serr := scan(i, rows)
		rows.Close()
		if serr == nil {
			serr = rows.Err()
		}
		if tracer != nil {
			tracer.TraceBatchQuery(ctx, conn, pgx.TraceBatchQueryData{SQL: sql, Args: argRows[i], CommandTag: rows.CommandTag(), Err: serr})
		}
		if serr != nil {
			_ = results.Close() // read up to the end of the batch; serr says what went wrong
			return serr
		}
	}
	return results.Close()
}

// OIDs of the parameter types the store's batches use.
const (
	OIDText        = pgtype.TextOID
	OIDBytea       = pgtype.ByteaOID
	OIDInt8        = pgtype.Int8OID
	OIDTimestamptz = pgtype.TimestamptzOID
)

// Stmt is one statement of Run and, afterwards, its outcome.
type Stmt struct {
	SQL  string
	Args []any
	// Scan reads the statement's rows; nil ignores them.
	Scan func(pgx.Rows) error
	Tag  pgconn.CommandTag
	// Err is the statement's own error: the server's (a *PgError), or
	// Scan's. The statements after it still ran.
	Err error
	// Done is set once the statement's outcome was read to its end (its
	// Sync included, with a Sync after each statement): a pipeline that
	// broke later leaves it known.
	Done bool
}

// Run sends every statement, each followed by a Sync, in one
// round trip, and reads their results in order. Each statement is
// therefore a transaction of its own that commits before the next one
// starts, and takes its own snapshot whatever the isolation level: this is
// what makes the positions exact.
//
//   - A write followed by walpos.WriterPositionSQL: the position is read after the
//     write's commit record was inserted. pg_current_wal_insert_lsn() in the
//     write's RETURNING list would be the position before it, and a replica
//     that replayed that far may not have replayed the commit yet (the row
//     is still invisible there).
//   - walpos.ReplayPositionSQL followed by a read: the read's snapshot is taken
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
// broke, ctx ended); each statement's error is in its Err.
func Run(ctx context.Context, conn *pgx.Conn, named bool, stmts ...*Stmt) error {
	return sendPipeline(ctx, conn, named, true, stmts)
}

// RunReadTransaction runs stmts in one round trip as one read-only READ
// COMMITTED transaction (BEGIN ... COMMIT, one Sync), unnamed. Behind a
// pooler or proxy that multiplexes transactions (PgBouncer's transaction
// pooling, RDS Proxy, which may also spread a reader endpoint's
// transactions over several readers) this keeps a replay check and the
// read after it on one server connection; READ COMMITTED still gives the
// read a snapshot of its own, taken after the check, whatever
// default_transaction_isolation says.
func RunReadTransaction(ctx context.Context, conn *pgx.Conn, stmts ...*Stmt) error {
	all := append([]*Stmt{{SQL: "BEGIN ISOLATION LEVEL READ COMMITTED READ ONLY"}}, stmts...)
	all = append(all, &Stmt{SQL: "COMMIT"})
	return sendPipeline(ctx, conn, false, false, all)
}

// sendPipeline is Run, with a Sync after each statement
// (syncEach) or only after the last.
func sendPipeline(ctx context.Context, conn *pgx.Conn, named, syncEach bool, stmts []*Stmt) (err error) {
	if tracer, ok := conn.Config().Tracer.(pgx.BatchTracer); ok {
		traced := &pgx.Batch{}
		for _, s := range stmts {
			traced.Queue(s.SQL, s.Args...)
		}
		ctx = tracer.TraceBatchStart(ctx, conn, pgx.TraceBatchStartData{Batch: traced})
		defer func() {
			for _, s := range stmts {
				tracer.TraceBatchQuery(ctx, conn, pgx.TraceBatchQueryData{SQL: s.SQL, Args: s.Args, CommandTag: s.Tag, Err: s.Err})
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
			if descs[i], err = conn.Prepare(ctx, s.SQL, s.SQL); err != nil {
				return err
			}
			oids[i] = descs[i].ParamOIDs
		} else if oids[i], err = paramOIDs(s.Args); err != nil {
			return err
		}
		if len(oids[i]) != len(s.Args) {
			return fmt.Errorf("dbmanager: pipeline: %d arguments for %d parameters", len(s.Args), len(oids[i]))
		}
		values[i] = make([][]byte, len(s.Args))
		for j, a := range s.Args {
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
			p.SendQueryParams(s.SQL, values[i], oids[i], binary, binary)
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
			s.Err = failed
			continue
		}
		res, err := p.GetResults()
		var pgErr *pgconn.PgError
		switch {
		case errors.As(err, &pgErr):
			s.Err = err // the server skipped to the Sync: read it below
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
			if s.Scan != nil {
				s.Err = s.Scan(rows)
			}
			rows.Close()
			s.Tag = rows.CommandTag()
			if s.Err == nil {
				s.Err = rows.Err()
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
			s.Done = true
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

// ScanOneRow returns a scan function that reads exactly the first row into
// dest, or pgx.ErrNoRows, as QueryRow(...).Scan does.
func ScanOneRow(dest ...any) func(pgx.Rows) error {
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

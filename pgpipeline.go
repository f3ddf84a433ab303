package dbmanager

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// sendStatements runs sql once for each argument list in argRows, all in
// one round trip, as one implicit transaction (as pgx.Batch does). Unlike
// pgx.Batch, whose exec mode is always the connection's
// DefaultQueryExecMode, it works behind any transaction pooler whatever
// that mode is: sql is parsed once as the unnamed statement, with the
// parameter types given (oids), and bound and executed once per argument
// list, all before one Sync, so a pooler keeps every message on one server
// connection, there is no describe round trip, and no named prepared
// statement is left behind; the server parses the statement once, as for a
// prepared one. Parameters and results are binary. scan is called with
// each statement's rows, in order, and must read them; sendStatements
// closes them.
//
// The connection's tracer sees the statements as a batch (SQL_ECHO, and
// the pool's prepared-statement warning), as it would for SendBatch.
func sendStatements(ctx context.Context, conn *pgx.Conn, sql string, oids []uint32, argRows [][]any, scan func(i int, rows pgx.Rows) error) (err error) {
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
			return fmt.Errorf("sendStatements: %d arguments for %d parameters", len(args), len(oids))
		}
		values := make([][]byte, len(args))
		for j, a := range args {
			// A non-nil buffer: an empty value must stay empty, not NULL.
			if values[j], err = tm.Encode(oids[j], pgtype.BinaryFormatCode, a, []byte{}); err != nil {
				return fmt.Errorf("sendStatements: argument %d: %w", j+1, err)
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
			return fmt.Errorf("sendStatements: %d results for %d statements", i, len(argRows))
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
	oidText        = pgtype.TextOID
	oidBytea       = pgtype.ByteaOID
	oidInt8        = pgtype.Int8OID
	oidTimestamptz = pgtype.TimestamptzOID
)

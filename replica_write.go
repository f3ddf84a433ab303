package dbmanager

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gatewaykit/dbmanager/internal/execmode"
	"github.com/gatewaykit/dbmanager/internal/pgpipe"
	"github.com/gatewaykit/dbmanager/internal/walpos"
)

// writeTracked runs one write of the Store and learns the writer's WAL
// position after its commit, both in one round trip: the statement, a
// Sync (so it commits), then walpos.WriterPositionSQL, then a Sync. It is used
// only when read replicas are configured; the position, raised in
// b.reads, is what a replica must have replayed before it serves a read.
//
// Every statement that ran raises the position, including a conditional
// write whose condition failed: the caller then knows about a newer
// version, and a replica that does not have it would send a retry loop
// (Collection.Update) round in circles. When the connection breaks after
// the statement may have been sent, the write may have committed without
// its position: the position becomes unknown and reads go to the writer
// until it is learned again. (pgconn does not say how much of a pipeline
// it wrote before a write error, so a pipeline that failed to send counts
// as possibly sent; a connection the server already closed is dropped on
// acquire, before this, by the pool's PrepareConn check.)
func (b *pgBackend) writeTracked(ctx context.Context, conn *pgxpool.Conn, sql string, args []any, scan func(pgx.Rows) error) (pgconn.CommandTag, error) {
	named, args := b.pipelineMode(args)
	write := &pgpipe.Stmt{SQL: sql, Args: args, Scan: scan}
	var lsn *int64
	pos := &pgpipe.Stmt{SQL: walpos.WriterPositionSQL, Scan: pgpipe.ScanOneRow(&lsn)}
	if err := pgpipe.Run(ctx, conn.Conn(), named, write, pos); err != nil {
		switch {
		case write.Done:
			// The write's outcome came back; only its position was lost.
			b.reads.pos.MarkUnknown()
			return write.Tag, write.Err
		case !pgconn.SafeToRetry(err):
			b.reads.pos.MarkUnknown()
		}
		return write.Tag, err
	}
	if pos.Err != nil || lsn == nil {
		b.reads.pos.MarkUnknown()
	} else {
		b.reads.pos.Advance(uint64(*lsn))
	}
	return write.Tag, write.Err
}

// pipelineNamed says whether the store's pipelines may use named
// prepared statements: as its single statements do, on a direct
// connection (pgexecmode.go); not behind a pooler.
func (b *pgBackend) pipelineNamed() bool { return b.execMode() == execmode.Direct }

// pipelineMode says whether the store's pipelines may use named prepared
// statements (as its single statements do), and returns args without a
// leading pgx.QueryExecMode, if the caller passed one.
func (b *pgBackend) pipelineMode(args []any) (named bool, rest []any) {
	named = b.pipelineNamed()
	if len(args) > 0 {
		if mode, ok := args[0].(pgx.QueryExecMode); ok {
			return mode == execmode.Direct, args[1:]
		}
	}
	return named, args
}

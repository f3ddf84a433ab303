package dbmanager

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gatewaykit/dbmanager/internal/execmode"
	"github.com/gatewaykit/dbmanager/internal/pgpipe"
	"github.com/gatewaykit/dbmanager/internal/walpos"
)

type readFromWriterKey struct{}

// ReadFromWriter returns a context that sends the Store reads made with it
// (Get and List) to the writer, never to a read replica: for a read that
// must see writes made by other processes, or through Pool(), the moment
// they are acknowledged. Without read replicas it changes nothing.
func ReadFromWriter(ctx context.Context) context.Context {
	return context.WithValue(ctx, readFromWriterKey{}, true)
}

func readsFromWriter(ctx context.Context) bool {
	v, _ := ctx.Value(readFromWriterKey{}).(bool)
	return v
}

// replicaGet is Get on a read replica. ok is false when no replica could
// answer consistently (none in rotation, none caught up, or the one tried
// failed): the caller then reads from the writer.
func (b *pgBackend) replicaGet(ctx context.Context, collection, key string) (rec Record, ok bool, err error) {
	r := Record{Collection: collection, Key: key}
	ok, err = b.reads.read(ctx, b.pipelineNamed(), b.sql.Get, []any{collection, key}, pgpipe.ScanOneRow(&r.Value, &r.Version, &r.CreatedAt, &r.UpdatedAt))
	if !ok {
		return Record{}, false, nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return Record{}, true, ErrNotFound
	}
	return r, true, err
}

// replicaList is List on a read replica; ok as for replicaGet.
func (b *pgBackend) replicaList(ctx context.Context, collection string, opts ListOptions) (records []Record, more, ok bool, err error) {
	sql, args := b.sql.ListQuery(execmode.Direct, collection, opts.Prefix, opts.After, opts.Limit+1)
	args = args[1:] // the mode: read chooses its own
	ok, err = b.reads.read(ctx, b.pipelineNamed(), sql, args, scanRecords(collection, &records))
	if !ok || err != nil {
		return nil, false, ok, err
	}
	if len(records) > opts.Limit {
		return records[:opts.Limit], true, true, nil
	}
	return records, false, true, nil
}

// read runs one read statement (prepared when named) on a replica that
// has replayed the latest acknowledged write: walpos.ReplayPositionSQL, a Sync,
// the read, a Sync, in one round trip (pgpipe.Run says why in this
// order). When a check on the same connection already found that far
// replayed, the read goes alone: the connection being open means the
// server has not restarted since, and a running standby never replays
// backwards. Behind a pooler or proxy (not named, or the replica's own
// check found one) neither holds, since the pooler may switch servers
// between transactions: check and read then run as one transaction
// (pgpipe.RunReadTransaction), every time. served is false when the read must
// go to the writer instead:
//
//   - ctx says ReadFromWriter, or the position is unknown;
//   - no replica is in rotation;
//   - the replica tried had not replayed far enough (the read it ran is
//     thrown away: one wasted round trip);
//   - the replica failed in any way (a read is always safe to repeat); a
//     failure for want of a connection also takes it out of the choice
//     until its next check, which runs at once.
//
// When ctx itself ends, served is true and err is ctx's error.
func (rs *replicaSet) read(ctx context.Context, named bool, sql string, args []any, scan func(pgx.Rows) error) (served bool, err error) {
	if readsFromWriter(ctx) {
		rs.writerReads.Add(1)
		return false, nil
	}
	lsn, known := rs.pos.Current()
	var r *replica
	if known {
		r = rs.pick(lsn)
	}
	if r == nil {
		rs.writerReads.Add(1)
		return false, nil
	}
	actx, cancel := rs.attemptContext(ctx)
	defer cancel()
	var replay *int64
	check := &pgpipe.Stmt{SQL: walpos.ReplayPositionSQL, Scan: pgpipe.ScanOneRow(&replay)}
	stmt := &pgpipe.Stmt{SQL: sql, Args: args, Scan: scan}
	conn, err := acquireConn(actx, r.pool, 0)
	if err == nil {
		pc := conn.Conn().PgConn()
		named = named && !r.unnamed.Load()
		if !named { // a pooler or proxy: check and read in one transaction, never skip the check
			err = pgpipe.RunReadTransaction(actx, conn.Conn(), check, stmt)
		} else if seen, ok := r.replayedOn.Load(pc); ok && seen.(uint64) >= lsn {
			// Checked already: the read alone, as the writer runs it.
			err = queryDirect(actx, conn, stmt)
			v := int64(seen.(uint64))
			replay = &v
		} else {
			err = pgpipe.Run(actx, conn.Conn(), named, check, stmt)
			if err == nil && check.Err == nil && replay != nil {
				r.replayedOn.Store(pc, uint64(*replay))
				r.sawReplay(uint64(*replay))
			}
		}
		conn.Release()
	}
	switch {
	case ctx.Err() != nil:
		return true, ctx.Err()
	case execmode.IsStatementCacheMiss(err) || execmode.IsStatementCacheMiss(check.Err) || execmode.IsStatementCacheMiss(stmt.Err):
		r.unnamed.Store(true) // a pooler the first check did not see
	case err != nil:
		if errors.Is(pgError(actx, err), ErrUnavailable) || actx.Err() != nil {
			r.suspectRead()
		}
	case check.Err != nil || replay == nil:
		r.checkNow() // not a replica any more (failover)?
	case uint64(*replay) < lsn:
		// Not caught up: the read it ran is thrown away.
	case stmt.Err != nil && !errors.Is(stmt.Err, pgx.ErrNoRows):
		// A recovery conflict, say: the writer answers.
	default:
		r.reads.Add(1)
		return true, stmt.Err
	}
	rs.writerReads.Add(1)
	return false, nil
}

// queryDirect runs stmt as a single statement in the store's direct exec
// mode (a prepared statement from the connection's cache), as the writer
// runs its reads: the error is the connection's, stmt.Err the
// statement's.
func queryDirect(ctx context.Context, conn *pgxpool.Conn, stmt *pgpipe.Stmt) error {
	rows, err := conn.Query(ctx, stmt.SQL, append([]any{execmode.Direct}, stmt.Args...)...)
	if err != nil {
		return err
	}
	stmt.Err = stmt.Scan(rows)
	rows.Close()
	if stmt.Err == nil {
		stmt.Err = rows.Err()
	}
	var pgErr *pgconn.PgError
	if errors.As(stmt.Err, &pgErr) || stmt.Err == nil || errors.Is(stmt.Err, pgx.ErrNoRows) {
		return nil
	}
	return stmt.Err // the connection broke while reading
}

// attemptContext bounds a read on a replica so that, if it hangs, the
// caller still has time to read from the writer: half of what is left
// of ctx's deadline, at most DB_CONNECT_TIMEOUT.
func (rs *replicaSet) attemptContext(ctx context.Context) (context.Context, context.CancelFunc) {
	d := rs.attemptTimeout
	if deadline, ok := ctx.Deadline(); ok {
		d = min(d, time.Until(deadline)/2)
	}
	if d <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

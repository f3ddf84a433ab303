package dbmanager

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// Replica states, as Info and Health show them.
const (
	ReplicaStarting      = "starting"        // not checked yet: serves no reads
	ReplicaInRotation    = "in rotation"     // serves the reads it can answer consistently
	ReplicaOutOfRotation = "out of rotation" // serves no reads; Reason says why
)

// outReason is why a replica is out of rotation; a change of it is logged.
type outReason int

const (
	outNone outReason = iota
	outUnreachable
	outWriter
	outNoReplay
	outLagging
)

// sqlReplicaCheck is a replica's health check: whether it is in recovery,
// its replay position, and the age of the last transaction it replayed
// (microseconds, by the replica's clock against the writer's commit
// timestamps). One simple-protocol round trip: no prepared statement, no
// session state.
const sqlReplicaCheck = `SELECT pg_is_in_recovery(),
	(pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::int8,
	(extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp()) * 1000000)::int8`

// sqlWriterSample is the writer's inserted and flushed WAL positions.
const sqlWriterSample = `SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::int8,
	(pg_current_wal_flush_lsn() - '0/0'::pg_lsn)::int8`

// writerSamples is how many of the writer's positions the lag rule keeps
// (one a second).
const writerSamples = 16

// checkResult is what one health check of a replica found.
type checkResult struct {
	err        error
	inRecovery bool
	replay     *int64
	ageMicros  *int64
}

// watch checks r about once a second, at once when a read on it failed,
// and sooner after a failed check, until ctx ends.
func (rs *replicaSet) watch(ctx context.Context, r *replica) {
	defer rs.wg.Done()
	failures := 0
	every(ctx, r.wake, func() time.Duration {
		res := rs.check(ctx, r)
		if ctx.Err() != nil {
			return 0
		}
		next := replicaCheckInterval
		if res.err != nil {
			failures++
			next = replicaRecheckAfter
		} else {
			failures = 0
		}
		rs.apply(r, res, failures)
		return next
	})
}

// every runs step at once, then again after the wait it returns, or
// sooner when wake receives, until ctx ends.
func every(ctx context.Context, wake <-chan struct{}, step func() time.Duration) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-wake:
		}
		next := step()
		if ctx.Err() != nil {
			return
		}
		t.Reset(next)
	}
}

// check runs sqlReplicaCheck on r, bounded by the check timeout.
func (rs *replicaSet) check(ctx context.Context, r *replica) checkResult {
	cctx, cancel := context.WithTimeout(ctx, rs.checkTimeout)
	defer cancel()
	var res checkResult
	conn, err := acquireConn(cctx, r.pool, 0)
	if err != nil {
		res.err = err
		return res
	}
	defer conn.Release()
	if !r.proxyKnown {
		// As execmode.BehindProxy does, out of SQL_ECHO's sight.
		if row, err := queryRowText(cctx, conn.Conn().PgConn(), "SELECT pg_backend_pid()", 1); err == nil {
			r.unnamed.Store(string(row[0]) != strconv.FormatUint(uint64(conn.Conn().PgConn().PID()), 10))
			r.proxyKnown = true
		}
	}
	row, err := queryRowText(cctx, conn.Conn().PgConn(), sqlReplicaCheck, 3)
	if err == nil {
		res.inRecovery = string(row[0]) == "t"
		res.replay, err = parseInt8Text(row[1])
	}
	if err == nil {
		res.ageMicros, err = parseInt8Text(row[2])
	}
	if err != nil {
		res.err = classifyConnectError(pgError(cctx, err), r.addr)
	}
	return res
}

// queryRowText runs sql, a query without parameters, in one simple
// protocol round trip and returns its one row's columns as text (nil for
// NULL). It goes around pgx's tracer: checks made every second are not
// the application's statements, and SQL_ECHO does not log them.
func queryRowText(ctx context.Context, conn *pgconn.PgConn, sql string, columns int) ([][]byte, error) {
	results, err := conn.Exec(ctx, sql).ReadAll()
	if err != nil {
		return nil, err
	}
	if len(results) != 1 || len(results[0].Rows) != 1 || len(results[0].Rows[0]) != columns {
		return nil, fmt.Errorf("dbmanager: %q returned an unexpected result", sql)
	}
	return results[0].Rows[0], nil
}

// parseInt8Text reads an int8 column in text form (nil for NULL).
func parseInt8Text(v []byte) (*int64, error) {
	if v == nil {
		return nil, nil
	}
	n, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("dbmanager: not an integer: %w", err)
	}
	return &n, nil
}

// apply puts r in or out of rotation as the check res says; failures is
// how many checks in a row failed.
func (rs *replicaSet) apply(r *replica, res checkResult, failures int) {
	if res.err != nil {
		// What it had replayed is no longer known: a standby that restarts
		// may open at an earlier point (its minimum recovery point).
		r.sawReplay(0)
		if failures >= replicaFailuresOut {
			rs.setOut(r, outUnreachable, "failing checks: "+errorText(res.err), 0)
		}
		return
	}
	r.suspect.Store(false)
	switch {
	case !res.inRecovery:
		rs.setOut(r, outWriter, "not in recovery: it is a writer now (after a failover?)", 0)
		return
	case res.replay == nil:
		rs.setOut(r, outNoReplay, "reports no replay position (pg_last_wal_replay_lsn() is NULL)", 0)
		return
	}
	r.sawReplay(uint64(*res.replay))
	lag, known := rs.lagOf(uint64(*res.replay), res.ageMicros, time.Now())
	switch {
	case rs.maxLag > 0 && !known:
		rs.setOut(r, outLagging, "lagging: behind the writer's last "+fmt.Sprint(writerSamples)+" positions and no replay timestamp", lag)
	case rs.maxLag > 0 && lag > rs.maxLag:
		rs.setOut(r, outLagging, fmt.Sprintf("lagging %s behind the writer (DB_READ_MAX_LAG %s)", lag.Round(time.Millisecond), rs.maxLag), lag)
	default:
		rs.setIn(r, lag)
	}
}

// lagOf estimates how far behind the writer a replica that replayed up to
// replay is, as an upper bound: 0 when it has replayed everything the
// writer had flushed at its latest sample; otherwise the smaller of the
// age of the last transaction it replayed (ageMicros) and the time since
// the latest sample it has reached. known is false when neither bounds it.
func (rs *replicaSet) lagOf(replay uint64, ageMicros *int64, now time.Time) (lag time.Duration, known bool) {
	samples := rs.writerSample.Load()
	if samples == nil || len(samples.ring) == 0 || replay >= samples.ring[len(samples.ring)-1].lsn {
		return 0, true
	}
	for i := len(samples.ring) - 1; i >= 0; i-- {
		if s := samples.ring[i]; s.lsn <= replay {
			lag, known = now.Sub(s.at), true
			break
		}
	}
	if ageMicros != nil {
		age := max(time.Duration(*ageMicros)*time.Microsecond, 0)
		if !known || age < lag {
			lag, known = age, true
		}
	}
	return lag, known
}

// setIn puts r in rotation.
func (rs *replicaSet) setIn(r *replica, lag time.Duration) {
	r.mu.Lock()
	changed := r.state != ReplicaInRotation
	r.state, r.why, r.reason, r.lag, r.last = ReplicaInRotation, outNone, "", lag, time.Now()
	r.mu.Unlock()
	r.setUsable(!r.suspect.Load())
	if changed {
		rs.log.Info("Read replica in rotation", slog.String("replica", r.addr), slog.Duration("lag", lag.Round(time.Millisecond)))
	}
}

// setOut takes r out of rotation for why (described by reason).
func (rs *replicaSet) setOut(r *replica, why outReason, reason string, lag time.Duration) {
	r.setUsable(false) // first: no read picks it from now on
	r.mu.Lock()
	changed := r.state != ReplicaOutOfRotation || r.why != why
	r.state, r.why, r.reason, r.lag = ReplicaOutOfRotation, why, reason, lag
	if why != outUnreachable {
		r.last = time.Now()
	}
	r.mu.Unlock()
	if changed {
		rs.log.Warn("Read replica out of rotation", slog.String("replica", r.addr), slog.String("reason", reason))
	}
}

// suspectRead takes r out of the reads' choice at once after a read on it
// failed for want of a connection, and asks for a check; the check puts it
// back if it answers, or out of rotation after the second failure.
func (r *replica) suspectRead() {
	r.suspect.Store(true)
	r.setUsable(false)
	r.checkNow()
}

// learnWriter samples the writer's WAL position once a second (for the
// lag rule), and at once when the read-your-writes position became
// unknown, which the sample then covers.
func (rs *replicaSet) learnWriter(ctx context.Context) {
	defer rs.wg.Done()
	every(ctx, rs.pos.Wake(), func() time.Duration {
		gen, due := rs.pos.Pending()
		insert, flush, err := rs.sampleWriter(ctx)
		switch {
		case err == nil:
			rs.addSample(walSample{lsn: flush, at: time.Now()})
			if due {
				rs.pos.LearnedAt(gen, insert)
			}
		case due:
			return replicaRecheckAfter
		}
		return replicaCheckInterval
	})
}

// sampleWriter reads the writer's inserted and flushed WAL positions.
func (rs *replicaSet) sampleWriter(ctx context.Context) (insert, flush uint64, err error) {
	cctx, cancel := context.WithTimeout(ctx, rs.checkTimeout)
	defer cancel()
	conn, err := acquireConn(cctx, rs.writer, 0)
	if err != nil {
		return 0, 0, err
	}
	defer conn.Release()
	row, err := queryRowText(cctx, conn.Conn().PgConn(), sqlWriterSample, 2)
	if err != nil {
		return 0, 0, err
	}
	i, err := parseInt8Text(row[0])
	if err != nil || i == nil {
		return 0, 0, fmt.Errorf("dbmanager: no WAL insert position: %w", err)
	}
	f, err := parseInt8Text(row[1])
	if err != nil || f == nil {
		return 0, 0, fmt.Errorf("dbmanager: no WAL flush position: %w", err)
	}
	return uint64(*i), uint64(*f), nil
}

// walSamples is the writer's recent positions, oldest first.
type walSamples struct{ ring []walSample }

// addSample appends s, keeping the last writerSamples.
func (rs *replicaSet) addSample(s walSample) {
	var ring []walSample
	if old := rs.writerSample.Load(); old != nil {
		ring = append(ring, old.ring...)
	}
	ring = append(ring, s)
	if len(ring) > writerSamples {
		ring = ring[len(ring)-writerSamples:]
	}
	rs.writerSample.Store(&walSamples{ring: ring})
}

package dbmanager

import (
	"testing"
	"time"

	"github.com/gatewaykit/dbmanager/internal/pgtest"
	"github.com/gatewaykit/dbmanager/internal/walpos"
	"github.com/jackc/pgx/v5"
)

// These two tests show, on the delayed standby, the PostgreSQL facts that
// decide how the Store learns and checks WAL positions (pgpipe.Run).

// trapTable makes a table on the primary that every standby has.
func trapTable(t *testing.T, c *pgtest.Cluster) (db string, primary, delayed *pgx.Conn) {
	t.Helper()
	db = c.Database(t)
	primary = connectNode(t, c, c.Primary(), db)
	if _, err := primary.Exec(t.Context(), `CREATE TABLE trap (id int PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	c.WaitCaughtUp(t)
	return db, primary, connectNode(t, c, c.Nodes()[2], db)
}

func replayPosition(t *testing.T, conn *pgx.Conn) int64 {
	t.Helper()
	var lsn int64
	if err := conn.QueryRow(t.Context(), walpos.ReplayPositionSQL).Scan(&lsn); err != nil {
		t.Fatal(err)
	}
	return lsn
}

// testPositionInReturningIsBeforeCommit: pg_current_wal_insert_lsn() in
// a write's RETURNING list is the position before the commit record. The
// delayed standby replays up to it at once and then waits 1 s before the
// commit: a replica checked against that position would serve a read
// that misses the row. The position read after the commit is past it.
func testPositionInReturningIsBeforeCommit(t *testing.T, c *pgtest.Cluster) {
	_, primary, delayed := trapTable(t, c)
	ctx := t.Context()
	// One attempt; inconclusive when the machine was too slow for the
	// 1 s delay to hold (then it is tried again, at most 3 times).
	attempt := func(id int) (shown bool, why string) {
		var inReturning, afterCommit int64
		if err := primary.QueryRow(ctx, `INSERT INTO trap VALUES ($1) RETURNING (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::int8`, id).Scan(&inReturning); err != nil {
			t.Fatal(err)
		}
		if err := primary.QueryRow(ctx, walpos.WriterPositionSQL).Scan(&afterCommit); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(900 * time.Millisecond)
		for replayPosition(t, delayed) < inReturning {
			if time.Now().After(deadline) {
				return false, "the standby did not reach the RETURNING position within 0.9 s"
			}
			time.Sleep(5 * time.Millisecond)
		}
		var n int
		if err := delayed.QueryRow(ctx, `SELECT count(*) FROM trap WHERE id = $1`, id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		replay := replayPosition(t, delayed)
		t.Logf("RETURNING position %d, after commit %d; the standby replayed %d and sees %d rows", inReturning, afterCommit, replay, n)
		eventually(t, 10*time.Second, "the delayed standby to replay the commit", func() bool {
			return replayPosition(t, delayed) >= afterCommit
		})
		var after int
		if err := delayed.QueryRow(ctx, `SELECT count(*) FROM trap WHERE id = $1`, id).Scan(&after); err != nil || after != 1 {
			t.Fatalf("at the position after the commit the row is not visible: %d rows, %v", after, err)
		}
		if n != 0 || replay >= afterCommit {
			return false, "the standby had already replayed the commit"
		}
		return true, ""
	}
	for id := 1; id <= 3; id++ {
		shown, why := attempt(id)
		if shown {
			return
		}
		t.Logf("attempt %d inconclusive: %s", id, why)
	}
	t.Fatal("3 attempts inconclusive: the machine is too slow for a 1 s apply delay to show the trap")
}

// testReplayCheckInsideReadIsTooLate: pg_last_wal_replay_lsn() in the
// read's own statement is evaluated after the statement's snapshot was
// taken. Here the read starts before the commit is replayed, the check
// (after a sleep) finds the commit replayed, and the read still misses
// the row: the check must run before the read, as a statement of its own.
func testReplayCheckInsideReadIsTooLate(t *testing.T, c *pgtest.Cluster) {
	_, primary, delayed := trapTable(t, c)
	ctx := t.Context()
	for id := 1; id <= 3; id++ {
		if _, err := primary.Exec(ctx, `INSERT INTO trap VALUES ($1)`, id); err != nil {
			t.Fatal(err)
		}
		var afterCommit int64
		if err := primary.QueryRow(ctx, walpos.WriterPositionSQL).Scan(&afterCommit); err != nil {
			t.Fatal(err)
		}
		var rows int
		var caughtUp bool
		err := delayed.QueryRow(ctx, `SELECT (SELECT count(*) FROM trap WHERE id = $3)::int, pg_sleep($2),
			(pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::int8 >= $1`, afterCommit, (replicaApplyDelay+1500*time.Millisecond).Seconds(), id).
			Scan(&rows, nil, &caughtUp)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("in one statement: %d rows, replayed past the commit: %v", rows, caughtUp)
		if rows == 0 && caughtUp {
			return
		}
		t.Logf("attempt %d inconclusive: the timing did not hold", id)
	}
	t.Fatal("3 attempts inconclusive: the machine is too slow for a 1 s apply delay to show the trap")
}

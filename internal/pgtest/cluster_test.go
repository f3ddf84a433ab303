package pgtest

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// rowsIn counts the rows of table t in database db on node s.
func rowsIn(t *testing.T, c *Cluster, s *Server, db, table string) int {
	t.Helper()
	return count(t, connect(t, c.NodeURL(s, db)), "SELECT count(*) FROM "+table)
}

func TestClusterReplicates(t *testing.T) {
	localEnvironment() // initdb of the pristine cluster, once per test binary: not part of the timing
	start := time.Now()
	c := NewCluster(t, WithStandbys(2))
	t.Logf("NewCluster with 2 standbys: %v", time.Since(start))

	nodes := c.Nodes()
	if len(nodes) != 3 || c.Primary() != nodes[0] || !slices.Equal(c.Standbys(), nodes[1:]) {
		t.Fatalf("roles: nodes %d, primary %s, standbys %d", len(nodes), c.Primary().Name(), len(c.Standbys()))
	}
	for i, n := range nodes {
		if want := nodeName(i); n.Name() != want {
			t.Errorf("node %d is named %q, want %q", i, n.Name(), want)
		}
		if got := n.InRecovery(t); got != (i > 0) {
			t.Errorf("%s: in recovery = %v", n.Name(), got)
		}
	}

	start = time.Now()
	db := c.Database(t)
	t.Logf("Cluster.Database: %v", time.Since(start))
	p := connect(t, c.NodeURL(c.Primary(), db))
	mustExec(t, p, "CREATE TABLE kv (k text PRIMARY KEY)")
	mustExec(t, p, "INSERT INTO kv VALUES ('a'), ('b')")
	c.WaitCaughtUp(t)
	for _, s := range c.Standbys() {
		if n := rowsIn(t, c, s, db, "kv"); n != 2 {
			t.Errorf("%s sees %d rows, want 2", s.Name(), n)
		}
		var app string
		if err := c.Primary().queryRow("SELECT application_name FROM pg_stat_replication WHERE application_name = $1",
			[]any{s.Name()}, &app); err != nil {
			t.Errorf("%s not in the primary's pg_stat_replication: %v", s.Name(), err)
		}
	}

	// A multi-host URL reaches the first node that answers; with
	// target_session_attrs it picks the writer wherever it is listed.
	url := c.MultiHostURL(db, nodes[2], nodes[1], nodes[0]) + "&target_session_attrs=read-write"
	w := connect(t, url)
	if got := w.PgConn().Conn().RemoteAddr().String(); got != c.Primary().host.admin.Host {
		t.Errorf("read-write multi-host URL connected to %s, want the primary %s", got, c.Primary().host.admin.Host)
	}
}

func TestClusterSynchronousStandby(t *testing.T) {
	c := NewCluster(t, WithStandbys(2), WithSynchronousStandby())
	sync, async := c.Standbys()[0], c.Standbys()[1]
	states := map[string]string{}
	err := c.Primary().host.exec(func(ctx context.Context, conn *pgx.Conn) error {
		rows, err := conn.Query(ctx, "SELECT application_name, sync_state FROM pg_stat_replication")
		if err != nil {
			return err
		}
		for rows.Next() {
			var app, state string
			if err := rows.Scan(&app, &state); err != nil {
				return err
			}
			states[app] = state
		}
		return rows.Err()
	}, true)
	if err != nil {
		t.Fatal(err)
	}
	if states[sync.Name()] != "sync" || states[async.Name()] != "async" {
		t.Fatalf("sync_state = %v, want %s sync and %s async", states, sync.Name(), async.Name())
	}

	// With the synchronous standby down, a commit on the primary waits.
	db := c.Database(t)
	p := connect(t, c.NodeURL(c.Primary(), db))
	mustExec(t, p, "CREATE TABLE kv (k text PRIMARY KEY)")
	sync.Stop(t)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err = p.Exec(ctx, "INSERT INTO kv VALUES ('waits')")
	if err == nil {
		t.Fatal("commit returned while the synchronous standby was down")
	}
	sync.Start(t)
	if err := c.waitSync(c.Primary(), sync); err != nil {
		t.Fatal(err)
	}
	c.WaitCaughtUp(t)
	// The cancelled commit was already local; the standby has it now.
	if n := rowsIn(t, c, sync, db, "kv"); n != 1 {
		t.Fatalf("synchronous standby has %d rows after restart, want 1", n)
	}
}

func TestClusterApplyDelay(t *testing.T) {
	const delay = 2 * time.Second
	c := NewCluster(t, WithStandbys(1), WithApplyDelay(0, delay))
	db := c.Database(t) // waits for the delayed standby
	s := connect(t, c.NodeURL(c.Standbys()[0], db))

	p := connect(t, c.NodeURL(c.Primary(), db))
	// The standby applies the commit delay after its timestamp, which is
	// after committed: both checks below are exact, not timing guesses.
	committed := time.Now()
	mustExec(t, p, "CREATE TABLE kv (k text PRIMARY KEY); INSERT INTO kv VALUES ('late')")
	var there bool
	if err := s.QueryRow(context.Background(), "SELECT to_regclass('kv') IS NOT NULL").Scan(&there); err != nil {
		t.Fatal(err)
	}
	if elapsed := time.Since(committed); there && elapsed < delay {
		t.Fatalf("commit visible on the delayed standby %v after it was made", elapsed)
	}
	c.WaitCaughtUp(t)
	if n := count(t, s, "SELECT count(*) FROM kv"); n != 1 {
		t.Fatalf("delayed standby has %d rows after WaitCaughtUp, want 1", n)
	}
	if elapsed := time.Since(committed); elapsed < delay {
		t.Fatalf("WaitCaughtUp returned %v after the commit, before the %v apply delay", elapsed, delay)
	}
}

func TestClusterPromoteAndFollow(t *testing.T) {
	c := NewCluster(t, WithStandbys(2))
	old, next, other := c.Nodes()[0], c.Nodes()[1], c.Nodes()[2]
	db := c.Database(t)
	mustExec(t, connect(t, c.NodeURL(old, db)), "CREATE TABLE kv (k text PRIMARY KEY)")
	c.WaitCaughtUp(t)

	old.Kill(t)
	start := time.Now()
	c.Promote(t, next)
	t.Logf("Promote (with one standby re-pointed): %v", time.Since(start))
	if c.Primary() != next || !slices.Equal(c.Standbys(), []*Server{old, other}) {
		t.Fatalf("after Promote: primary %s, standbys %d", c.Primary().Name(), len(c.Standbys()))
	}
	if next.InRecovery(t) {
		t.Fatal("promoted node is still in recovery")
	}
	mustExec(t, connect(t, c.NodeURL(next, db)), "INSERT INTO kv VALUES ('after')")
	c.WaitCaughtUp(t)
	if n := rowsIn(t, c, other, db, "kv"); n != 1 {
		t.Fatalf("%s has %d rows written on the new primary, want 1", other.Name(), n)
	}
	if err := c.waitStreaming(next, other); err != nil {
		t.Fatal(err)
	}
}

func TestFenceAndUnfence(t *testing.T) {
	s := NewServer(t)
	dsn := s.URL(t)
	open := connect(t, dsn)
	mustExec(t, open, "CREATE TABLE kv (k text PRIMARY KEY)")

	s.Fence(t)
	for name, c := range map[string]*pgx.Conn{"new session": connect(t, dsn), "open session": open} {
		_, err := c.Exec(context.Background(), "INSERT INTO kv VALUES ($1)", name)
		if pgErr := (*pgconn.PgError)(nil); !errors.As(err, &pgErr) || pgErr.Code != "25006" {
			t.Errorf("%s: write on a fenced node: %v, want SQLSTATE 25006", name, err)
		}
		if n := count(t, c, "SELECT count(*) FROM kv"); n != 0 {
			t.Errorf("%s: read on a fenced node: %d rows", name, n)
		}
	}
	if s.InRecovery(t) {
		t.Error("a fenced node says it is in recovery")
	}
	s.URL(t) // pgtest's own bookkeeping ignores the fence (dropped at the end while fenced)

	s.Unfence(t)
	mustExec(t, connect(t, dsn), "INSERT INTO kv VALUES ('x')")
	mustExec(t, open, "INSERT INTO kv VALUES ('y')")
	s.Fence(t) // left fenced: cleanup must still drop the databases
}

func TestClusterKillPromoteRebuild(t *testing.T) {
	c := NewCluster(t, WithStandbys(1), WithSynchronousStandby())
	old, next := c.Nodes()[0], c.Nodes()[1]
	db := c.Database(t)
	p := connect(t, c.NodeURL(old, db))
	mustExec(t, p, "CREATE TABLE kv (k int PRIMARY KEY)")
	mustExec(t, p, "INSERT INTO kv SELECT generate_series(1, 100)")

	old.Kill(t)
	c.Promote(t, next)
	// Synchronous: every commit acknowledged by the old primary is there.
	if n := rowsIn(t, c, next, db, "kv"); n != 100 {
		t.Fatalf("promoted synchronous standby has %d rows, want 100", n)
	}
	mustExec(t, connect(t, c.NodeURL(next, db)), "INSERT INTO kv SELECT generate_series(101, 150)")

	start := time.Now()
	c.Rebuild(t, old)
	t.Logf("Rebuild of the killed old primary: %v", time.Since(start))
	if !old.InRecovery(t) {
		t.Fatal("rebuilt old primary is not a standby")
	}
	mustExec(t, connect(t, c.NodeURL(next, db)), "INSERT INTO kv SELECT generate_series(151, 160)")
	c.WaitCaughtUp(t)
	if n := rowsIn(t, c, old, db, "kv"); n != 160 {
		t.Fatalf("rebuilt old primary has %d rows, want 160", n)
	}
}

func TestClusterFenceFlipRebuildRunningPrimary(t *testing.T) {
	c := NewCluster(t, WithStandbys(2))
	old, next, other := c.Nodes()[0], c.Nodes()[1], c.Nodes()[2]
	db := c.Database(t)
	mustExec(t, connect(t, c.NodeURL(old, db)), "CREATE TABLE kv (k text PRIMARY KEY)")
	c.WaitCaughtUp(t)

	// The writer flip: the old writer turns read-only and stays up, a
	// standby takes over, the other standby follows it.
	old.Fence(t)
	c.Promote(t, next)
	mustExec(t, connect(t, c.NodeURL(next, db)), "INSERT INTO kv VALUES ('new writer')")
	c.WaitCaughtUp(t) // skips old: still a (fenced) primary, not a standby
	if n := rowsIn(t, c, other, db, "kv"); n != 1 {
		t.Fatalf("%s has %d rows, want 1", other.Name(), n)
	}

	start := time.Now()
	c.Rebuild(t, old) // running: stopped, rewound, started as a standby
	t.Logf("Rebuild of the running old primary: %v", time.Since(start))
	c.WaitCaughtUp(t)
	if !old.InRecovery(t) {
		t.Fatal("rebuilt old primary is not a standby")
	}
	if n := rowsIn(t, c, old, db, "kv"); n != 1 {
		t.Fatalf("rebuilt old primary has %d rows, want 1", n)
	}

	// And back: the rebuilt node can be promoted again.
	c.Promote(t, old)
	mustExec(t, connect(t, c.NodeURL(old, db)), "INSERT INTO kv VALUES ('back')")
	c.WaitCaughtUp(t)
	if n := rowsIn(t, c, other, db, "kv"); n != 2 {
		t.Fatalf("%s has %d rows after the second promotion, want 2", other.Name(), n)
	}
}

package dbmanager

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatewaykit/dbmanager/internal/faultproxy"
	"github.com/gatewaykit/dbmanager/internal/pgtest"
	"go.uber.org/goleak"
)

// testReadFromWriterAndReadPool: ReadFromWriter sends a read to the
// writer however caught up the replicas are; ReadPool hands out a
// replica's pool only when that replica has replayed the latest write.
func testReadFromWriterAndReadPool(t *testing.T, c *pgtest.Cluster) {
	db := c.Database(t)
	m, _ := newReplicaManager(t, replicaEnv(c, db))
	s := m.Store()
	ctx := t.Context()
	if _, err := s.Put(ctx, "c", "k", []byte(`{"v":1}`)); err != nil {
		t.Fatal(err)
	}
	c.WaitCaughtUp(t)
	waitInRotation(t, m, 2, 10*time.Second)
	eventually(t, 5*time.Second, "a replica known to have replayed the write", func() bool {
		_, err := s.Get(ctx, "c", "k")
		return err == nil && m.primaryReplicas().poolFor() != nil
	})
	before := m.Info()
	for range 20 {
		if _, err := s.Get(ReadFromWriter(ctx), "c", "k"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.List(ReadFromWriter(ctx), "c", ListOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	after := m.Info()
	if after.ReadsFromPrimary-before.ReadsFromPrimary != 40 || after.Replicas[0].Reads+after.Replicas[1].Reads != before.Replicas[0].Reads+before.Replicas[1].Reads {
		t.Fatalf("ReadFromWriter: %d more reads on the primary, replicas %+v -> %+v", after.ReadsFromPrimary-before.ReadsFromPrimary, before.Replicas, after.Replicas)
	}

	onReplica := func() (bool, int) {
		p, ok := m.ReadPool()
		if !ok {
			t.Fatal("ReadPool: not on PostgreSQL")
		}
		var standby bool
		var n int
		if err := p.QueryRow(ctx, `SELECT pg_is_in_recovery(), (SELECT count(*) FROM dbmanager.records WHERE key = 'k2')::int`).Scan(&standby, &n); err != nil {
			t.Fatal(err)
		}
		return standby, n
	}
	if standby, _ := onReplica(); !standby {
		t.Fatal("ReadPool gave the writer with every replica caught up")
	}
	if _, err := s.Put(ctx, "c", "k2", []byte(`{"v":2}`)); err != nil {
		t.Fatal(err)
	}
	for range 50 { // whichever pool it hands out has the write
		if _, n := onReplica(); n != 1 {
			t.Fatal("ReadPool gave a replica that has not replayed the latest write")
		}
	}
	eventually(t, 5*time.Second, "ReadPool to give a replica again", func() bool {
		standby, _ := onReplica()
		return standby
	})
}

// testStatementsPerCall: without read configuration a Put is one
// statement and nothing watches replicas; with it, a Put adds the
// position query in the same round trip.
func testStatementsPerCall(t *testing.T, c *pgtest.Cluster) {
	db := c.Database(t)
	var statements func() int
	count := func(env []string) (puts, gets int, m *Manager) {
		m, logs := newReplicaManager(t, append(env, "SQL_ECHO", "true"))
		statements = func() int { return strings.Count(logs.String(), "msg=sql ") }
		start := statements() // the migration's
		if _, err := m.Store().Put(t.Context(), "c", "k", []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
		puts = statements() - start
		if _, err := m.Store().Get(ReadFromWriter(t.Context()), "c", "k"); err != nil {
			t.Fatal(err)
		}
		gets = statements() - start - puts
		return puts, gets, m
	}
	puts, gets, m := count([]string{"DATABASE_URL", c.NodeURL(c.Primary(), db)})
	if puts != 1 || gets != 1 || m.primaryReplicas() != nil || m.Info().Replicas != nil {
		t.Fatalf("without replicas: %d statements per Put, %d per Get, replicas %v", puts, gets, m.primaryReplicas())
	}
	puts, gets, m = count(replicaEnv(c, db))
	if puts != 2 || gets != 1 || m.primaryReplicas() == nil {
		t.Fatalf("with replicas: %d statements per Put, %d per Get (from the writer)", puts, gets)
	}
	// The checks are not the application's statements: SQL_ECHO is quiet
	// about them.
	waitInRotation(t, m, 2, 10*time.Second)
	before := statements()
	time.Sleep(1500 * time.Millisecond)
	if n := statements() - before; n != 0 {
		t.Fatalf("SQL_ECHO logged %d statements of the replica checks", n)
	}
}

// testNotUsedDuringFallback: a Manager whose primary is
// unreachable at start-up serves from memory and uses no replica; when
// the primary answers, the records written to memory are moved, and the
// reads right after the move see them.
func testNotUsedDuringFallback(t *testing.T, c *pgtest.Cluster) {
	db := c.Database(t)
	proxy := faultproxy.New(t, nodeAddr(c.Primary()))
	proxy.Refuse()
	host, port, _ := net.SplitHostPort(proxy.Addr())
	writer := strings.Replace(c.NodeURL(c.Primary(), db), nodeAddr(c.Primary()), net.JoinHostPort(host, port), 1)
	m, logs := newReplicaManager(t, []string{"DATABASE_URL", writer, "DATABASE_READ_URL", c.MultiHostURL(db, c.Standbys()...), "DB_CONNECT_TIMEOUT", "1"})
	if m.Info().UsingPrimary || m.Info().Replicas != nil || m.primaryReplicas() != nil {
		t.Fatalf("in memory with replicas: %+v", m.Info())
	}
	if _, ok := m.ReadPool(); ok {
		t.Fatal("ReadPool while serving from memory")
	}
	s := m.Store()
	const n = 50
	for i := range n {
		if _, err := s.Put(t.Context(), "c", "k"+strconv.Itoa(i), []byte(`{"from":"memory"}`)); err != nil {
			t.Fatal(err)
		}
	}
	proxy.Heal()
	eventually(t, 30*time.Second, "the move back to the primary", func() bool { return m.Info().UsingPrimary })
	for i := range n {
		if _, err := s.Get(t.Context(), "c", "k"+strconv.Itoa(i)); err != nil {
			t.Fatalf("Get k%d right after the move: %v\n%s", i, err, logs)
		}
	}
	waitInRotation(t, m, 2, 10*time.Second)
	c.WaitCaughtUp(t)
	eventually(t, 10*time.Second, "reads served by replicas after the move", func() bool {
		for i := range n {
			if _, err := s.Get(t.Context(), "c", "k"+strconv.Itoa(i)); err != nil {
				t.Fatalf("Get k%d: %v", i, err)
			}
		}
		info := m.Info()
		return info.Replicas[0].Reads+info.Replicas[1].Reads > 0
	})
	assertLogged(t, logs, "Primary database recovered", `msg="Read replica in rotation"`)
}

// testCloseLeavesNothing: Close stops every check and closes every
// replica pool.
func testCloseLeavesNothing(t *testing.T, c *pgtest.Cluster) {
	db := c.Database(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	m := New(envConfig(t, replicaEnv(c, db)...), WithLogger(discardLogger()))
	if err := m.Init(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitInRotation(t, m, 2, 10*time.Second)
	rs := m.primaryReplicas()
	if _, err := m.Store().Get(t.Context(), "c", "missing"); err == nil {
		t.Fatal("found a missing key")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for _, r := range rs.replicas {
		if st := r.pool.Stat(); st.TotalConns() != 0 {
			t.Errorf("replica %s pool still has %d connections", r.addr, st.TotalConns())
		}
	}
}

// testUpdateAfterAnotherProcessWrote: another process's write is not
// covered by this process's position, so the first read of an Update may
// come from a replica that lacks it; the conditional write then fails,
// and that failure raises the position, so the retry reads the newer
// version (here the only replica is 1 s behind and would serve the old
// one for a second: without that rule every retry would conflict).
func testUpdateAfterAnotherProcessWrote(t *testing.T, c *pgtest.Cluster) {
	type counter struct{ N int }
	delayed := c.Nodes()[2]
	db := c.Database(t)
	m, logs := newReplicaManager(t, append(replicaEnv(c, db, delayed), "DB_READ_MAX_LAG", "-1"))
	other, _ := newReplicaManager(t, []string{"DATABASE_URL", c.NodeURL(c.Primary(), db)})
	ctx := t.Context()
	mine := NewCollection[counter](m.Store(), "counters")
	theirs := NewCollection[counter](other.Store(), "counters")
	if _, err := mine.Put(ctx, "k", counter{N: 1}); err != nil {
		t.Fatal(err)
	}
	c.WaitCaughtUp(t)
	waitInRotation(t, m, 1, 10*time.Second)
	eventually(t, 5*time.Second, "the replica known to have the first version", func() bool {
		return m.primaryReplicas().poolFor() != nil
	})
	if _, err := theirs.Put(ctx, "k", counter{N: 10}); err != nil { // version 2, on the writer only for now
		t.Fatal(err)
	}
	reads := m.Info().Replicas[0].Reads
	doc, err := mine.Update(ctx, "k", func(c *counter) error { c.N++; return nil })
	if err != nil {
		t.Fatalf("Update: %v\n%s", err, logs)
	}
	if doc.Value.N != 11 || doc.Version != 3 {
		t.Fatalf("Update built on a stale read: %+v (version %d), want N=11 version 3", doc.Value, doc.Version)
	}
	t.Logf("Update: %+v version %d; reads on the replica during it: %d", doc.Value, doc.Version, m.Info().Replicas[0].Reads-reads)
}

package dbmanager

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestReplicaFailover: the writer dies and a replica is promoted. The
// promoted node leaves the read rotation (it is the writer now), the
// Manager writes to it (its multi-host DATABASE_URL follows the writer),
// and reads see those writes.
func TestReplicaFailover(t *testing.T) {
	c := newReplicaCluster(t)
	db := c.Database(t)
	old, promoted, other := c.Nodes()[0], c.Nodes()[1], c.Nodes()[2]
	m, logs := newReplicaManager(t, []string{
		"DATABASE_URL", c.MultiHostURL(db), // every node; the pool follows the writer
		"DATABASE_READ_URL", c.MultiHostURL(db, promoted, other),
		"DB_CONNECT_TIMEOUT", "3",
	})
	s := m.Store()
	ctx := t.Context()
	if _, err := s.Put(ctx, "c", "before", []byte(`{"v":1}`)); err != nil {
		t.Fatal(err)
	}
	c.WaitCaughtUp(t)
	waitInRotation(t, m, 2, 10*time.Second)

	old.Kill(t)
	c.Promote(t, promoted)
	promotedAt := time.Now()
	out := eventually(t, 10*time.Second, "the promoted node out of the read rotation", func() bool {
		st, reason := replicaState(m, nodeAddr(promoted))
		return st == ReplicaOutOfRotation && strings.Contains(reason, "writer")
	})
	_, reason := replicaState(m, nodeAddr(promoted))

	// Writes reach the new writer once the pool has dropped the dead
	// connections to the old one.
	var wrote time.Duration
	var lastErr error
	for {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, lastErr = s.Put(wctx, "c", "after", []byte(`{"v":2}`))
		cancel()
		if lastErr == nil {
			wrote = time.Since(promotedAt)
			break
		}
		if time.Since(promotedAt) > 30*time.Second {
			t.Fatalf("no write reached the promoted node within 30 s: %v", lastErr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	conn := connectNode(t, c, promoted, db)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM dbmanager.records WHERE key = 'after' AND NOT pg_is_in_recovery()`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("the write is not on the promoted writer: %d rows, %v", n, err)
	}
	for _, key := range []string{"before", "after"} {
		if _, err := s.Get(ctx, "c", key); err != nil {
			t.Fatalf("Get %s after the failover: %v", key, err)
		}
	}
	back := eventually(t, 20*time.Second, "the other replica in rotation on the new writer", func() bool {
		st, _ := replicaState(m, nodeAddr(other))
		return st == ReplicaInRotation
	})
	t.Logf("promoted %s: out of the read rotation after %s (%s); first write on it %s after the promotion; %s in rotation after %s more; info %+v",
		promoted.Name(), out.Round(time.Millisecond), reason, wrote.Round(time.Millisecond), other.Name(), back.Round(time.Millisecond), m.Info().Replicas)
	assertLogged(t, logs, `msg="Read replica out of rotation" replica=`+nodeAddr(promoted))
}

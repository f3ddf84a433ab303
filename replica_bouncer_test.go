package dbmanager

import (
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatewaykit/dbmanager/internal/pgtest"
)

// testBehindPgBouncer: the writer and a replica each behind a
// PgBouncer in transaction pooling, with fewer server connections than
// callers. The pipelines (a write and its position; a replay check and a
// read) keep working and stay exact, with the defaults: 16 goroutines of
// write-then-read cycles see no error and no stale read, and once caught
// up the replica serves reads.
func testBehindPgBouncer(t *testing.T, c *pgtest.Cluster) {
	db := c.Database(t)
	replica := c.Nodes()[1]
	wb := pgtest.NewPgBouncer(t, nodeAddr(c.Primary()), pgtest.WithBouncerPoolSize(3))
	rb := pgtest.NewPgBouncer(t, nodeAddr(replica), pgtest.WithBouncerPoolSize(3))
	m, logs := newReplicaManager(t, []string{
		"DATABASE_URL", wb.URL(c.NodeURL(c.Primary(), db)),
		"DATABASE_READ_URL", rb.URL(c.NodeURL(replica, db)),
	})
	waitInRotation(t, m, 1, 10*time.Second)
	s := m.Store()
	ctx := t.Context()
	const workers, cycles = 16, 25
	var failed, stale atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range cycles {
				key := fmt.Sprintf("w%d", w)
				want := fmt.Sprintf(`{"i":%d}`, i)
				if _, err := s.Put(ctx, "c", key, []byte(want)); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				got, err := s.Get(ctx, "c", key)
				switch {
				case err != nil:
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				case string(got.Value) != want:
					stale.Add(1)
				}
			}
		})
	}
	wg.Wait()
	c.WaitCaughtUp(t)
	eventually(t, 5*time.Second, "reads on the replica behind PgBouncer", func() bool {
		for w := range workers {
			if _, err := s.Get(ctx, "c", "w"+strconv.Itoa(w)); err != nil {
				t.Fatal(err)
			}
		}
		return m.Info().Replicas[0].Reads > 0
	})
	info := m.Info()
	t.Logf("%d write-then-read cycles through PgBouncer: %d failed, %d stale; replica %+v (unnamed statements: %v), %d reads on the primary",
		workers*cycles, failed.Load(), stale.Load(), info.Replicas, m.primaryReplicas().replicas[0].unnamed.Load(), info.ReadsFromPrimary)
	if failed.Load()+stale.Load() > 0 {
		t.Fatalf("%d failed (first: %v), %d stale; log:\n%s", failed.Load(), firstErr.Load(), stale.Load(), logs)
	}
	if !m.primaryReplicas().replicas[0].unnamed.Load() {
		t.Error("the replica's PgBouncer was not noticed")
	}
}

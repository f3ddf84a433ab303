package dbmanager

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gatewaykit/dbmanager/internal/pgtest"
)

// testMetrics: each replica reports its state, lag and reads, the reads
// the writer served are counted, each replica's pool has metrics under
// its own name, and after Close nothing is reported any more.
func testMetrics(t *testing.T, c *pgtest.Cluster) {
	db := c.Database(t)
	h := newOTelHarness(t)
	m, _ := newReplicaManager(t, replicaEnv(c, db), h.options()...)
	s := m.Store()
	ctx := t.Context()
	if _, err := s.Put(ctx, "c", "k", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	c.WaitCaughtUp(t)
	waitInRotation(t, m, 2, 10*time.Second)
	for range 50 {
		if _, err := s.Get(ctx, "c", "k"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Get(ReadFromWriter(ctx), "c", "k"); err != nil {
		t.Fatal(err)
	}
	a, b := nodeAddr(c.Nodes()[1]), nodeAddr(c.Nodes()[2])
	rm := h.collect(t)
	for _, addr := range []string{a, b} {
		if v := sumWhere(rm, "dbmanager.replica.in_rotation", "dbmanager.replica="+addr); v != 1 {
			t.Errorf("in_rotation for %s = %v", addr, v)
		}
		if _, ok := metricNamed(rm, "dbmanager.replica.lag"); !ok {
			t.Error("no dbmanager.replica.lag")
		}
		if v := sumWhere(rm, "db.client.connection.max", "db.client.connection.pool.name="+addr+"/"+db); v == 0 {
			t.Errorf("no pool metrics for the replica %s", addr)
		}
	}
	onReplicas := sumWhere(rm, "dbmanager.replica.reads", "dbmanager.replica="+a) + sumWhere(rm, "dbmanager.replica.reads", "dbmanager.replica="+b)
	onPrimary := sumWhere(rm, "dbmanager.replica.reads", "dbmanager.replica=primary")
	info := m.Info()
	if onReplicas != float64(info.Replicas[0].Reads+info.Replicas[1].Reads) || onPrimary != float64(info.ReadsFromPrimary) || onPrimary < 1 || onReplicas < 1 {
		t.Errorf("dbmanager.replica.reads: replicas %v, primary %v; Info %+v, %d", onReplicas, onPrimary, info.Replicas, info.ReadsFromPrimary)
	}
	if strings.Contains(h.everyText(t), leakMarker) {
		t.Error("a metric shows the password marker")
	}
	closeCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.Close(closeCtx); err != nil {
		t.Fatal(err)
	}
	rm = h.collect(t)
	for _, name := range []string{"dbmanager.replica.in_rotation", "dbmanager.replica.lag", "dbmanager.replica.reads"} {
		if mt, ok := metricNamed(rm, name); ok && len(pointsOf(mt)) > 0 {
			t.Errorf("%s still reported after Close: %v", name, pointsOf(mt))
		}
	}
}

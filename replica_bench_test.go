package dbmanager

import (
	"context"
	"testing"
	"time"

	"github.com/gatewaykit/dbmanager/internal/pgtest"
)

// The read replica benchmarks run two Managers on one cluster side by
// side (sideBySide: rounds that alternate which goes first): one with
// only the writer, the baseline, and one that also reads from two
// streaming replicas. Everything runs on this machine, so the servers
// share its cores with each other and with the benchmark.
//
//	go test -run '^$' -bench 'Replica' -count 3 ./

// replicaBenchPoolSize is every pool's size in the replica benchmarks: as
// many connections as goroutines, as a service with 16 concurrent readers
// would configure, so that no pool opens connections (a SCRAM login each)
// during the rounds.
const replicaBenchPoolSize = "16"

// benchReplicaManagers returns a Manager on the writer only and one with
// both standbys as read replicas, on one database holding the bench keys,
// with every replica caught up and in rotation.
func benchReplicaManagers(b *testing.B) (writerOnly, withReplicas *Manager, keys []string) {
	b.Helper()
	c := pgtest.NewCluster(b, pgtest.WithStandbys(2))
	db := c.Database(b)
	open := func(env ...string) *Manager {
		cfg, err := LoadConfig(envOf(envMap(env)))
		if err != nil {
			b.Fatal(err)
		}
		m := New(cfg, WithLogger(discardLogger()))
		b.Cleanup(func() { _ = m.Close(context.Background()) })
		if err := m.Init(context.Background()); err != nil {
			b.Fatal(err)
		}
		return m
	}
	pool := []string{"DB_POOL_SIZE", replicaBenchPoolSize, "DB_MAX_OVERFLOW", "0"}
	writerOnly = open(append(pool, "DATABASE_URL", c.NodeURL(c.Primary(), db))...)
	withReplicas = open(append(pool, "DATABASE_URL", c.NodeURL(c.Primary(), db), "DATABASE_READ_URL", c.MultiHostURL(db, c.Standbys()...))...)
	keys = benchKeyNames(benchKeys)
	for _, k := range keys {
		if _, err := writerOnly.Store().Put(context.Background(), "bench", k, benchValue); err != nil {
			b.Fatal(err)
		}
	}
	c.WaitCaughtUp(b)
	deadline := time.Now().Add(15 * time.Second)
	for {
		rs := withReplicas.primaryReplicas()
		lsn, known := rs.pos.Current()
		ready := known
		for _, r := range rs.replicas {
			ready = ready && r.usable.Load() && r.replay.Load() >= lsn
		}
		if ready {
			return writerOnly, withReplicas, keys
		}
		if time.Now().After(deadline) {
			b.Fatalf("replicas not in rotation: %+v", withReplicas.Info().Replicas)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func envMap(kv []string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// BenchmarkReplicaReads: Get throughput with 16 goroutines, through the
// Manager, on the writer alone against the writer plus two replicas
// ("replicas-vs-writer" above 1: the replicas add read throughput). It
// also reports the share of the Gets the replicas served.
func BenchmarkReplicaReads(b *testing.B) {
	writerOnly, withReplicas, keys := benchReplicaManagers(b)
	stores := []Store{writerOnly.Store(), withReplicas.Store()}
	ctx := context.Background()
	sideBySide(b, []execModeCase{{name: "writer"}, {name: "replicas"}}, 16, func(m, i int) error {
		_, err := stores[m].Get(ctx, "bench", keys[i%len(keys)])
		return err
	})
	info := withReplicas.Info()
	served := info.Replicas[0].Reads + info.Replicas[1].Reads
	b.ReportMetric(100*float64(served)/float64(served+info.ReadsFromPrimary), "%on-replicas")
}

// BenchmarkReplicaPut: what learning each write's WAL position costs a
// Put (the position query pipelined after the write's commit), with 8
// goroutines: "tracked-vs-plain" below 1 is the slowdown.
func BenchmarkReplicaPut(b *testing.B) {
	writerOnly, withReplicas, keys := benchReplicaManagers(b)
	stores := []Store{writerOnly.Store(), withReplicas.Store()}
	ctx := context.Background()
	sideBySide(b, []execModeCase{{name: "plain"}, {name: "tracked"}}, 8, func(m, i int) error {
		_, err := stores[m].Put(ctx, "bench", keys[i%len(keys)], benchValue)
		return err
	})
}

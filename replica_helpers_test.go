package dbmanager

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/gatewaykit/dbmanager/internal/pgtest"
	"github.com/jackc/pgx/v5"
)

// replicaApplyDelay is the lag of the cluster's second standby (node2):
// it replays every commit that late, so that reads right after a write
// must not go there.
const replicaApplyDelay = time.Second

// newReplicaCluster starts a primary (node0) and two standbys: node1
// synchronous (commits wait for its flush, not its replay), node2
// replaying commits replicaApplyDelay late.
func newReplicaCluster(t testing.TB) *pgtest.Cluster {
	t.Helper()
	return pgtest.NewCluster(t, pgtest.WithStandbys(2), pgtest.WithSynchronousStandby(),
		pgtest.WithApplyDelay(1, replicaApplyDelay))
}

// replicaEnv is the environment of a Manager writing to c's primary and
// reading from replicas (every standby by default), in database db.
func replicaEnv(c *pgtest.Cluster, db string, replicas ...*pgtest.Server) []string {
	if len(replicas) == 0 {
		replicas = c.Standbys()
	}
	return []string{
		"DATABASE_URL", c.NodeURL(c.Primary(), db),
		"DATABASE_READ_URL", c.MultiHostURL(db, replicas...),
		"DB_CONNECT_TIMEOUT", "3",
	}
}

// newReplicaManager returns an initialised Manager on env (replicaEnv and
// more variables) with captured logs, closed when t ends.
func newReplicaManager(t *testing.T, env []string, opts ...Option) (*Manager, *logBuffer) {
	t.Helper()
	m, logs := newTestManager(t, envConfig(t, env...), opts...)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := m.Init(ctx); err != nil {
		t.Fatalf("Init: %v\n%s", err, logs)
	}
	return m, logs
}

// waitInRotation waits until n replicas are in rotation and the Store's
// read position is known.
func waitInRotation(t *testing.T, m *Manager, n int, within time.Duration) {
	t.Helper()
	eventually(t, within, fmt.Sprintf("%d replicas in rotation", n), func() bool {
		in := 0
		for _, ri := range m.Info().Replicas {
			if ri.State == ReplicaInRotation {
				in++
			}
		}
		_, known := m.primaryReplicas().pos.Current()
		return in >= n && known
	})
}

// primaryReplicas is the Manager's replica set (nil if none).
func (m *Manager) primaryReplicas() *replicaSet {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.primary == nil {
		return nil
	}
	return m.primary.replicas
}

// replicaState returns the state and reason Info shows for the replica
// at addr.
func replicaState(m *Manager, addr string) (state, reason string) {
	for _, ri := range m.Info().Replicas {
		if ri.Address == addr {
			return ri.State, ri.Reason
		}
	}
	return "", ""
}

// recordsScans returns how many scans of the store's records table node
// s has counted (pg_stat_user_tables: index and sequential scans), in
// database db. The counters are the server's own: a standby counts the
// queries it ran itself.
func recordsScans(t *testing.T, c *pgtest.Cluster, s *pgtest.Server, db string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn := dialNode(t, c, s, db)
	defer conn.Close(ctx)
	var n int64
	err := conn.QueryRow(ctx, `SELECT coalesce(sum(coalesce(idx_scan, 0) + coalesce(seq_scan, 0)), 0)::int8
		FROM pg_stat_user_tables WHERE schemaname = 'dbmanager' AND relname = 'records'`).Scan(&n)
	if err != nil {
		t.Fatalf("scans on %s: %v", s.Name(), err)
	}
	return n
}

// dialNode connects to database db on node s; the caller closes it.
func dialNode(t *testing.T, c *pgtest.Cluster, s *pgtest.Server, db string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.NodeURL(s, db))
	if err != nil {
		t.Fatalf("connect to %s: %v", s.Name(), err)
	}
	return conn
}

// connectNode is dialNode, closed when t ends.
func connectNode(t *testing.T, c *pgtest.Cluster, s *pgtest.Server, db string) *pgx.Conn {
	t.Helper()
	conn := dialNode(t, c, s, db)
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// longReplicaTests reports whether DBMANAGER_LONG_REPLICA_TESTS=1 asks for
// the long versions of the replica scenarios.
func longReplicaTests() bool { return os.Getenv("DBMANAGER_LONG_REPLICA_TESTS") == "1" }

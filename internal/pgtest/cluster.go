package pgtest

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Cluster is a PostgreSQL streaming-replication cluster from the local
// binaries: one primary and its hot standbys, each a [Server] of its own on
// 127.0.0.1 and a free port. Tests crash, fence and promote its nodes to
// play failovers. A Cluster is safe for concurrent use, but its methods
// that change the topology (Promote, Rebuild) must not run concurrently
// with each other.
//
// Every node runs with wal_level=replica, hot_standby=on,
// synchronous_commit=on, full_page_writes=on and wal_log_hints=on (so
// pg_rewind works), keeps 256 MB of WAL for standbys (wal_keep_size; no
// replication slots, so a promoted node needs no slot bookkeeping), and
// has cluster_name node0, node1, ... (in [Cluster.Nodes] order), which is
// also its application_name towards its primary. fsync stays off: data
// survives a Kill of the postgres processes, not of the machine.
//
// [Server.URL] on a standby fails (a standby cannot create a database):
// use [Cluster.Database] and [Cluster.NodeURL].
type Cluster struct {
	env      *localEnv
	cfg      clusterConfig
	password string

	nodes []*Server

	mu      sync.Mutex
	primary *Server
}

// ClusterOption configures a cluster made by [NewCluster].
type ClusterOption func(*clusterConfig)

type clusterConfig struct {
	standbys    int
	synchronous bool
	applyDelay  map[int]time.Duration
	settings    [][2]string
}

// WithStandbys sets how many standbys the cluster has (default 1; 0 is a
// lone primary that still has every replication setting).
func WithStandbys(n int) ClusterOption {
	return func(c *clusterConfig) { c.standbys = n }
}

// WithSynchronousStandby makes the first standby (node1) synchronous: the
// initial primary's synchronous_standby_names is 'node1', set on that
// node's command line only, so a promoted standby never waits for a
// standby of its own (its writes are asynchronous) and commits on the
// initial primary wait for node1's flush. [NewCluster] returns once node1
// is reported as sync.
func WithSynchronousStandby() ClusterOption {
	return func(c *clusterConfig) { c.synchronous = true }
}

// WithApplyDelay sets recovery_min_apply_delay to d on standby i (0-based
// among the standbys: 0 is node1), on its command line, so it replays
// commits d late. [Cluster.Database] and [Cluster.WaitCaughtUp] wait for
// it too, so they take at least d.
func WithApplyDelay(standby int, d time.Duration) ClusterOption {
	return func(c *clusterConfig) {
		if c.applyDelay == nil {
			c.applyDelay = make(map[int]time.Duration)
		}
		c.applyDelay[standby] = d
	}
}

// WithClusterSetting adds the postgresql.conf setting name = 'value' on
// every node (after pgtest's own settings, so it overrides them, except
// those pgtest sets on a node's command line: cluster_name,
// synchronous_standby_names, recovery_min_apply_delay).
func WithClusterSetting(name, value string) ClusterOption {
	return func(c *clusterConfig) { c.settings = append(c.settings, [2]string{name, value}) }
}

// clusterConf is appended to the primary's postgresql.conf; standbys get
// it through pg_basebackup.
const clusterConf = `
# pgtest cluster: streaming replication, pg_rewind-ready.
wal_level = replica
max_wal_senders = 20
max_replication_slots = 20
wal_keep_size = '256MB'
hot_standby = on
full_page_writes = on
wal_log_hints = on
synchronous_commit = on
wal_retrieve_retry_interval = '100ms'
wal_receiver_status_interval = '1s'
`

// NewCluster starts, from the local binaries, a primary and standbys made
// with pg_basebackup -R -X stream (run as the postgres OS user), each on a
// free 127.0.0.1 port, stopped and removed when t ends. It returns once
// every standby streams from the primary (and, with
// [WithSynchronousStandby], node1 is sync). Without local binaries it
// skips t, or fails it when DBMANAGER_REQUIRE_POSTGRES=1, like
// [NewServer].
func NewCluster(t testing.TB, opts ...ClusterOption) *Cluster {
	t.Helper()
	cfg := clusterConfig{standbys: 1}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.standbys < 0 {
		t.Fatalf("pgtest: NewCluster: %d standbys", cfg.standbys)
	}
	if cfg.synchronous && cfg.standbys == 0 {
		t.Fatalf("pgtest: NewCluster: WithSynchronousStandby needs a standby")
	}
	for i := range cfg.applyDelay {
		if i < 0 || i >= cfg.standbys {
			t.Fatalf("pgtest: NewCluster: WithApplyDelay(%d): there are %d standbys", i, cfg.standbys)
		}
	}
	env, err := localEnvironment()
	if err != nil {
		unavailable(t, fmt.Errorf("NewCluster needs the local PostgreSQL binaries (pg_basebackup, pg_rewind): %w", err))
	}
	for _, tool := range []string{"pg_basebackup", "pg_rewind"} {
		if !isExecutable(filepath.Join(env.binDir, tool)) {
			unavailable(t, fmt.Errorf("NewCluster needs %s in %s", tool, env.binDir))
		}
	}
	c := &Cluster{env: env, cfg: cfg, password: env.password}
	t.Cleanup(func() {
		for _, n := range c.nodes {
			if err := n.destroy(); err != nil {
				t.Errorf("pgtest: cluster %s: %v", n.name, err)
			}
		}
	})
	if err := c.startPrimary(); err != nil {
		t.Fatalf("pgtest: NewCluster: primary: %v", err)
	}
	standbys := make([]*Server, cfg.standbys)
	errs := make([]error, cfg.standbys)
	var wg sync.WaitGroup
	for i := range standbys {
		wg.Add(1)
		go func() { // joined below: no goroutine outlives NewCluster
			defer wg.Done()
			standbys[i], errs[i] = c.newStandby(i+1, c.primary)
		}()
	}
	wg.Wait()
	for i, s := range standbys {
		if s != nil {
			c.nodes = append(c.nodes, s)
		}
		if errs[i] != nil {
			t.Fatalf("pgtest: NewCluster: standby node%d: %v", i+1, errs[i])
		}
	}
	for _, s := range standbys {
		if err := c.waitStreaming(c.primary, s); err != nil {
			t.Fatalf("pgtest: NewCluster: %v", err)
		}
	}
	if cfg.synchronous {
		if err := c.waitSync(c.primary, standbys[0]); err != nil {
			t.Fatalf("pgtest: NewCluster: %v", err)
		}
	}
	return c
}

// startPrimary copies the pristine cluster into node0, configures it for
// replication and starts it.
func (c *Cluster) startPrimary() error {
	dir, data, err := c.env.newServerDir()
	if err != nil {
		return err
	}
	s := c.newNode(0, dir, data)
	c.nodes = append(c.nodes, s) // destroyed by the cleanup from now on
	var conf strings.Builder
	conf.WriteString(clusterConf)
	for _, kv := range c.cfg.settings {
		if !settingName.MatchString(kv[0]) {
			return fmt.Errorf("WithClusterSetting: %q is not a setting name", kv[0])
		}
		fmt.Fprintf(&conf, "%s = '%s'\n", kv[0], strings.ReplaceAll(kv[1], "'", "''"))
	}
	if err := appendFile(filepath.Join(data, "postgresql.conf"), conf.String()); err != nil {
		return err
	}
	hba := "\n# pgtest cluster: standbys, pg_basebackup and pg_rewind\nhost replication postgres 127.0.0.1/32 scram-sha-256\n"
	if err := appendFile(filepath.Join(data, "pg_hba.conf"), hba); err != nil {
		return err
	}
	s.args = c.nodeArgs(0, true)
	if err := s.start(true); err != nil {
		return err
	}
	c.primary = s
	return nil
}

// newNode makes the Server of node i (not started).
func (c *Cluster) newNode(i int, dir, data string) *Server {
	s := &Server{env: c.env, dir: dir, data: data, log: filepath.Join(dir, "postgres.log"), name: nodeName(i)}
	s.host.running = s.isRunning
	return s
}

func nodeName(i int) string { return "node" + strconv.Itoa(i) }

// nodeArgs is the postgres command line of node i: its name, the
// synchronous standby when it is the initial primary (initial) and asked
// for, its apply delay when it is a standby with one.
func (c *Cluster) nodeArgs(i int, initial bool) []string {
	args := []string{"-c", "cluster_name=" + nodeName(i)}
	if i == 0 && initial && c.cfg.synchronous {
		args = append(args, "-c", "synchronous_standby_names="+nodeName(1))
	}
	if d, ok := c.cfg.applyDelay[i-1]; ok && i > 0 {
		args = append(args, "-c", "recovery_min_apply_delay="+strconv.FormatInt(d.Milliseconds(), 10)+"ms")
	}
	return args
}

// Nodes returns every node in a fixed order: the initial primary (node0)
// first, then the standbys (node1, node2, ...), whatever their roles now.
func (c *Cluster) Nodes() []*Server {
	return append([]*Server(nil), c.nodes...)
}

// Primary returns the node that is the primary as far as the Cluster knows:
// the initial primary until [Cluster.Promote] names another.
func (c *Cluster) Primary() *Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.primary
}

// Standbys returns the nodes other than [Cluster.Primary], in
// [Cluster.Nodes] order (including stopped or killed ones).
func (c *Cluster) Standbys() []*Server {
	p := c.Primary()
	var out []*Server
	for _, n := range c.nodes {
		if n != p {
			out = append(out, n)
		}
	}
	return out
}

// NodeURL returns the URL of database db on node s, logging in as the
// superuser: postgres://postgres:<pw>@127.0.0.1:<port>/<db>?sslmode=disable.
func (c *Cluster) NodeURL(s *Server, db string) string {
	return s.host.urlFor(db)
}

// MultiHostURL returns one URL naming several nodes, as libpq and pgx
// accept it: postgres://postgres:<pw>@127.0.0.1:p1,127.0.0.1:p2/<db>?sslmode=disable,
// without target_session_attrs (add it yourself). nodes default to
// [Cluster.Nodes].
func (c *Cluster) MultiHostURL(db string, nodes ...*Server) string {
	if len(nodes) == 0 {
		nodes = c.nodes
	}
	hosts := make([]string, len(nodes))
	for i, n := range nodes {
		hosts[i] = net.JoinHostPort(n.Host(), strconv.Itoa(n.Port()))
	}
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(superuser, c.password),
		Host:     strings.Join(hosts, ","),
		Path:     "/" + db,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// Name returns the node's name in its [Cluster] (its cluster_name and
// application_name: "node0", "node1", ...), or "" for a server made by
// [NewServer].
func (s *Server) Name() string { return s.name }

// appendFile appends text to the existing file path.
func appendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(text)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

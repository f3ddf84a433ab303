package dbmanager

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatewaykit/dbmanager/internal/faultproxy"
	"github.com/gatewaykit/dbmanager/internal/pgtest"
)

// TestReplicas runs the read replica scenarios that leave the topology as
// they found it, on one cluster: a primary, a synchronous standby and a
// standby 1 s behind. (A failover changes it: TestReplicaFailover.)
func TestReplicas(t *testing.T) {
	c := newReplicaCluster(t)
	t.Run("PositionInReturningIsBeforeCommit", func(t *testing.T) { testPositionInReturningIsBeforeCommit(t, c) })
	t.Run("ReplayCheckInsideReadIsTooLate", func(t *testing.T) { testReplayCheckInsideReadIsTooLate(t, c) })
	t.Run("NoStaleReads", func(t *testing.T) { testNoStaleReads(t, c) })
	t.Run("NoStaleReadsFromDelayedReplica", func(t *testing.T) { testNoStaleReadsFromDelayedReplica(t, c) })
	t.Run("ReadOnlyPhaseOnReplicas", func(t *testing.T) { testReadOnlyPhaseOnReplicas(t, c) })
	t.Run("HealthInfoAndSecrets", func(t *testing.T) { testHealthInfoAndSecrets(t, c) })
	t.Run("ReadFromWriterAndReadPool", func(t *testing.T) { testReadFromWriterAndReadPool(t, c) })
	t.Run("UpdateAfterAnotherProcessWrote", func(t *testing.T) { testUpdateAfterAnotherProcessWrote(t, c) })
	t.Run("StatementsPerCall", func(t *testing.T) { testStatementsPerCall(t, c) })
	t.Run("Metrics", func(t *testing.T) { testMetrics(t, c) })
	t.Run("BehindPgBouncer", func(t *testing.T) { testBehindPgBouncer(t, c) })
	t.Run("NotUsedDuringFallback", func(t *testing.T) { testNotUsedDuringFallback(t, c) })
	t.Run("CloseLeavesNothing", func(t *testing.T) { testCloseLeavesNothing(t, c) })
	t.Run("KilledReplica", func(t *testing.T) { testKilledReplica(t, c) })
	t.Run("BlackHoledReplica", func(t *testing.T) { testBlackHoledReplica(t, c) })
}

// testNoStaleReads: Put, then at once Get and List of the same key,
// through Store(), many times: every read sees the write it follows. The
// reads that find a caught-up replica are served there; the delayed
// replica has never replayed a write that is less than 1 s old, so a
// read there would be stale unless the position check is exact.
func testNoStaleReads(t *testing.T, c *pgtest.Cluster) {
	cycles := 1000
	if longReplicaTests() {
		cycles = 10000
	}
	db := c.Database(t)
	m, logs := newReplicaManager(t, replicaEnv(c, db))
	waitInRotation(t, m, 2, 10*time.Second)
	s := m.Store()
	ctx := t.Context()
	var stale, failed int
	for i := range cycles {
		key := "k" + strconv.Itoa(i%50) // rewrite the same keys: an old version is stale too
		want := fmt.Sprintf(`{"i":%d}`, i)
		put, err := s.Put(ctx, "c", key, []byte(want))
		if err != nil {
			t.Fatalf("Put %d: %v", i, err)
		}
		got, err := s.Get(ctx, "c", key)
		switch {
		case errors.Is(err, ErrNotFound):
			stale++
			t.Errorf("Get %d: stale read: not found", i)
		case err != nil:
			failed++
			t.Errorf("Get %d: %v", i, err)
		case string(got.Value) != want || got.Version != put.Version:
			stale++
			if stale <= 5 {
				t.Errorf("Get %d: stale read: version %d %s, want version %d %s", i, got.Version, got.Value, put.Version, want)
			}
		}
		page, err := s.List(ctx, "c", ListOptions{Prefix: key, Limit: 1})
		switch {
		case err != nil:
			failed++
			t.Errorf("List %d: %v", i, err)
		case len(page.Records) != 1 || string(page.Records[0].Value) != want:
			stale++
			if stale <= 5 {
				t.Errorf("List %d: stale read: %v, want %s", i, page.Records, want)
			}
		}
	}
	info := m.Info()
	var onReplicas uint64
	for _, ri := range info.Replicas {
		onReplicas += ri.Reads
	}
	t.Logf("%d cycles: %d stale, %d failed; reads on replicas %d, on the primary %d; replicas %+v",
		cycles, stale, failed, onReplicas, info.ReadsFromPrimary, info.Replicas)
	if stale+failed > 0 {
		t.Fatalf("%d stale and %d failed reads; log:\n%s", stale, failed, logs)
	}
}

// testNoStaleReadsFromDelayedReplica: the only replica replays commits
// 1 s late and may serve reads however far behind (DB_READ_MAX_LAG=-1),
// so every read after a write tries it and must find it not caught up.
// Each write is read at once and again 20 ms later. In the quiet cycles
// the replica has replayed everything before the write, so 20 ms later
// it has replayed all of it but the commit: a position taken before the
// commit (pg_current_wal_insert_lsn() in RETURNING) sends those reads
// there and fails every quiet cycle; in the busy ones it waits at an
// older commit.
func testNoStaleReadsFromDelayedReplica(t *testing.T, c *pgtest.Cluster) {
	busy, quiet := 50, 3
	if longReplicaTests() {
		busy, quiet = 1000, 10
	}
	delayed := c.Nodes()[2]
	db := c.Database(t)
	m, logs := newReplicaManager(t, append(replicaEnv(c, db, delayed), "DB_READ_MAX_LAG", "-1"))
	waitInRotation(t, m, 1, 10*time.Second)
	s := m.Store()
	ctx := t.Context()
	stale := 0
	read := func(key, want string) {
		got, err := s.Get(ctx, "c", key)
		if err != nil || string(got.Value) != want {
			stale++
		}
		page, err := s.List(ctx, "c", ListOptions{Prefix: key})
		if err != nil || len(page.Records) != 1 || string(page.Records[0].Value) != want {
			stale++
		}
	}
	for i := range busy + quiet {
		if i >= busy {
			c.WaitCaughtUp(t)
		}
		key := "k" + strconv.Itoa(i%10)
		want := fmt.Sprintf(`{"i":%d}`, i)
		if _, err := s.Put(ctx, "c", key, []byte(want)); err != nil {
			t.Fatalf("Put %d: %v", i, err)
		}
		read(key, want)
		time.Sleep(20 * time.Millisecond)
		read(key, want)
	}
	info := m.Info()
	t.Logf("%d busy and %d quiet cycles: %d stale; replica %+v; %d reads on the primary", busy, quiet, stale, info.Replicas, info.ReadsFromPrimary)
	if stale > 0 {
		t.Fatalf("%d stale reads; log:\n%s", stale, logs)
	}
	if info.Replicas[0].State != ReplicaInRotation {
		t.Fatalf("the delayed replica left the rotation, so the test proved nothing: %+v", info.Replicas[0])
	}
}

// testReadOnlyPhaseOnReplicas: once the replicas have replayed every
// write, Gets go to them; the servers' own scan counters say so.
func testReadOnlyPhaseOnReplicas(t *testing.T, c *pgtest.Cluster) {
	const keys, gets, workers = 20, 2000, 8
	db := c.Database(t)
	m, logs := newReplicaManager(t, replicaEnv(c, db))
	s := m.Store()
	ctx := t.Context()
	seedCaughtUp(t, c, m, keys)
	eventually(t, 5*time.Second, "both replicas known to have replayed the writes", func() bool {
		lsn, _ := m.primaryReplicas().pos.Current()
		for _, r := range m.primaryReplicas().replicas {
			if r.replay.Load() < lsn {
				return false
			}
		}
		return true
	})
	nodes := c.Nodes()
	before := make([]int64, len(nodes))
	for i, n := range nodes {
		before[i] = recordsScans(t, c, n, db)
	}
	var failed atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < gets; i += workers {
				if _, err := s.Get(ctx, "c", "k"+strconv.Itoa(i%keys)); err != nil {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	info := m.Info()
	// Closing ends the sessions, which makes each server flush its
	// statistics.
	closeCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.Close(closeCtx); err != nil {
		t.Fatal(err)
	}
	var onPrimary, onReplicas int64
	eventually(t, 5*time.Second, "the servers' counters to add up to the Gets", func() bool {
		onPrimary, onReplicas = 0, 0
		for i, n := range nodes {
			d := recordsScans(t, c, n, db) - before[i]
			if n == c.Primary() {
				onPrimary += d
			} else {
				onReplicas += d
			}
		}
		return onPrimary+onReplicas >= gets
	})
	share := float64(onReplicas) / float64(onPrimary+onReplicas)
	t.Logf("%d Gets: servers counted %d scans on the replicas, %d on the primary (%.1f%% on replicas); library: %+v, %d on the primary",
		gets, onReplicas, onPrimary, 100*share, info.Replicas, info.ReadsFromPrimary)
	if failed.Load() > 0 {
		t.Fatalf("%d Gets failed", failed.Load())
	}
	if share < 0.95 {
		t.Fatalf("only %.1f%% of the Gets on the replicas, want at least 95%%; log:\n%s", 100*share, logs)
	}
}

// seedCaughtUp writes keys k0, k1, ... through m and waits until every
// replica has replayed them and is in rotation.
func seedCaughtUp(t *testing.T, c *pgtest.Cluster, m *Manager, keys int) {
	t.Helper()
	for i := range keys {
		if _, err := m.Store().Put(t.Context(), "c", "k"+strconv.Itoa(i), []byte(`{"v":1}`)); err != nil {
			t.Fatal(err)
		}
	}
	c.WaitCaughtUp(t)
	waitInRotation(t, m, len(c.Standbys()), 10*time.Second)
}

// testKilledReplica: a replica crashes under 16 reading goroutines; no
// read fails, it leaves the rotation within 2 s, and comes back within
// 5 s of starting again.
func testKilledReplica(t *testing.T, c *pgtest.Cluster) {
	const keys, readers = 20, 16
	db := c.Database(t)
	m, logs := newReplicaManager(t, replicaEnv(c, db))
	s := m.Store()
	seedCaughtUp(t, c, m, keys)
	victim := c.Nodes()[1]
	addr := nodeAddr(victim)

	load := startReaders(s, readers, keys)
	time.Sleep(300 * time.Millisecond)
	servedBefore := m.Info().Replicas[0].Reads
	victim.Kill(t)
	killed := time.Now()
	out := eventually(t, 10*time.Second, "the killed replica out of rotation", func() bool {
		st, _ := replicaState(m, addr)
		return st == ReplicaOutOfRotation
	})
	_, reason := replicaState(m, addr)
	time.Sleep(500 * time.Millisecond) // reads go on without it
	victim.Start(t)
	started := time.Now()
	back := eventually(t, 15*time.Second, "the restarted replica back in rotation", func() bool {
		st, _ := replicaState(m, addr)
		return st == ReplicaInRotation
	})
	time.Sleep(300 * time.Millisecond)
	res := load.stop()
	info := m.Info()
	t.Logf("killed %s: out of rotation after %s (%s); started again (Start took %s): back after %s; %d reads, %d failed; replicas %+v, %d on the primary",
		addr, out.Round(time.Millisecond), reason, started.Sub(killed.Add(out+500*time.Millisecond)).Round(time.Millisecond),
		back.Round(time.Millisecond), res.reads, res.failed, info.Replicas, info.ReadsFromPrimary)
	if res.failed > 0 {
		t.Errorf("%d reads failed, first: %v", res.failed, res.firstErr)
	}
	if out > 2*time.Second {
		t.Errorf("out of rotation after %s, want at most 2 s", out)
	}
	if back > 5*time.Second {
		t.Errorf("back in rotation %s after starting, want at most 5 s", back)
	}
	if info.Replicas[0].Reads <= servedBefore {
		t.Errorf("the replica served no reads before the kill (%d), so the test proved nothing", servedBefore)
	}
	if n := strings.Count(logs.String(), `msg="Read replica out of rotation" replica=`+addr); n != 1 {
		t.Errorf("logged %d times that %s left the rotation, want once; log:\n%s", n, addr, logs)
	}
	assertLogged(t, logs, `msg="Read replica in rotation" replica=`+addr)
}

// testBlackHoledReplica: a replica goes silent (every byte dropped, as a
// fenced Aurora node does) under 16 readers: reads in flight on it end at
// their replica bound and are served by the writer, none fails, and the
// replica leaves the rotation; it comes back once it answers again.
func testBlackHoledReplica(t *testing.T, c *pgtest.Cluster) {
	const keys, readers = 20, 16
	db := c.Database(t)
	silent := c.Nodes()[1]
	proxy := faultproxy.New(t, nodeAddr(silent))
	readURL := strings.Replace(c.MultiHostURL(db, silent, c.Nodes()[2]), nodeAddr(silent), proxy.Addr(), 1)
	m, logs := newReplicaManager(t, []string{"DATABASE_URL", c.NodeURL(c.Primary(), db), "DATABASE_READ_URL", readURL, "DB_CONNECT_TIMEOUT", "1"})
	s := m.Store()
	seedCaughtUp(t, c, m, keys)

	load := startReaders(s, readers, keys)
	time.Sleep(300 * time.Millisecond)
	proxy.BlackHole()
	out := eventually(t, 15*time.Second, "the silent replica out of rotation", func() bool {
		st, _ := replicaState(m, proxy.Addr())
		return st == ReplicaOutOfRotation
	})
	_, reason := replicaState(m, proxy.Addr())
	time.Sleep(500 * time.Millisecond)
	proxy.Heal()
	back := eventually(t, 15*time.Second, "the replica back in rotation", func() bool {
		st, _ := replicaState(m, proxy.Addr())
		return st == ReplicaInRotation
	})
	res := load.stop()
	t.Logf("black hole: out of rotation after %s (%s); healed: back after %s; %d reads, %d failed, slowest %s",
		out.Round(time.Millisecond), reason, back.Round(time.Millisecond), res.reads, res.failed, res.slowest.Round(time.Millisecond))
	if res.failed > 0 {
		t.Fatalf("%d reads failed, first: %v; log:\n%s", res.failed, res.firstErr, logs)
	}
}

// readLoad is a read load: goroutines doing Gets of k0..k(keys-1) until
// stopped, counting what they saw.
type readLoad struct {
	stopCh  chan struct{}
	wg      sync.WaitGroup
	reads   atomic.Int64
	failed  atomic.Int64
	slowest atomic.Int64 // nanoseconds
	first   atomic.Value // the first error's text
}

// readResult is what a read load saw.
type readResult struct {
	reads, failed int64
	slowest       time.Duration
	firstErr      any
}

// startReaders starts n goroutines reading from s.
func startReaders(s Store, n, keys int) *readLoad {
	l := &readLoad{stopCh: make(chan struct{})}
	for w := range n {
		l.wg.Go(func() {
			for i := w; ; i++ {
				select {
				case <-l.stopCh:
					return
				default:
				}
				start := time.Now()
				_, err := s.Get(context.Background(), "c", "k"+strconv.Itoa(i%keys))
				if d := int64(time.Since(start)); d > l.slowest.Load() {
					l.slowest.Store(d)
				}
				if err != nil {
					l.failed.Add(1)
					l.first.CompareAndSwap(nil, err.Error())
				} else {
					l.reads.Add(1)
				}
			}
		})
	}
	return l
}

// stop ends the load and returns what it saw.
func (l *readLoad) stop() readResult {
	close(l.stopCh)
	l.wg.Wait()
	return readResult{reads: l.reads.Load(), failed: l.failed.Load(), slowest: time.Duration(l.slowest.Load()), firstErr: l.first.Load()}
}

package dbmanager

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gatewaykit/dbmanager/internal/faultproxy"
	"github.com/gatewaykit/dbmanager/internal/pgtest"
)

// TestCrashAndPromoteSynchronousStandby kills the primary under write
// load and promotes its synchronous standby, with a multi-host
// DATABASE_URL naming both: no acknowledged write may be lost, every
// failed call is ErrUnavailable (or ErrOutcomeUnknown), and writes resume
// on the new writer within a second of it accepting writes.
func TestCrashAndPromoteSynchronousStandby(t *testing.T) {
	const writers = 4
	total := int64(10000)
	if longRun() {
		total = 50000
	}
	c := pgtest.NewCluster(t, pgtest.WithStandbys(1), pgtest.WithSynchronousStandby())
	db := c.Database(t)
	user, pw := clusterLogin(t, c)
	old, standby := c.Primary(), c.Standbys()[0]
	m, logs := newTestManager(t, envConfig(t, "DATABASE_URL", loginURL(user, pw, db, nodeAddr(old), nodeAddr(standby)),
		"DB_CONNECT_TIMEOUT", "2"))
	if err := m.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	load := startWriteLoad(m.Store(), writers, 2*time.Second)
	load.waitAcked(t, total/2, 2*time.Minute)

	old.Kill(t) // returns once no process of the old primary runs
	killed := time.Now()
	promoting := killed
	c.Promote(t, standby) // returns once the standby accepts writes
	promoted := time.Now()
	load.waitAcked(t, total, 2*time.Minute)
	if time.Since(promoted) < 2*time.Second {
		time.Sleep(2*time.Second - time.Since(promoted))
	}
	load.finish()

	first := load.ackAfter(killed)
	kinds, others := load.failureKinds()
	t.Logf("%d writers: %d acknowledged, failures %v; promotion took %s; first write on the new writer %s after the promotion started, %s after it returned; last failure %s after it returned",
		writers, len(load.acks), kinds, promoted.Sub(promoting).Round(time.Millisecond),
		sinceOrNone(first, promoting), sinceOrNone(first, promoted), sinceOrNone(load.lastFailureEnd(), promoted))
	load.logFailuresAfter(t, promoted)
	if len(load.acks) < int(total) {
		t.Errorf("only %d acknowledged writes; want at least %d", len(load.acks), total)
	}
	for _, err := range others {
		t.Errorf("a failed call during the failover is neither ErrUnavailable nor ErrOutcomeUnknown: %v", err)
	}
	if first.IsZero() || first.Sub(promoted) > time.Second {
		t.Errorf("first write on the new writer %s after it accepted writes; want at most 1 s", first.Sub(promoted))
	}
	if last := load.lastFailureEnd(); last.Sub(promoted) > time.Second {
		t.Errorf("a write failed %s after the new writer accepted writes; want none later than 1 s", last.Sub(promoted))
	}
	load.assertNoAckLost(t, c.NodeURL(standby, db))
	if info := m.Info(); !info.UsingPrimary {
		t.Errorf("Info after the failover: %+v", info)
	}
	if n := countLines(logs, "Primary database connection lost"); n > 1 {
		t.Errorf("%d 'connection lost' lines for one failover; log:\n%s", n, logs)
	}
	if countLines(logs, "Primary database connection lost") != countLines(logs, "Primary database connection restored") {
		t.Errorf("the lost/restored pair does not match; log:\n%s", logs)
	}
	var texts []string
	for _, f := range load.failures {
		texts = append(texts, f.err.Error())
	}
	assertNoLeakIn(t, "failed calls or logs", append(texts, logs.String())...)
}

// TestWriterFlipWithPooledConnections: the node the pool is on turns
// read-only in place (as Aurora's old writer does) while writers run,
// then, after a gap with no writer at all, another node is promoted. The
// pool must leave the read-only node and write to the new one: no write
// fails later than 1 s after the new writer accepts writes, every failed
// call is ErrUnavailable, health is never "healthy" while writes fail,
// and the outage is one "lost" and one "restored" line.
//
// Two ways to reach the writer: a multi-host URL naming both nodes, and a
// single endpoint whose DNS name moves to the new writer after the
// promotion (a fault proxy re-pointed with SetTarget), as RDS and Aurora
// writer endpoints do.
func TestWriterFlipWithPooledConnections(t *testing.T) {
	for _, endpoint := range []string{"multi-host URL", "DNS flip"} {
		for _, writers := range []int{1, 2, 8} {
			t.Run(fmt.Sprintf("%s, %d writers", endpoint, writers), func(t *testing.T) {
				c := pgtest.NewCluster(t, pgtest.WithStandbys(1))
				db := c.Database(t)
				user, pw := clusterLogin(t, c)
				old, next := c.Primary(), c.Standbys()[0]
				dbURL := loginURL(user, pw, db, nodeAddr(old), nodeAddr(next))
				flip := func() { c.Promote(t, next) }
				if endpoint == "DNS flip" {
					dns := faultproxy.New(t, nodeAddr(old))
					dbURL = loginURL(user, pw, db, dns.Addr())
					flip = func() {
						c.Promote(t, next)
						dns.SetTarget(nodeAddr(next))
					}
				}
				runWriterFlip(t, writers, dbURL, old, flip, c, next, db)
			})
		}
	}
}

// runWriterFlip runs one writer-flip scenario: writers on dbURL, then old
// is fenced, then after a gap flip() makes next the writer. Times are
// measured from when a fresh connection through dbURL first commits a
// write on the new writer.
func runWriterFlip(t *testing.T, writers int, dbURL string, old *pgtest.Server, flip func(), c *pgtest.Cluster, next *pgtest.Server, db string) {
	t.Helper()
	gap := 3 * time.Second // longer than a call's deadline plus a health check
	after := 2 * time.Second
	if longRun() {
		gap, after = 5*time.Second, 10*time.Second
	}
	m, logs := newTestManager(t, envConfig(t, "DATABASE_URL", dbURL, "DB_CONNECT_TIMEOUT", "2"),
		WithHealthTimeout(time.Second)) // shorter than the gap, as a load balancer's probe would be
	if err := m.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	load := startWriteLoad(m.Store(), writers, 2*time.Second)
	load.waitAcked(t, 200, time.Minute) // the pool holds a connection per writer
	sampler := sampleHealth(m, 50*time.Millisecond)

	old.Fence(t)
	fenced := time.Now()
	time.Sleep(gap)
	c.WaitCaughtUp(t) // every write acknowledged by the old node is on the new one
	flipping := time.Now()
	flip()
	promoted := firstWritable(t, dbURL)
	time.Sleep(after)
	samples := sampler.finish()
	load.finish()

	first := load.ackAfter(flipping)
	kinds, others := load.failureKinds()
	t.Logf("%d writers: %d acknowledged, failures %v; first write %s after the new writer accepted writes; last failure %s after it; health %s",
		writers, len(load.acks), kinds, first.Sub(promoted).Round(time.Millisecond),
		sinceOrNone(load.lastFailureEnd(), promoted), statusCounts(samples))
	for _, err := range others {
		t.Errorf("a failed call during the flip is neither ErrUnavailable nor ErrOutcomeUnknown: %v", err)
	}
	if first.IsZero() || first.Sub(promoted) > time.Second {
		t.Errorf("first write on the new writer %s after it accepted writes; want at most 1 s", sinceOrNone(first, promoted))
	}
	if last := load.lastFailureEnd(); last.Sub(promoted) > time.Second {
		t.Errorf("a write failed %s after the new writer accepted writes; want none later than 1 s", last.Sub(promoted))
	}
	load.logFailuresAfter(t, promoted)
	assertNeverHealthyWhileWritesFail(t, samples, load.failures, fenced, flipping)
	if h := m.Health(context.Background()); h.Status != StatusHealthy {
		t.Errorf("Health after the flip = %+v", h)
	}
	load.assertNoAckLost(t, c.NodeURL(next, db))
	lost, restored := countLines(logs, "Primary database connection lost"), countLines(logs, "Primary database connection restored")
	if len(load.failures) > 0 && (lost != 1 || restored != 1) {
		t.Errorf("one outage logged %d 'connection lost' and %d 'restored' lines; want 1 and 1; log:\n%s", lost, restored,
			linesWith(logs, "connection lost", "restored", "read-only node", "Database health"))
	}
	if l := linesWith(logs, "connection lost"); strings.Contains(l, `put "w`) {
		t.Errorf("the 'connection lost' line names a key: %s", l)
	}
	if n := countLines(logs, "found on a read-only node"); n != 1 {
		t.Errorf("%d 'found on a read-only node' lines; want 1", n)
	}
	var texts []string
	for _, f := range load.failures {
		texts = append(texts, f.err.Error())
	}
	b, _ := json.Marshal(m.Info())
	assertNoLeakIn(t, "failed calls, health, Info or logs", append(append(texts, sampler.jsons...), string(b), logs.String())...)
}

// sinceOrNone shows t - ref, or "none" for a zero t.
func sinceOrNone(t, ref time.Time) string {
	if t.IsZero() {
		return "none"
	}
	return t.Sub(ref).Round(time.Millisecond).String()
}

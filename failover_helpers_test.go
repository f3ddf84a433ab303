package dbmanager

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatewaykit/dbmanager/internal/pgtest"
	"github.com/jackc/pgx/v5"
)

// longRun reports whether the long versions of the failover scenarios
// were asked for (DBMANAGER_LONG=1).
func longRun() bool { return os.Getenv("DBMANAGER_LONG") == "1" }

// clusterLogin creates, on the cluster's primary, a superuser whose
// password carries leakMarker (so every output of a test can be scanned
// for it), and returns its name and password.
func clusterLogin(t *testing.T, c *pgtest.Cluster) (user, password string) {
	t.Helper()
	password = "pw-" + leakMarker + "-" + strconv.FormatInt(time.Now().UnixNano()%1e6, 10)
	user = "app_" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	c.Primary().Exec(t, "CREATE ROLE "+user+" LOGIN SUPERUSER PASSWORD "+sqlLiteral(password))
	c.WaitCaughtUp(t)
	return user, password
}

// loginURL is a postgres:// URL for user/password on database db at the
// given host:port addresses (several: a multi-host URL).
func loginURL(user, password, db string, addrs ...string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(user, password), Path: "/" + db, RawQuery: "sslmode=disable"}
	return strings.Replace(u.String(), "postgres://"+u.User.String()+"@", "postgres://"+u.User.String()+"@"+strings.Join(addrs, ","), 1)
}

// nodeAddr is a cluster node's host:port.
func nodeAddr(s *pgtest.Server) string { return net.JoinHostPort(s.Host(), strconv.Itoa(s.Port())) }

// firstWritable returns when a fresh connection through dsn (the
// endpoint the Manager uses, asking for a writable node) first commits a
// write: the moment the new writer accepts writes as a client sees it,
// connection set-up on this machine included.
func firstWritable(t *testing.T, dsn string) time.Time {
	t.Helper()
	if !strings.Contains(dsn, "target_session_attrs") {
		dsn += "&target_session_attrs=read-write"
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, dsn)
		if err == nil {
			_, err = conn.Exec(ctx, "BEGIN READ WRITE; SELECT pg_current_xact_id(); COMMIT")
			_ = conn.Close(ctx)
		}
		cancel()
		if err == nil {
			return time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("no write through the endpoint within 30 s: %v", safeError(err))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// callOutcome is one Store call a writer made.
type callOutcome struct {
	start, end time.Time
	err        error
}

// writeLoad runs writers that each Put fresh keys, one after another,
// each call with its own deadline, and records every outcome.
type writeLoad struct {
	store    Store
	deadline time.Duration

	stop  chan struct{}
	wg    sync.WaitGroup
	acked atomic.Int64

	mu       sync.Mutex
	acks     map[string]int64 // key -> version acknowledged
	failures []callOutcome
	ackTimes []callOutcome // start and end of every acknowledged call
}

func startWriteLoad(store Store, writers int, deadline time.Duration) *writeLoad {
	l := &writeLoad{store: store, deadline: deadline, stop: make(chan struct{}), acks: map[string]int64{}}
	for w := range writers {
		l.wg.Add(1)
		go l.writer(w)
	}
	return l
}

func (l *writeLoad) writer(w int) {
	defer l.wg.Done()
	for i := 0; ; i++ {
		select {
		case <-l.stop:
			return
		default:
		}
		key := fmt.Sprintf("w%d-%06d", w, i)
		ctx, cancel := context.WithTimeout(context.Background(), l.deadline)
		start := time.Now()
		rec, err := l.store.Put(ctx, "load", key, []byte(`{"w":`+strconv.Itoa(w)+`}`))
		end := time.Now()
		cancel()
		l.mu.Lock()
		if err != nil {
			l.failures = append(l.failures, callOutcome{start: start, end: end, err: err})
		} else {
			l.acks[key] = rec.Version
			l.ackTimes = append(l.ackTimes, callOutcome{start: start, end: end})
		}
		l.mu.Unlock()
		if err == nil {
			l.acked.Add(1)
		} else {
			time.Sleep(5 * time.Millisecond) // a failed call returns fast; do not spin
		}
	}
}

// waitAcked waits until n writes are acknowledged in all.
func (l *writeLoad) waitAcked(t *testing.T, n int64, within time.Duration) {
	t.Helper()
	eventually(t, within, fmt.Sprintf("%d acknowledged writes", n), func() bool { return l.acked.Load() >= n })
}

func (l *writeLoad) finish() {
	close(l.stop)
	l.wg.Wait()
}

// ackAfter is when the first write that started at or after t was
// acknowledged (zero if none).
func (l *writeLoad) ackAfter(t time.Time) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	var first time.Time
	for _, a := range l.ackTimes {
		if !a.start.Before(t) && (first.IsZero() || a.end.Before(first)) {
			first = a.end
		}
	}
	return first
}

// failureKinds counts failures by kind, and returns those that are
// neither ErrUnavailable nor ErrOutcomeUnknown.
func (l *writeLoad) failureKinds() (kinds map[string]int, others []error) {
	kinds = map[string]int{}
	for _, f := range l.failures {
		switch {
		case errors.Is(f.err, ErrOutcomeUnknown):
			kinds["outcome unknown"]++
		case errors.Is(f.err, ErrUnavailable):
			kinds["unavailable"]++
		default:
			kinds["other"]++
			others = append(others, f.err)
		}
	}
	return kinds, others
}

// lastFailureEnd is when the last failed call returned (zero if none).
func (l *writeLoad) lastFailureEnd() time.Time {
	var last time.Time
	for _, f := range l.failures {
		if f.end.After(last) {
			last = f.end
		}
	}
	return last
}

// logFailuresAfter logs each failure that ended after t: when it started
// and ended relative to t, and why.
func (l *writeLoad) logFailuresAfter(t *testing.T, ref time.Time) {
	t.Helper()
	for _, f := range l.failures {
		if f.end.After(ref) {
			t.Logf("failure from %s to %s after the new writer: %s", f.start.Sub(ref).Round(time.Millisecond),
				f.end.Sub(ref).Round(time.Millisecond), errorText(f.err))
		}
	}
}

// assertNoAckLost reads every acknowledged key from the node that is the
// primary now, over a connection of the test's own, and fails t for any
// key missing or at a lower version than acknowledged.
func (l *writeLoad) assertNoAckLost(t *testing.T, nodeURL string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, nodeURL)
	if err != nil {
		t.Fatal(safeError(err))
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT key, version FROM dbmanager.records WHERE collection = 'load'`)
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]int64{}
	for rows.Next() {
		var k string
		var v int64
		if err := rows.Scan(&k, &v); err != nil {
			t.Fatal(err)
		}
		stored[k] = v
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	lost := 0
	for k, v := range l.acks {
		if stored[k] < v {
			lost++
			if lost <= 5 {
				t.Errorf("acknowledged write %s (version %d) is not on the new primary (version %d)", k, v, stored[k])
			}
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d acknowledged writes lost", lost, len(l.acks))
	}
}

// healthSample is one Health call of a sampler.
type healthSample struct {
	start, end time.Time
	status     string
	message    string
}

// healthSampler calls Health every interval until stopped.
type healthSampler struct {
	stop    chan struct{}
	done    chan struct{}
	mu      sync.Mutex
	samples []healthSample
	jsons   []string
}

func sampleHealth(m *Manager, every time.Duration) *healthSampler {
	s := &healthSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			start := time.Now()
			h := m.Health(context.Background())
			b, _ := json.Marshal(h)
			s.mu.Lock()
			s.samples = append(s.samples, healthSample{start: start, end: time.Now(), status: h.Status, message: h.Message})
			s.jsons = append(s.jsons, string(b))
			s.mu.Unlock()
			select {
			case <-s.stop:
				return
			case <-time.After(every):
			}
		}
	}()
	return s
}

func (s *healthSampler) finish() []healthSample {
	close(s.stop)
	<-s.done
	return s.samples
}

// assertNeverHealthyWhileWritesFail fails t for a "healthy" answer given
// while no node accepted writes (an answer that came in [from, to]), or
// while a write that failed before to was under way; and when no answer
// in [from, to] said anything else (the check did not run then).
func assertNeverHealthyWhileWritesFail(t *testing.T, samples []healthSample, failures []callOutcome, from, to time.Time) {
	t.Helper()
	bad, during := 0, 0
	for _, s := range samples {
		if s.end.Before(from) {
			continue // before the fault: writes worked
		}
		inGap := !s.end.After(to)
		if inGap {
			during++
		}
		if s.status != StatusHealthy {
			continue
		}
		reason := ""
		if inGap {
			reason = "while no node accepted writes"
		}
		for _, f := range failures {
			if f.end.Before(to) && s.end.After(f.start) && s.end.Before(f.end) {
				reason = "during a write that failed (" + errorText(f.err) + ")"
				break
			}
		}
		if reason != "" {
			bad++
			if bad <= 3 {
				t.Errorf("Health said healthy at %s %s", s.end.Format("15:04:05.000"), reason)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d health answers said healthy while writes failed", bad, len(samples))
	}
	if during == 0 {
		t.Errorf("no health answer came while no node accepted writes: the check did not run")
	}
}

// countLines counts log lines containing msg.
func countLines(logs *logBuffer, msg string) int {
	return strings.Count(logs.String(), msg)
}

// linesWith returns the log lines that contain one of msgs.
func linesWith(logs *logBuffer, msgs ...string) string {
	var out []string
	for line := range strings.SplitSeq(logs.String(), "\n") {
		for _, m := range msgs {
			if strings.Contains(line, m) {
				out = append(out, line)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

// statusCounts summarises samples as "healthy=3 unhealthy=12".
func statusCounts(samples []healthSample) string {
	n := map[string]int{}
	for _, s := range samples {
		n[s.status]++
	}
	keys := make([]string, 0, len(n))
	for k := range n {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%d", k, n[k]))
	}
	return strings.Join(parts, " ")
}

// assertNoLeakIn scans every text for the password marker.
func assertNoLeakIn(t *testing.T, what string, texts ...string) {
	t.Helper()
	for _, s := range texts {
		if strings.Contains(s, leakMarker) {
			t.Errorf("%s leaks the password: %s", what, strings.ReplaceAll(s, leakMarker, "<LEAK>"))
			return
		}
	}
}

package dbmanager

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// BenchmarkManagerVsPgbench compares m.Store().Get on 8 goroutines (pool
// of 8) with PostgreSQL's own C client on the same server: pgbench -S -M
// prepared -c 8 -j 2, one primary-key SELECT per transaction, as a
// subprocess. The two run in alternating rounds of the same length;
// "throughput-ratio" is Manager calls per second over pgbench
// transactions per second (the target: 0.75 or more);
// "rawpgx/pgbench" is hand-written pgx on its own pool of 8, run in the
// same rounds, against pgbench, to show how much of the distance is Go and
// pgx rather than the library. It skips
// when pgbench is not installed (it comes with PostgreSQL's client
// packages).
func BenchmarkManagerVsPgbench(b *testing.B) {
	pgbench := findPgbench()
	if pgbench == "" {
		b.Skip("pgbench not found (PATH, PGTEST_BINDIR, /usr/lib/postgresql/*/bin)")
	}
	bm := newManagerBench(b)
	env, err := libpqEnv(bm.dsn)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	run := func(args ...string) []byte {
		cmd := exec.CommandContext(ctx, pgbench, args...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("pgbench %v: %v\n%s", args, err, out) // the password is in the environment, not in args or output
		}
		return out
	}
	run("-i", "-s", "1", "-q")

	rounds, length := 3, 2*time.Second
	if benchQuick {
		rounds, length = 1, time.Second
	}
	tpsRE := regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)
	pgbenchRound := func() float64 {
		out := run("-S", "-M", "prepared", "-c", "8", "-j", "2", "-n", "-T", strconv.Itoa(int(length.Seconds())))
		m := tpsRE.FindSubmatch(out)
		if m == nil {
			b.Fatalf("no tps in pgbench's output:\n%s", out)
		}
		tps, _ := strconv.ParseFloat(string(m[1]), 64)
		return tps
	}
	s := bm.m.Store()
	// goRound runs get on 8 goroutines for one round and returns calls/s.
	goRound := func(get func(key string) error) float64 {
		var calls atomic.Int64
		var wg sync.WaitGroup
		deadline := time.Now().Add(length)
		start := time.Now()
		for g := range benchGoroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := g * 7919; time.Now().Before(deadline); i++ {
					if err := get(bm.key(i)); err != nil {
						b.Error(err)
						return
					}
					calls.Add(1)
				}
			}()
		}
		wg.Wait()
		return float64(calls.Load()) / time.Since(start).Seconds()
	}
	managerGet := func(key string) error { _, err := s.Get(ctx, "bench", key); return err }
	rawGet := func(key string) error { _, err := bm.rawGet(ctx, key); return err }
	var manager, raw, native float64
	b.ResetTimer()
	for r := range rounds {
		if r%2 == 0 {
			manager += goRound(managerGet)
			native += pgbenchRound()
			raw += goRound(rawGet)
		} else {
			raw += goRound(rawGet)
			native += pgbenchRound()
			manager += goRound(managerGet)
		}
	}
	b.ReportMetric(manager/float64(rounds), "manager-calls/s")
	b.ReportMetric(raw/float64(rounds), "rawpgx-calls/s")
	b.ReportMetric(native/float64(rounds), "pgbench-tps")
	b.ReportMetric(raw/native, "rawpgx/pgbench")
	b.ReportMetric(manager/native, "throughput-ratio")
}

// benchQuick makes benchmarks that run for a fixed time do one short round
// (TestBenchmarksRun sets it).
var benchQuick bool

// findPgbench returns the path of pgbench, or "".
func findPgbench() string {
	if p, err := exec.LookPath("pgbench"); err == nil {
		return p
	}
	if dir := os.Getenv("PGTEST_BINDIR"); dir != "" {
		if p := filepath.Join(dir, "pgbench"); isFile(p) {
			return p
		}
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pgbench")
	if len(matches) > 0 {
		return matches[len(matches)-1]
	}
	return ""
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// libpqEnv turns a connection string into libpq's environment variables,
// so a client program gets the password without it showing in its
// arguments.
func libpqEnv(dsn string) ([]string, error) {
	cc, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	sslmode := "disable"
	if cc.TLSConfig != nil {
		sslmode = "require"
	}
	return []string{
		"PGHOST=" + cc.Host, "PGPORT=" + strconv.Itoa(int(cc.Port)), "PGUSER=" + cc.User,
		"PGPASSWORD=" + cc.Password, "PGDATABASE=" + cc.Database, "PGSSLMODE=" + sslmode,
	}, nil
}

package dbmanager

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// execModes are the query exec modes BenchmarkPGExecModes compares for the
// store's own statements. cache_statement is pgx's default and the
// baseline; describe_exec is left out because it is not safe behind a
// transaction pooler (it would not be chosen whatever its speed).
var execModes = []struct {
	name string
	mode pgx.QueryExecMode
}{
	{"cache_statement", pgx.QueryExecModeCacheStatement},
	{"cache_describe", pgx.QueryExecModeCacheDescribe},
	{"exec", pgx.QueryExecModeExec},
	{"simple_protocol", pgx.QueryExecModeSimpleProtocol},
}

// BenchmarkPGExecModes runs the store's Get and Put on direct PostgreSQL
// in each exec mode, side by side: rounds of 8 goroutines, each round
// running every mode once in a rotating order, so all modes see the same
// machine (this VM's speed drifts between seconds). It reports each mode's
// time per operation and its throughput relative to cache_statement
// ("<mode>-vs-cache_statement", above 1 is faster).
//
//	go test -run '^$' -bench 'PGExecModes' -count 3 ./
func BenchmarkPGExecModes(b *testing.B) {
	s, _, keys := newBenchPGStore(b)
	ctx := context.Background()
	// One store per mode on the same pool and table.
	stores := make([]*PGStore, len(execModes))
	for i, m := range execModes {
		st := &PGStore{pg: &pgBackend{schema: s.pg.schema, acquire: s.pg.acquire, sql: s.pg.sql}}
		st.pg.mode.Store(int32(m.mode))
		st.b = st.pg
		stores[i] = st
	}
	b.Run("Get", func(b *testing.B) {
		sideBySide(b, 8, func(mode, i int) error {
			_, err := stores[mode].Get(ctx, "bench", keys[i%len(keys)])
			return err
		})
	})
	b.Run("Put", func(b *testing.B) {
		sideBySide(b, 8, func(mode, i int) error {
			_, err := stores[mode].Put(ctx, "bench", keys[i%len(keys)], benchValue)
			return err
		})
	})
}

// sideBySide runs op for every mode of execModes in rounds of goroutines
// goroutines each, rotating which mode goes first, and reports per-mode
// ns/op and throughput ratios against the first mode.
func sideBySide(b *testing.B, goroutines int, op func(mode, i int) error) {
	const rounds = 12
	perRound := max(b.N/rounds, 200)
	totals := make([]time.Duration, len(execModes))
	var failed atomic.Bool
	run := func(mode int) time.Duration {
		var wg sync.WaitGroup
		start := time.Now()
		for g := range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range perRound / goroutines {
					if err := op(mode, g*7919+i); err != nil && !failed.Swap(true) {
						b.Errorf("%s: %v", execModes[mode].name, err)
					}
				}
			}()
		}
		wg.Wait()
		return time.Since(start)
	}
	for m := range execModes { // warm every connection's caches
		run(m)
	}
	b.ResetTimer()
	for r := range rounds {
		for j := range execModes {
			m := (r + j) % len(execModes)
			totals[m] += run(m)
		}
	}
	b.StopTimer()
	ops := float64(rounds * (perRound / goroutines) * goroutines)
	for m, e := range execModes {
		b.ReportMetric(float64(totals[m].Nanoseconds())/ops, e.name+"-ns/op")
		if m > 0 {
			b.ReportMetric(float64(totals[0])/float64(totals[m]), e.name+"-vs-cache_statement")
		}
	}
}

package dbmanager

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"
)

// alternating measures two implementations of one operation in
// alternating rounds, each round running op on GOMAXPROCS goroutines at
// once (see alternatingOn).
func alternating(b *testing.B, store, baseline func(i int)) {
	alternatingOn(b, runtime.GOMAXPROCS(0), store, baseline)
}

// alternatingRounds is how many rounds each side of a ratio benchmark runs.
const alternatingRounds = 20

// alternatingOn measures two implementations of one operation in
// alternating rounds, each round running op on goroutines goroutines at
// once, so that both see the same machine (this VM's speed drifts by tens
// of percent between seconds, and other work on it comes and goes). It
// reports each one's time per operation and the store's throughput
// relative to the baseline ("throughput-ratio": above 1 means the store
// is faster). The rounds split b.N operations; with -benchtime=1x each
// goroutine still runs a few operations per round, so CI can run every
// benchmark quickly.
func alternatingOn(b *testing.B, goroutines int, store, baseline func(i int)) {
	perGoroutine := max(b.N/alternatingRounds/goroutines, 10)
	var cs, cb time.Duration // the process's CPU time during each side's rounds
	run := func(op func(int), cpu *time.Duration) time.Duration {
		var wg sync.WaitGroup
		c0 := processCPU()
		start := time.Now()
		for g := range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range perGoroutine {
					op(g*7919 + i)
				}
			}()
		}
		wg.Wait()
		d := time.Since(start)
		*cpu += processCPU() - c0
		return d
	}
	var ts, tb time.Duration
	b.ResetTimer()
	for r := range alternatingRounds {
		if r%2 == 0 {
			ts += run(store, &cs)
			tb += run(baseline, &cb)
		} else {
			tb += run(baseline, &cb)
			ts += run(store, &cs)
		}
	}
	ops := float64(alternatingRounds * perGoroutine * goroutines)
	b.ReportMetric(float64(ts.Nanoseconds())/ops, "store-ns/op")
	b.ReportMetric(float64(tb.Nanoseconds())/ops, "baseline-ns/op")
	b.ReportMetric(float64(cs.Nanoseconds())/ops, "store-cpu-ns/op")
	b.ReportMetric(float64(cb.Nanoseconds())/ops, "baseline-cpu-ns/op")
	b.ReportMetric(float64(tb)/float64(ts), "throughput-ratio")
}

// BenchmarkMemRatio is the memory benchmark the README reports: the
// store against a single RWMutex map doing the same copies and checks
// (see bench_mem_test.go), interleaved. PutSameValidator is Put against a
// baseline that validates with the store's own validator.
func BenchmarkMemRatio(b *testing.B) {
	ctx := context.Background()
	keys := benchKeyNames(benchKeys)
	s := NewMemStore()
	m := &rwMap{m: map[string][]byte{}}
	for _, k := range keys {
		if _, err := s.Put(ctx, "apis", k, benchValue); err != nil {
			b.Fatal(err)
		}
		_, _ = m.put(ctx, k, benchValue)
	}
	b.Run("Get", func(b *testing.B) {
		alternating(b,
			func(i int) {
				if _, err := s.Get(ctx, "apis", keys[i%benchKeys]); err != nil {
					b.Error(err)
				}
			},
			func(i int) {
				if _, ok := m.get(ctx, keys[i%benchKeys]); !ok {
					b.Error("missing")
				}
			})
	})
	put := func(m *rwMap) func(*testing.B) {
		return func(b *testing.B) {
			alternating(b,
				func(i int) {
					if _, err := s.Put(ctx, "apis", keys[i%benchKeys], benchValue); err != nil {
						b.Error(err)
					}
				},
				func(i int) {
					if _, err := m.put(ctx, keys[i%benchKeys], benchValue); err != nil {
						b.Error(err)
					}
				})
		}
	}
	b.Run("Put", put(m))
	same := &rwMap{m: map[string][]byte{}, sameValidator: true}
	for _, k := range keys {
		_, _ = same.put(ctx, k, benchValue)
	}
	b.Run("PutSameValidator", put(same))
}

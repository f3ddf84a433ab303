package dbmanager

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// The PostgreSQL benchmarks run PGStore side by side with hand-written pgx
// executing the same SQL on the same pool ("rawpgx"), so the result reads
// as a ratio: store ns/op over rawpgx ns/op (target: store throughput at
// least 0.95x raw pgx). Both run in parallel (b.RunParallel) over the same
// 1024 keys and the same value. The store pays for validation (the value
// must be JSON), copies, an explicit Acquire/Release and error mapping.
//
//	go test -run '^$' -bench 'BenchmarkPG' -count 5 ./

// newBenchPGStore returns a store on a fresh database, its pool, and the
// keys, all written once.
func newBenchPGStore(b *testing.B) (*PGStore, *pgxpool.Pool, []string) {
	b.Helper()
	return benchPGStoreOn(b, newTestPool(b))
}

// benchPGStoreOn is newBenchPGStore on a pool of the caller's.
func benchPGStoreOn(b *testing.B, pool *pgxpool.Pool) (*PGStore, *pgxpool.Pool, []string) {
	b.Helper()
	s, err := newPGStore(context.Background(), pool)
	if err != nil {
		b.Fatal(err)
	}
	keys := benchKeyNames(benchKeys)
	for _, k := range keys {
		if _, err := s.Put(context.Background(), "bench", k, benchValue); err != nil {
			b.Fatal(err)
		}
	}
	return s, pool, keys
}

func BenchmarkPGGet(b *testing.B) {
	s, pool, keys := newBenchPGStore(b)
	ctx := context.Background()
	b.Run("store", func(b *testing.B) {
		var n atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				k := keys[int(n.Add(1))%len(keys)]
				if _, err := s.Get(ctx, "bench", k); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("rawpgx", func(b *testing.B) {
		var n atomic.Int64
		sql := s.pg.sql.Get
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				k := keys[int(n.Add(1))%len(keys)]
				var r Record
				if err := pool.QueryRow(ctx, sql, "bench", k).Scan(&r.Value, &r.Version, &r.CreatedAt, &r.UpdatedAt); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

func BenchmarkPGPut(b *testing.B) {
	s, pool, keys := newBenchPGStore(b)
	ctx := context.Background()
	b.Run("store", func(b *testing.B) {
		var n atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				k := keys[int(n.Add(1))%len(keys)]
				if _, err := s.Put(ctx, "bench", k, benchValue); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("rawpgx", func(b *testing.B) {
		var n atomic.Int64
		sql := s.pg.sql.Upsert
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				k := keys[int(n.Add(1))%len(keys)]
				var version int64
				var created, updated time.Time
				if err := pool.QueryRow(ctx, sql, "bench", k, benchValue).Scan(&version, &created, &updated); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// interleaved runs store and raw operations alternately in one loop and
// reports the ratio of their total times ("store/raw", 1.0 = parity; the
// throughput target is <= 1.05). Alternating cancels out the drift of a
// shared machine that makes separate sub-benchmarks noisy.
func interleaved(b *testing.B, store, raw func(key string) error, keys []string) {
	var storeTime, rawTime time.Duration
	for i := 0; b.Loop(); i++ {
		k := keys[i%len(keys)]
		first, second, firstTime, secondTime := store, raw, &storeTime, &rawTime
		if i%2 == 1 { // alternate which goes first too
			first, second, firstTime, secondTime = raw, store, &rawTime, &storeTime
		}
		t0 := time.Now()
		if err := first(k); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := second(k); err != nil {
			b.Fatal(err)
		}
		*firstTime += t1.Sub(t0)
		*secondTime += time.Since(t1)
	}
	b.ReportMetric(float64(storeTime)/float64(rawTime), "store/raw")
	b.ReportMetric(float64(storeTime.Nanoseconds())/float64(b.N), "store-ns/op")
	b.ReportMetric(float64(rawTime.Nanoseconds())/float64(b.N), "raw-ns/op")
}

func BenchmarkPGInterleaved(b *testing.B) {
	s, pool, keys := newBenchPGStore(b)
	ctx := context.Background()
	b.Run("Get", func(b *testing.B) {
		interleaved(b, func(k string) error {
			_, err := s.Get(ctx, "bench", k)
			return err
		}, func(k string) error {
			var r Record
			return pool.QueryRow(ctx, s.pg.sql.Get, "bench", k).Scan(&r.Value, &r.Version, &r.CreatedAt, &r.UpdatedAt)
		}, keys)
	})
	b.Run("Put", func(b *testing.B) {
		interleaved(b, func(k string) error {
			_, err := s.Put(ctx, "bench", k, benchValue)
			return err
		}, func(k string) error {
			var version int64
			var created, updated time.Time
			return pool.QueryRow(ctx, s.pg.sql.Upsert, "bench", k, benchValue).Scan(&version, &created, &updated)
		}, keys)
	})
}

package dbmanager

import (
	"context"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gatewaykit/dbmanager/internal/pgtest"
)

// The Manager benchmarks measure the Store the way a service uses it:
// m.Store() called from 8 goroutines at once, the Manager's pool holding 8
// connections (DB_POOL_SIZE=8, DB_MAX_OVERFLOW=0), contexts without a
// deadline. The baseline is hand-written pgx running the same SQL on a
// pool of its own of 8 connections to the same database, in alternating
// rounds (alternatingOn), so "throughput-ratio" is Manager calls per
// second over raw pgx calls per second. The targets: Get, Put and
// List of 100 at 0.95x or more.
//
//	go test -run '^$' -bench 'BenchmarkManager' -count 5 ./

const (
	benchGoroutines = 8
	benchPoolSize   = 8
	benchRows       = 10_000 // keys in the benchmark collection
)

// managerBench is a Manager on a fresh database holding benchRows records
// of about 230 bytes in collection "bench", and a raw pgx pool of the same
// size on the same database.
type managerBench struct {
	m    *Manager
	pg   *PGStore // the store behind m.Store(), for its SQL text
	raw  *pgxpool.Pool
	dsn  string
	keys []string
}

func newManagerBench(b *testing.B) *managerBench {
	b.Helper()
	ctx := context.Background()
	dsn := pgtest.URL(b)
	cfg, err := LoadConfig(envOf(map[string]string{
		"DATABASE_URL": dsn, "DB_POOL_SIZE": strconv.Itoa(benchPoolSize), "DB_MAX_OVERFLOW": "0",
	}))
	if err != nil {
		b.Fatal(err)
	}
	m := New(cfg, WithLogger(slog.New(slog.DiscardHandler)))
	if err := m.Init(ctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = m.Close(context.Background()) })
	pool, ok := m.Pool()
	if !ok {
		b.Fatal("the Manager is not on PostgreSQL")
	}
	pg := m.primary.store
	bulkFill(b, pool, pg.Schema(), "bench", benchRows, 200)
	raw, err := pgxpool.New(ctx, withURLParams(dsn, "pool_max_conns="+strconv.Itoa(benchPoolSize)))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(raw.Close)
	keys := make([]string, benchRows)
	for i := range keys {
		keys[i] = bulkKey(i)
	}
	return &managerBench{m: m, pg: pg, raw: raw, dsn: dsn, keys: keys}
}

func (bm *managerBench) key(i int) string { return bm.keys[i%len(bm.keys)] }

// rawGet is Get in hand-written pgx: the store's statement, scanned into a
// Record.
func (bm *managerBench) rawGet(ctx context.Context, key string) (Record, error) {
	r := Record{Collection: "bench", Key: key}
	err := bm.raw.QueryRow(ctx, bm.pg.pg.sql.Get, "bench", key).Scan(&r.Value, &r.Version, &r.CreatedAt, &r.UpdatedAt)
	return r, err
}

// rawPut is an unconditional Put in hand-written pgx.
func (bm *managerBench) rawPut(ctx context.Context, key string, value []byte) (Record, error) {
	r := Record{Collection: "bench", Key: key, Value: value}
	err := bm.raw.QueryRow(ctx, bm.pg.pg.sql.Upsert, "bench", key, value).Scan(&r.Version, &r.CreatedAt, &r.UpdatedAt)
	return r, err
}

// rawList is List in hand-written pgx: the statement the store picks for
// the same page, scanned into Records.
func (bm *managerBench) rawList(ctx context.Context, opts ListOptions) ([]Record, error) {
	sql, args := bm.pg.pg.sql.ListQuery(bm.pg.pg.execMode(), "bench", opts.Prefix, opts.After, opts.Limit+1)
	rows, err := bm.raw.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Record, error) {
		r := Record{Collection: "bench"}
		err := row.Scan(&r.Key, &r.Value, &r.Version, &r.CreatedAt, &r.UpdatedAt)
		return r, err
	})
}

func BenchmarkManagerGet(b *testing.B) {
	bm := newManagerBench(b)
	ctx, s := context.Background(), bm.m.Store()
	alternatingOn(b, benchGoroutines,
		func(i int) {
			if _, err := s.Get(ctx, "bench", bm.key(i)); err != nil {
				b.Error(err)
			}
		},
		func(i int) {
			if _, err := bm.rawGet(ctx, bm.key(i)); err != nil {
				b.Error(err)
			}
		})
}

// BenchmarkManagerGetRequestContext is BenchmarkManagerGet with each call
// under its own request context, as an HTTP handler's would be: a
// deadline of 5 s, cancelled when the call returns, on both sides. pgx
// then watches each context, and the Manager's call bound has a deadline
// to respect instead of its own.
func BenchmarkManagerGetRequestContext(b *testing.B) {
	bm := newManagerBench(b)
	s := bm.m.Store()
	const requestTimeout = 5 * time.Second
	alternatingOn(b, benchGoroutines,
		func(i int) {
			ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
			defer cancel()
			if _, err := s.Get(ctx, "bench", bm.key(i)); err != nil {
				b.Error(err)
			}
		},
		func(i int) {
			ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
			defer cancel()
			if _, err := bm.rawGet(ctx, bm.key(i)); err != nil {
				b.Error(err)
			}
		})
}

func BenchmarkManagerPut(b *testing.B) {
	bm := newManagerBench(b)
	ctx, s := context.Background(), bm.m.Store()
	alternatingOn(b, benchGoroutines,
		func(i int) {
			if _, err := s.Put(ctx, "bench", bm.key(i), benchValue); err != nil {
				b.Error(err)
			}
		},
		func(i int) {
			if _, err := bm.rawPut(ctx, bm.key(i), benchValue); err != nil {
				b.Error(err)
			}
		})
}

// BenchmarkManagerList pages 100 records from places spread over the
// collection.
func BenchmarkManagerList(b *testing.B) {
	bm := newManagerBench(b)
	ctx, s := context.Background(), bm.m.Store()
	const page = 100
	after := func(i int) string { return bm.keys[(i*7919)%(len(bm.keys)-page-1)] }
	alternatingOn(b, benchGoroutines,
		func(i int) {
			p, err := s.List(ctx, "bench", ListOptions{After: after(i), Limit: page})
			if err != nil || len(p.Records) != page {
				b.Error(err, len(p.Records))
			}
		},
		func(i int) {
			recs, err := bm.rawList(ctx, ListOptions{After: after(i), Limit: page})
			if err != nil || len(recs) != page+1 {
				b.Error(err, len(recs))
			}
		})
}

// BenchmarkPGListFreshVsAnalyzed pages through a collection of 200,000
// records right after a bulk load, before any ANALYZE, against the same
// pages of an identical table that was analysed, in alternating rounds
// ("throughput-ratio" is fresh over analysed: 1 means statistics make no
// difference; the target is within 2x, i.e. 0.5 or more).
func BenchmarkPGListFreshVsAnalyzed(b *testing.B) {
	ctx := context.Background()
	pool := newTestPool(b)
	fresh, err := newPGStore(ctx, pool, withSchema("fresh"))
	if err != nil {
		b.Fatal(err)
	}
	analysed, err := newPGStore(ctx, pool, withSchema("analysed"))
	if err != nil {
		b.Fatal(err)
	}
	for _, s := range []*PGStore{fresh, analysed} {
		bulkFill(b, pool, s.Schema(), "apis", bulkRows, 0)
	}
	if _, err := pool.Exec(ctx, `ANALYZE `+pgx.Identifier{"analysed", "records"}.Sanitize()); err != nil {
		b.Fatal(err)
	}
	if reltuples(b, pool, "fresh") >= 0 {
		b.Fatal("the fresh table has statistics")
	}
	shapes := listPageShapes()
	list := func(s *PGStore) func(int) {
		return func(i int) {
			o := shapes[i%len(shapes)]
			o.Limit = 100
			if _, err := s.List(ctx, "apis", o); err != nil {
				b.Error(err)
			}
		}
	}
	alternatingOn(b, 1, list(fresh), list(analysed))
}

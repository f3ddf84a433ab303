package dbmanager

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gatewaykit/dbmanager/internal/pgtest"
)

// openPGStore opens a PGStore of its own on url (a second process's view
// of the primary).
func openPGStore(t *testing.T, url string) *PGStore {
	t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s, err := newPGStore(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRecoveryMovesOutageWritesAndKeepsPrimaryOnConflict(t *testing.T) {
	ctx := context.Background()
	srv := pgtest.NewServer(t)
	url := srv.URL(t)

	// Before the outage PostgreSQL already holds two keys.
	before := openPGStore(t, url)
	if _, err := before.Put(ctx, "apis", "same", []byte(`{"v":"same"}`)); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := before.Put(ctx, "apis", "contested", []byte(`{"v":"primary"}`)); err != nil {
			t.Fatal(err)
		}
	}
	srv.Stop(t)

	var hooked []Conflict
	var hookMu sync.Mutex
	m, logs := newTestManager(t, envConfig(t, "DATABASE_URL", url, "DB_CONNECT_TIMEOUT", "1"),
		OnConflict(func(_ context.Context, c Conflict) {
			hookMu.Lock()
			hooked = append(hooked, c)
			hookMu.Unlock()
		}))
	if err := m.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if h := m.Health(ctx); h.Status != StatusDegraded {
		t.Fatalf("Health during the outage = %+v; want degraded", h)
	}

	s := m.Store()
	written := map[string]Record{}
	for i := range 20 {
		key := fmt.Sprintf("outage-%02d", i)
		r, err := s.Put(ctx, "apis", key, []byte(fmt.Sprintf(`{"i": %d}`, i)))
		if err != nil {
			t.Fatal(err)
		}
		written[key] = r
	}
	if _, err := s.Put(ctx, "apis", "same", []byte(`{"v":"same"}`)); err != nil {
		t.Fatal(err)
	}
	// Five versions in memory, while the primary holds version 3.
	var memContested Record
	for range 5 {
		r, err := s.Put(ctx, "apis", "contested", []byte(`{"v":"memory"}`))
		if err != nil {
			t.Fatal(err)
		}
		memContested = r
	}
	if err := s.Delete(ctx, "apis", "outage-19"); err != nil {
		t.Fatal(err)
	}
	delete(written, "outage-19")

	srv.Start(t)
	took := eventually(t, 15*time.Second, "the Store to move back to PostgreSQL", func() bool { return m.Info().UsingPrimary })
	t.Logf("moved back %s after the server started", took)

	after := openPGStore(t, url)
	for key, w := range written {
		r, err := after.Get(ctx, "apis", key)
		if err != nil {
			t.Fatalf("outage write %q not in PostgreSQL: %v", key, err)
		}
		if string(r.Value) != string(w.Value) || r.Version != w.Version {
			t.Errorf("%q in PostgreSQL = %s v%d; memory acknowledged %s v%d", key, r.Value, r.Version, w.Value, w.Version)
		}
	}
	if _, err := after.Get(ctx, "apis", "outage-19"); !errors.Is(err, ErrNotFound) {
		t.Errorf("key deleted during the outage: %v; want ErrNotFound", err)
	}
	kept, err := after.Get(ctx, "apis", "contested")
	if err != nil {
		t.Fatal(err)
	}
	if string(kept.Value) != `{"v":"primary"}` || kept.Version <= memContested.Version {
		t.Errorf("contested key = %s v%d; want the primary's record with a version above %d", kept.Value, kept.Version, memContested.Version)
	}
	if _, err := s.Put(ctx, "apis", "contested", []byte(`{}`), IfVersion(memContested.Version)); !errors.Is(err, ErrConflict) {
		t.Errorf("IfVersion with the memory version after the move: %v; want ErrConflict", err)
	}
	hookMu.Lock()
	if len(hooked) != 1 || hooked[0].Key != "contested" || string(hooked[0].Memory.Value) != `{"v":"memory"}` || hooked[0].Primary.Version != kept.Version {
		t.Errorf("OnConflict got %+v; want one conflict on \"contested\"", hooked)
	}
	hookMu.Unlock()
	info := m.Info()
	if info.Recoveries != 1 || info.Conflicts != 1 || info.RecordsMoved != len(written)+1 {
		t.Errorf("Info = %+v; want 1 recovery, 1 conflict, %d records moved", info, len(written)+1)
	}
	if h := m.Health(ctx); h.Status != StatusHealthy || !h.UsingPrimary {
		t.Errorf("Health after recovery = %+v", h)
	}
	assertLogged(t, logs, "Primary database recovered", "tls.mode=", "records_moved=", "conflicts=1", "Database health: healthy")
}

func TestRecoveryLosesNoWriteUnderLoad(t *testing.T) {
	ctx := context.Background()
	srv := pgtest.NewServer(t)
	url := srv.URL(t)
	openPGStore(t, url) // create the table, as a previous run of the service would have
	srv.Stop(t)

	m, _ := newTestManager(t, envConfig(t, "DATABASE_URL", url, "DB_CONNECT_TIMEOUT", "1"))
	if err := m.Init(ctx); err != nil {
		t.Fatal(err)
	}
	s := m.Store()

	const writers = 50
	var (
		mu    sync.Mutex
		acked = map[string]Record{}
		stop  atomic.Bool
		wg    sync.WaitGroup
	)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				key := fmt.Sprintf("w%02d-%05d", w, i)
				r, err := s.Put(ctx, "load", key, []byte(fmt.Sprintf(`{"w":%d,"i":%d}`, w, i)))
				if err != nil {
					continue // not acknowledged: may or may not be stored
				}
				mu.Lock()
				acked[key] = r
				mu.Unlock()
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	time.Sleep(200 * time.Millisecond)
	srv.Start(t)
	eventually(t, 15*time.Second, "the move back to PostgreSQL", func() bool { return m.Info().UsingPrimary })
	time.Sleep(100 * time.Millisecond) // writes go on, now on PostgreSQL
	stop.Store(true)
	wg.Wait()

	after := openPGStore(t, url)
	stored := map[string]Record{}
	for cursor := ""; ; {
		page, err := after.List(ctx, "load", ListOptions{After: cursor, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page.Records {
			stored[r.Key] = r
		}
		if page.Next == "" {
			break
		}
		cursor = page.Next
	}
	for key, a := range acked {
		r, ok := stored[key]
		switch {
		case !ok:
			t.Errorf("acknowledged write %s lost", key)
		case r.Version != 1 || string(r.Value) != string(a.Value):
			t.Errorf("%s = %s v%d; acknowledged %s v1 (applied twice?)", key, r.Value, r.Version, a.Value)
		}
	}
	found := len(stored)
	t.Logf("%d writes acknowledged, %d rows in PostgreSQL", len(acked), found)
	if len(acked) < writers {
		t.Fatalf("only %d writes acknowledged; the test did not exercise the move", len(acked))
	}
}

// TestRecoveryAnalyzesAfterALargeMove checks that a move that wrote many
// records refreshes the table's statistics (pgtest runs without
// autovacuum, so nothing else does), and a small one leaves them alone.
func TestRecoveryAnalyzesAfterALargeMove(t *testing.T) {
	ctx := context.Background()
	for _, n := range []int{analyzeAfterMoved - 1, analyzeAfterMoved} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			srv := pgtest.NewServer(t)
			url := srv.URL(t)
			openPGStore(t, url) // the table exists, never analysed
			srv.Stop(t)
			m, _ := newTestManager(t, envConfig(t, "DATABASE_URL", url, "DB_CONNECT_TIMEOUT", "1"))
			if err := m.Init(ctx); err != nil {
				t.Fatal(err)
			}
			for i := range n {
				if _, err := m.Store().Put(ctx, "apis", fmt.Sprintf("k%05d", i), []byte(`{}`)); err != nil {
					t.Fatal(err)
				}
			}
			srv.Start(t)
			eventually(t, 15*time.Second, "the move back to PostgreSQL", func() bool { return m.Info().UsingPrimary })
			var tuples float64
			check := func() bool {
				pool, err := pgxpool.New(ctx, url)
				if err != nil {
					t.Fatal(err)
				}
				defer pool.Close()
				if err := pool.QueryRow(ctx, `SELECT reltuples FROM pg_class WHERE oid = 'dbmanager.records'::regclass`).Scan(&tuples); err != nil {
					t.Fatal(err)
				}
				return tuples >= float64(n)
			}
			if n >= analyzeAfterMoved {
				eventually(t, 15*time.Second, "ANALYZE after the move", check)
				return
			}
			// The Manager closes (and so stops any ANALYZE) before this
			// looks, so a small move's statistics are final here.
			if err := m.Close(ctx); err != nil {
				t.Fatal(err)
			}
			if check() || tuples >= 0 {
				t.Fatalf("a move of %d records analysed the table (reltuples %v)", n, tuples)
			}
		})
	}
}

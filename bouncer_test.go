package dbmanager

// The library behind a real PgBouncer (Debian's 1.18, no prepared
// statement support) that the tests start themselves
// (pgtest.NewPgBouncer), with the library's defaults.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gatewaykit/dbmanager/internal/execmode"
	"github.com/gatewaykit/dbmanager/internal/pgtest"
)

// bouncerPassword is the password of the role the tests log in as through
// PgBouncer; no output may show it.
const bouncerPassword = "Bnc-" + leakMarker + "-pw"

// throughBouncer makes a fresh database on the shared server, a login role
// that owns it (password bouncerPassword), and a PgBouncer of t's own in
// front of the server in the given pool mode. It returns the role's URL
// through PgBouncer.
func throughBouncer(t *testing.T, poolMode string, opts ...pgtest.BouncerOption) string {
	t.Helper()
	admin := pgtest.URL(t)
	role := roleWithPassword(t, admin, bouncerPassword)
	execURL(t, admin, "GRANT CREATE ON DATABASE "+pgx.Identifier{dbName(t, admin)}.Sanitize()+" TO "+role)
	t.Cleanup(func() { dropOwned(admin, role) }) // before roleWithPassword drops the role
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatal("pgtest URL does not parse")
	}
	opts = append([]pgtest.BouncerOption{pgtest.WithPoolMode(poolMode), pgtest.WithBouncerUser(role, bouncerPassword)}, opts...)
	b := pgtest.NewPgBouncer(t, u.Host, opts...)
	u.User = url.UserPassword(role, bouncerPassword)
	return b.URL(u.String())
}

func dbName(t *testing.T, dsn string) string {
	t.Helper()
	_, _, db := serverParts(t, dsn)
	return db
}

func dropOwned(adminURL, role string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if c, err := pgx.Connect(ctx, adminURL); err == nil {
		_, _ = c.Exec(ctx, "DROP OWNED BY "+role)
		_ = c.Close(ctx)
	}
}

// loadResult counts what the callers of a load saw.
type loadResult struct {
	mu     sync.Mutex
	ok     int
	failed map[string]int // by kind: the sentinel, else the SQLSTATE
	sample map[string]string
}

func (r *loadResult) record(op string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil {
		r.ok++
		return
	}
	kind := "other"
	var pgErr interface{ SQLState() string }
	switch {
	case errors.Is(err, ErrUnavailable):
		kind = "unavailable"
	case errors.Is(err, ErrConflict):
		kind = "conflict"
	case errors.Is(err, ErrNotFound):
		kind = "not found"
	case errors.Is(err, context.DeadlineExceeded):
		kind = "deadline"
	case errors.As(err, &pgErr):
		kind = "sqlstate " + pgErr.SQLState()
	}
	kind = op + ": " + kind
	if r.failed == nil {
		r.failed, r.sample = map[string]int{}, map[string]string{}
	}
	r.failed[kind]++
	r.sample[kind] = err.Error()
}

func (r *loadResult) total() (ok, failed int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range r.failed {
		failed += n
	}
	return r.ok, failed
}

// check fails t unless every operation succeeded; it lists failures by
// kind with one message each.
func (r *loadResult) check(t *testing.T, what string) {
	t.Helper()
	ok, failed := r.total()
	t.Logf("%s: %d operations succeeded, %d failed", what, ok, failed)
	if failed > 0 || ok == 0 {
		for kind, n := range r.failed {
			t.Errorf("%s: %d × %s (e.g. %s)", what, n, kind, r.sample[kind])
		}
		t.FailNow()
	}
}

// storeLoad runs rounds of every kind of Store call from goroutines
// goroutines, each on keys of its own, so every call has one right
// outcome: create, read, conditional update, list, conditional delete,
// read of the deleted key (ErrNotFound is the right outcome there).
func storeLoad(ctx context.Context, s Store, goroutines, rounds int) *loadResult {
	res := &loadResult{}
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				key := fmt.Sprintf("g%02d/k%d", g, i)
				value := fmt.Appendf(nil, `{"g":%d,"i":%d}`, g, i)
				r, err := s.Put(ctx, "load", key, value, IfAbsent())
				res.record("create", err)
				if err == nil {
					_, err = s.Get(ctx, "load", key)
					res.record("get", err)
					r, err = s.Put(ctx, "load", key, value, IfVersion(r.Version))
					res.record("update", err)
				}
				_, err = s.List(ctx, "load", ListOptions{Prefix: fmt.Sprintf("g%02d/", g), Limit: 5})
				res.record("list", err)
				if err := s.Delete(ctx, "load", key, IfVersion(r.Version)); err != nil {
					res.record("delete", err)
				} else {
					res.record("delete", nil)
					_, err := s.Get(ctx, "load", key)
					if errors.Is(err, ErrNotFound) {
						err = nil
					} else if err == nil {
						err = errors.New("deleted key still there")
					}
					res.record("get deleted", err)
				}
				cancel()
			}
		}()
	}
	wg.Wait()
	return res
}

// TestPgBouncerStoreLoad: the Manager with its defaults, behind PgBouncer
// in transaction and in session pooling: 16 goroutines calling the Store
// see 0 failures; health says healthy; the start-up log says a pooler was
// found; no output shows the password.
func TestPgBouncerStoreLoad(t *testing.T) {
	for _, mode := range []string{"transaction", "session"} {
		t.Run(mode, func(t *testing.T) {
			var opts []pgtest.BouncerOption
			if mode == "session" {
				// A session holds a server connection for the client
				// connection's life: one each for the Manager's 15.
				opts = append(opts, pgtest.WithBouncerPoolSize(16))
			}
			dsn := throughBouncer(t, mode, opts...)
			m, logs := newTestManager(t, envConfig(t, "DATABASE_URL", dsn))
			if err := m.Init(t.Context()); err != nil {
				t.Fatal(err)
			}
			if info := m.Info(); !info.UsingPrimary {
				t.Fatalf("not on PostgreSQL through PgBouncer: %+v", info)
			}
			res := storeLoad(t.Context(), m.Store(), 16, 25)
			res.check(t, "16 goroutines through PgBouncer ("+mode+" pooling)")
			h := m.Health(t.Context())
			if h.Status != StatusHealthy {
				t.Errorf("health %+v", h)
			}
			assertLogged(t, logs, msgBehindProxy)
			if strings.Contains(logs.String(), msgPoolerStatements) {
				t.Errorf("the Store's own statements made the pool warn:\n%s", logs)
			}
			hj, _ := json.Marshal(h)
			ij, _ := json.Marshal(m.Info())
			for what, out := range map[string]string{"log": logs.String(), "health": string(hj), "info": string(ij)} {
				if strings.Contains(out, leakMarker) {
					t.Errorf("%s shows the password: %s", what, out)
				}
			}
		})
	}
}

// TestPgBouncerStoreNotDetected: behind transaction pooling, a store that
// did not detect the pooler (its mode forced back to cache_statement)
// switches on the first refused statement and runs it again: the callers
// still see 0 failures.
func TestPgBouncerStoreNotDetected(t *testing.T) {
	pc, err := pgxpool.ParseConfig(throughBouncer(t, "transaction"))
	if err != nil {
		t.Fatal(err)
	}
	// Twice PgBouncer's 4 server connections, all open: each prepares the
	// store's statements, which 4 server connections cannot all take.
	pc.MaxConns = 8
	pool, err := pgxpool.NewWithConfig(t.Context(), pc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	for _, c := range acquireN(t, pool, 8) {
		c.Release()
	}
	s, err := newPGStore(t.Context(), pool)
	if err != nil {
		t.Fatal(err)
	}
	if !s.proxied() {
		t.Fatal("NewPGStore did not notice PgBouncer")
	}
	s.pg.mode.Store(int32(pgx.QueryExecModeCacheStatement)) // as if it had not
	res := storeLoad(t.Context(), s, 16, 10)
	res.check(t, "undetected pooler")
	if s.pg.execMode() != pgx.QueryExecModeCacheDescribe {
		t.Fatalf("mode %v after the pooler refused a prepared statement, want cache_describe", s.pg.execMode())
	}
}

// TestPgBouncerMoveBatches: the move's batches (importRecords,
// deleteOwned) through transaction pooling, on pools whose own default
// mode breaks there: every record arrives, conflicts are reported, owned
// rows are deleted.
func TestPgBouncerMoveBatches(t *testing.T) {
	dsn := throughBouncer(t, "transaction")
	for _, mode := range []string{"cache_statement", "describe_exec"} {
		t.Run(mode, func(t *testing.T) {
			pc, err := pgxpool.ParseConfig(dsn + "&default_query_exec_mode=" + mode)
			if err != nil {
				t.Fatal(err)
			}
			pool, err := pgxpool.NewWithConfig(t.Context(), pc)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(pool.Close)
			s, err := newPGStore(t.Context(), pool, withSchema("move_"+mode))
			if err != nil {
				t.Fatal(err)
			}
			ctx := t.Context()
			if _, err := s.Put(ctx, "c", "taken", []byte(`"primary"`)); err != nil {
				t.Fatal(err)
			}
			now := time.Now().UTC().Truncate(time.Microsecond)
			var recs []Record
			for i := range 300 {
				recs = append(recs, Record{Collection: "c", Key: fmt.Sprintf("k%03d", i), Value: fmt.Appendf(nil, "%d", i), Version: 3, CreatedAt: now, UpdatedAt: now})
			}
			recs = append(recs, Record{Collection: "c", Key: "taken", Value: []byte(`"memory"`), Version: 1, CreatedAt: now, UpdatedAt: now})
			// Several batches at once, as on different client connections.
			var wg sync.WaitGroup
			errs := make(chan error, 4)
			for range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					out, err := s.importRecords(ctx, recs, map[recordKey]int64{})
					if err == nil && (len(out) != len(recs) || !out[len(out)-1].conflict || out[0].conflict || out[0].version != 3) {
						err = fmt.Errorf("outcomes %+v ... %+v", out[0], out[len(out)-1])
					}
					errs <- err
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatalf("importRecords through PgBouncer: %v", err)
				}
			}
			got, err := s.List(ctx, "c", ListOptions{Limit: 1000})
			if err != nil || len(got.Records) != 301 {
				t.Fatalf("after the import: %d records, %v", len(got.Records), err)
			}
			owned := map[recordKey]int64{}
			for _, r := range recs[:300] {
				owned[keyOf(r)] = 3
			}
			if err := s.deleteOwned(ctx, owned); err != nil {
				t.Fatalf("deleteOwned through PgBouncer: %v", err)
			}
			got, err = s.List(ctx, "c", ListOptions{Limit: 1000})
			if err != nil || len(got.Records) != 1 || got.Records[0].Key != "taken" || string(got.Records[0].Value) != `"primary"` {
				t.Fatalf("after deleteOwned: %+v, %v", got.Records, err)
			}
		})
	}
}

// TestPgBouncerWarnsAboutPoolSQL: callers' own SQL on Pool() with pgx's
// default (cache_statement) behind transaction pooling fails as it must;
// the Manager logs one WARN that names DB_QUERY_EXEC_MODE and the likely
// cause, however many statements fail. With DB_QUERY_EXEC_MODE=exec the
// same SQL works and nothing is logged. Neither shows the password.
func TestPgBouncerWarnsAboutPoolSQL(t *testing.T) {
	dsn := throughBouncer(t, "transaction")
	// callersSQL runs the same statements from 8 goroutines, each on a
	// connection of its own held by all at once: 8 client connections
	// prepare the same statement names on at most PgBouncer's 4 server
	// connections, so some prepare lands where another client's statement
	// of the same name already is.
	callersSQL := func(m *Manager) (ok int, failures []error) {
		pool, _ := m.Pool()
		var mu sync.Mutex
		var wg, held sync.WaitGroup
		held.Add(8)
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				conn, err := pool.Acquire(t.Context())
				held.Done()
				if err != nil {
					mu.Lock()
					failures = append(failures, err)
					mu.Unlock()
					return
				}
				defer conn.Release()
				held.Wait()
				for i := range 20 {
					var n int
					err := conn.QueryRow(t.Context(), fmt.Sprintf("SELECT $1::int + %d", i%5), g).Scan(&n)
					mu.Lock()
					if err != nil {
						failures = append(failures, err)
					} else {
						ok++
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		return ok, failures
	}

	m, logs := newTestManager(t, envConfig(t, "DATABASE_URL", dsn))
	if err := m.Init(t.Context()); err != nil {
		t.Fatal(err)
	}
	ok, failures := callersSQL(m)
	t.Logf("cache_statement behind transaction pooling: %d ok, %d failed", ok, len(failures))
	if len(failures) == 0 {
		t.Fatal("no statement failed: the test no longer shows the trap")
	}
	for _, err := range failures {
		if !execmode.IsPoolerStatementError(err) {
			t.Fatalf("unexpected failure: %v", err)
		}
		assertNothingLeaks(t, "a failed statement's error", explainAcquireError(t.Context(), must(m.Pool()), err))
	}
	out := logs.String()
	if n := strings.Count(out, msgPoolerStatements); n != 1 {
		t.Fatalf("the warning was logged %d times, want once:\n%s", n, out)
	}
	for _, want := range []string{"level=WARN", "DB_QUERY_EXEC_MODE=exec", "transaction pooler", "query_exec_mode=cache_statement", "SQLSTATE"} {
		if !strings.Contains(out, want) {
			t.Errorf("the warning lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, leakMarker) {
		t.Errorf("the log shows the password:\n%s", out)
	}
	// The Store itself kept working meanwhile.
	storeLoad(t.Context(), m.Store(), 4, 5).check(t, "the Store next to failing Pool() SQL")

	m2, logs2 := newTestManager(t, envConfig(t, "DATABASE_URL", dsn, "DB_QUERY_EXEC_MODE", "exec"))
	if err := m2.Init(t.Context()); err != nil {
		t.Fatal(err)
	}
	if ok, failures := callersSQL(m2); len(failures) > 0 {
		t.Fatalf("DB_QUERY_EXEC_MODE=exec behind transaction pooling: %d ok, %d failed (%v)", ok, len(failures), failures[0])
	}
	if out := logs2.String(); strings.Contains(out, msgPoolerStatements) || strings.Contains(out, leakMarker) {
		t.Errorf("with DB_QUERY_EXEC_MODE=exec: %s", out)
	}
}

func must(p *pgxpool.Pool, ok bool) *pgxpool.Pool {
	if !ok {
		panic("no pool")
	}
	return p
}

// TestPgBouncerRecoveryMove: PostgreSQL behind PgBouncer (transaction
// pooling) is down at start-up, so the Manager serves from memory; when it
// comes back, the move into it runs through PgBouncer too, and loses
// nothing.
func TestPgBouncerRecoveryMove(t *testing.T) {
	ctx := t.Context()
	srv := pgtest.NewServer(t)
	dsn := srv.URL(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal("pgtest URL does not parse")
	}
	b := pgtest.NewPgBouncer(t, u.Host, pgtest.WithPoolMode("transaction"))
	srv.Stop(t)

	m, logs := newTestManager(t, envConfig(t, "DATABASE_URL", b.URL(dsn), "DB_CONNECT_TIMEOUT", "2"))
	if err := m.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if m.Info().UsingPrimary {
		t.Fatal("on PostgreSQL while it is down")
	}
	s := m.Store()
	written := map[string]Record{}
	for i := range 700 { // more than one import batch
		key := fmt.Sprintf("k%03d", i)
		r, err := s.Put(ctx, "outage", key, fmt.Appendf(nil, `{"i":%d}`, i))
		if err != nil {
			t.Fatal(err)
		}
		written[key] = r
	}
	srv.Start(t)
	eventually(t, 30*time.Second, "the move back to PostgreSQL through PgBouncer", func() bool { return m.Info().UsingPrimary })
	if info := m.Info(); info.RecordsMoved != len(written) || info.Conflicts != 0 {
		t.Fatalf("Info after the move: %+v, want %d records moved", info, len(written))
	}
	direct := openPGStore(t, dsn)
	for key, w := range written {
		r, err := direct.Get(ctx, "outage", key)
		if err != nil || string(r.Value) != string(w.Value) || r.Version != w.Version {
			t.Fatalf("%s in PostgreSQL: %+v, %v; memory acknowledged %s v%d", key, r, err, w.Value, w.Version)
		}
	}
	storeLoad(ctx, s, 8, 5).check(t, "after the move")
	if out := logs.String(); strings.Contains(out, msgPoolerStatements) || strings.Contains(out, urlPassword(t, dsn)) {
		t.Errorf("log:\n%s", out)
	}
}

// urlPassword is the password in a postgres:// URL.
func urlPassword(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal("URL does not parse")
	}
	pw, ok := u.User.Password()
	if !ok || pw == "" {
		t.Fatal("URL without a password")
	}
	return pw
}

package dbmanager

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/gatewaykit/dbmanager/internal/pgsql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

func TestPGStoreSchemaCreationRace(t *testing.T) {
	url := pgtestURL(t)
	const n = 4
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			// A pool each, as separate processes would have.
			pool, err := pgxpool.New(context.Background(), url)
			if err != nil {
				errs[i] = err
				return
			}
			defer pool.Close()
			_, errs[i] = newPGStore(context.Background(), pool, withSchema("raced"))
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("starter %d of %d racing on a fresh database: %v", i, n, err)
		}
	}
}

func TestPGStoreSchemaIsQuotedAndSeparate(t *testing.T) {
	pool := newTestPool(t)
	ctx := context.Background()
	weird := `we"ird; DROP TABLE x; --`
	a, err := newPGStore(ctx, pool, withSchema(weird))
	if err != nil {
		t.Fatalf("a schema name with quotes and semicolons is an identifier, quoted: %v", err)
	}
	b, err := newPGStore(ctx, pool) // default schema
	if err != nil {
		t.Fatal(err)
	}
	if a.Schema() != weird || b.Schema() != "dbmanager" {
		t.Errorf("Schema() = %q, %q", a.Schema(), b.Schema())
	}
	if _, err := a.Put(ctx, "c", "k", []byte(`"a"`)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(ctx, "c", "k"); !errors.Is(err, ErrNotFound) {
		t.Errorf("stores in different schemas are separate: %v", err)
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{weird, "records"}.Sanitize()).Scan(&n); err != nil || n != 1 {
		t.Errorf("the record is in the named schema: %d, %v", n, err)
	}
}

func TestPGStoreRejectsBadSchemaNames(t *testing.T) {
	pool := newTestPool(t)
	for _, name := range []string{"", strings.Repeat("s", 64), "a\x00b", "\xff"} {
		if _, err := newPGStore(context.Background(), pool, withSchema(name)); !errors.Is(err, ErrInvalid) {
			t.Errorf("withSchema(%q): error %v, want ErrInvalid", name, err)
		}
	}
	if _, err := newPGStore(context.Background(), pool, withSchema(strings.Repeat("s", 63))); err != nil {
		t.Errorf("a 63-byte schema name is valid: %v", err)
	}
}

func TestPGStoreRefusesNewerSchemaVersion(t *testing.T) {
	pool := newTestPool(t)
	ctx := context.Background()
	if _, err := newPGStore(ctx, pool); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `UPDATE dbmanager.schema_version SET version = $1`, pgsql.LayoutVersion+1); err != nil {
		t.Fatal(err)
	}
	if _, err := newPGStore(ctx, pool); err == nil || !strings.Contains(err.Error(), "version") {
		t.Errorf("a schema from a newer release is refused: %v", err)
	}
}

func TestPGStoreCloseLeavesPoolOpen(t *testing.T) {
	pool := newTestPool(t)
	s, err := newPGStore(context.Background(), pool)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := pool.Ping(context.Background()); err != nil {
		t.Errorf("Close leaves the caller's pool open: %v", err)
	}
}

// TestPGStoreUnavailable points a store at a port nobody listens on.
func TestPGStoreUnavailable(t *testing.T) {
	const password = "Secret-Pa55word-xyzzy"
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	pool, err := pgxpool.New(context.Background(), fmt.Sprintf("postgres://u:%s@%s/db?connect_timeout=2", password, addr))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	_, err = newPGStore(context.Background(), pool)
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("NewPGStore with no server: %v, want ErrUnavailable", err)
	}
	if err != nil && strings.Contains(fmt.Sprintf("%v %+v", err, err), password) {
		t.Errorf("the error shows the password: %v", err)
	}
	// A store whose server went away: operations give ErrUnavailable.
	s := &PGStore{pg: newPGBackend(pgOptions{schema: "dbmanager", acquire: pool.Acquire})}
	s.b = s.pg
	_, err = s.Put(context.Background(), "c", "k", []byte("1"))
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("Put with no server: %v, want ErrUnavailable", err)
	}
	if err := s.Ping(context.Background()); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Ping with no server: %v, want ErrUnavailable", err)
	}
}

// TestPGStoreRetriesWhenNothingWasSent makes the first acquire fail: the
// Put must be tried again, once, and succeed.
func TestPGStoreRetriesWhenNothingWasSent(t *testing.T) {
	pool := newTestPool(t)
	var calls, failures int
	var mu sync.Mutex
	failNext := 1
	acquire := func(ctx context.Context) (*pgxpool.Conn, error) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if failures < failNext {
			failures++
			return nil, errors.New("dial tcp: connection refused")
		}
		return pool.Acquire(ctx)
	}
	s, err := newPGStore(context.Background(), pool, withAcquire(acquire))
	if err != nil {
		t.Fatalf("NewPGStore retries a failed acquire once: %v", err)
	}
	mu.Lock()
	calls, failures = 0, 0
	mu.Unlock()
	if _, err := s.Put(context.Background(), "c", "k", []byte("1")); err != nil {
		t.Errorf("a Put whose first acquire failed is retried: %v", err)
	}
	if calls != 2 {
		t.Errorf("acquire calls = %d, want 2", calls)
	}
	mu.Lock()
	calls, failures, failNext = 0, 0, 2
	mu.Unlock()
	_, err = s.Put(context.Background(), "c", "k", []byte("2"))
	if !errors.Is(err, ErrUnavailable) || calls != 2 {
		t.Errorf("a Put is retried once only: error %v after %d acquires, want ErrUnavailable after 2", err, calls)
	}
	if r, _ := s.Get(context.Background(), "c", "k"); r.Version != 1 {
		t.Errorf("the failed Put changed nothing: version %d", r.Version)
	}
}

// TestPGStoreDoesNotRetryWhatMayHaveRun breaks the connection during a
// write: the error is ErrOutcomeUnknown (which is ErrUnavailable) and the
// write is not repeated.
func TestPGStoreDoesNotRetryWhatMayHaveRun(t *testing.T) {
	pool := newTestPool(t)
	var acquires int
	s, err := newPGStore(context.Background(), pool, withAcquire(func(ctx context.Context) (*pgxpool.Conn, error) {
		acquires++
		return pool.Acquire(ctx)
	}))
	if err != nil {
		t.Fatal(err)
	}
	acquires = 0
	// Terminate the backend that serves the statement, from inside it:
	// pg_terminate_backend(pg_backend_pid()) is run by the server, so the
	// error arrives after the statement was sent.
	_, err = s.pg.get(context.Background(), "c", "k")
	if !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	err = s.pg.withWrite(context.Background(), func(conn *pgxpool.Conn) error {
		_, err := conn.Exec(context.Background(), `SELECT pg_terminate_backend(pg_backend_pid())`)
		return err
	})
	if !errors.Is(err, ErrOutcomeUnknown) || !errors.Is(err, ErrUnavailable) {
		t.Errorf("a connection killed mid-write gives ErrOutcomeUnknown and ErrUnavailable: %v", err)
	}
	if acquires != 2 {
		t.Errorf("a statement that reached the server is not retried: %d acquires, want 2 (one get, one attempt)", acquires)
	}
}

// TestPGStoreLinguisticCollation runs the ordering rules on a database
// whose default collation is ICU en-US, where "a" < "B" and punctuation is
// ignored: COLLATE "C" on the columns must keep bytewise order.
func TestPGStoreLinguisticCollation(t *testing.T) {
	pool := newTestPool(t)
	ctx := context.Background()
	var dbname string
	if err := pool.QueryRow(ctx, `SELECT current_database() || '_icu'`).Scan(&dbname); err != nil {
		t.Fatal(err)
	}
	_, err := pool.Exec(ctx, `CREATE DATABASE `+pgx.Identifier{dbname}.Sanitize()+
		` TEMPLATE template0 ENCODING 'UTF8' LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'`)
	if err != nil {
		t.Skipf("cannot create an ICU database here: %v", err)
	}
	t.Cleanup(func() {
		pool.Exec(context.Background(), `DROP DATABASE IF EXISTS `+pgx.Identifier{dbname}.Sanitize()+` WITH (FORCE)`)
	})
	cfg := pool.Config().ConnConfig.Copy()
	cfg.Database = dbname
	icuPool, err := pgxpool.New(ctx, cfg.ConnString())
	if err != nil {
		t.Fatal(err)
	}
	pcfg := icuPool.Config()
	icuPool.Close()
	pcfg.ConnConfig = cfg
	icuPool, err = pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer icuPool.Close()
	var linguistic bool
	if err := icuPool.QueryRow(ctx, `SELECT 'a' < 'B'`).Scan(&linguistic); err != nil || !linguistic {
		t.Skipf("the ICU database does not sort linguistically (%v)", err)
	}
	s, err := newPGStore(ctx, icuPool)
	if err != nil {
		t.Fatal(err)
	}
	keys := []string{"a", "B", "_", "%", "é", "z\x7f", "e", "Z", "a_b", "a-b", "ab", "aB"}
	for _, k := range keys {
		if _, err := s.Put(ctx, "c", k, []byte("1")); err != nil {
			t.Fatal(err)
		}
	}
	p, err := s.List(ctx, "c", ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range p.Records {
		got = append(got, r.Key)
	}
	want := []string{"%", "B", "Z", "_", "a", "a-b", "aB", "a_b", "ab", "e", "z\x7f", "é"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("List is bytewise on a linguistic database: got %q, want %q", got, want)
	}
	for prefix, want := range map[string]int{"a": 5, "a_": 1, "%": 1, "_": 1} {
		p, err := s.List(ctx, "c", ListOptions{Prefix: prefix})
		if err != nil || len(p.Records) != want {
			t.Errorf("Prefix %q on a linguistic database: %d records (%v), want %d", prefix, len(p.Records), err, want)
		}
	}
}

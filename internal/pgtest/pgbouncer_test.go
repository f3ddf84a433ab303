package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// clients is how many client connections the PgBouncer tests open: more
// than the bouncer's 4 server connections, so those are shared.
const clients = 16

// backendOf returns the host:port of a postgres:// URL.
func backendOf(t *testing.T, dsn string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// hammer opens clients connections to dsn with exec mode mode and runs
// rounds parameterised queries on each, concurrently; it returns every
// error a query returned (connecting must work).
func hammer(t *testing.T, dsn string, mode pgx.QueryExecMode, rounds int) []error {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.DefaultQueryExecMode = mode
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for i := 0; i < clients; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Fatalf("connect through PgBouncer: %v", err)
		}
		defer c.Close(context.Background())
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				var got int
				err := c.QueryRow(ctx, "SELECT $1::int + 1", r).Scan(&got)
				if err == nil && got != r+1 {
					err = fmt.Errorf("got %d, want %d", got, r+1)
				}
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	return errs
}

func TestPgBouncerTransactionPoolingSimpleProtocol(t *testing.T) {
	dsn := URL(t)
	b := NewPgBouncer(t, backendOf(t, dsn))
	if errs := hammer(t, b.URL(dsn), pgx.QueryExecModeSimpleProtocol, 50); len(errs) > 0 {
		t.Fatalf("%d queries failed through PgBouncer in transaction pooling with the simple protocol, first: %v", len(errs), errs[0])
	}
}

// The trap the library must avoid: pgx's default statement cache names
// prepared statements that outlive the transaction, and PgBouncer 1.18 in
// transaction pooling hands the next transaction another server
// connection.
func TestPgBouncerTransactionPoolingBreaksStatementCache(t *testing.T) {
	dsn := URL(t)
	b := NewPgBouncer(t, backendOf(t, dsn))
	errs := hammer(t, b.URL(dsn), pgx.QueryExecModeCacheStatement, 20)
	if len(errs) == 0 {
		t.Fatal("pgx's statement cache worked through PgBouncer 1.18 in transaction pooling; the trap this test documents is gone")
	}
	codes := map[string]int{}
	for _, err := range errs {
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || (pgErr.Code != "42P05" && pgErr.Code != "26000") {
			t.Fatalf("error is not 42P05 or 26000: %v", err)
		}
		codes[pgErr.Code]++
	}
	t.Logf("%d of %d queries failed: %v", len(errs), clients*20, codes)
}

func TestPgBouncerSessionPooling(t *testing.T) {
	dsn := URL(t)
	b := NewPgBouncer(t, backendOf(t, dsn), WithPoolMode("session"), WithBouncerPoolSize(clients))
	if errs := hammer(t, b.URL(dsn), pgx.QueryExecModeCacheStatement, 50); len(errs) > 0 {
		t.Fatalf("%d queries failed through PgBouncer in session pooling, first: %v", len(errs), errs[0])
	}
}

func TestPgBouncerExtraUser(t *testing.T) {
	dsn := URL(t)
	const user, password = "bouncer_app", "s3cret 'quoted\" pw"
	c := connect(t, dsn)
	loginRole(t, c, user, password)
	b := NewPgBouncer(t, backendOf(t, dsn), WithBouncerUser(user, password))

	u, _ := url.Parse(b.URL(dsn))
	u.User = url.UserPassword(user, password)
	var who string
	if err := connect(t, u.String()).QueryRow(context.Background(), "SELECT current_user").Scan(&who); err != nil || who != user {
		t.Fatalf("current_user through PgBouncer = %q, %v; want %s", who, err, user)
	}

	// PgBouncer 1.18 itself refuses a wrong password, with 08P01
	// ("SASL authentication failed"), not PostgreSQL's 28P01.
	u.User = url.UserPassword(user, "wrong")
	_, err := pgxConnect(u.String())
	if pgErr := (*pgconn.PgError)(nil); !errors.As(err, &pgErr) || (pgErr.Code != "08P01" && pgErr.Code != "28P01") {
		t.Fatalf("wrong password through PgBouncer: %v, want SQLSTATE 08P01 (or 28P01)", err)
	}
}

func TestPgBouncerStopAndURL(t *testing.T) {
	dsn := URL(t)
	b := NewPgBouncer(t, backendOf(t, dsn))
	got, _ := url.Parse(b.URL(dsn))
	want, _ := url.Parse(dsn)
	if got.Host != b.Addr() || got.Path != want.Path || got.User.String() != want.User.String() || got.RawQuery != want.RawQuery {
		t.Fatalf("URL changed more than host:port")
	}
	connect(t, b.URL(dsn))
	b.Stop(t)
	if _, err := pgxConnect(b.URL(dsn)); err == nil {
		t.Fatal("connected through a stopped PgBouncer")
	}
	b.Stop(t) // again: nothing
}

// quoteLiteral quotes s as an SQL string literal.
func quoteLiteral(s string) string {
	out := []byte{'\''}
	for i := 0; i < len(s); i++ {
		if s[i] == '\'' {
			out = append(out, '\'')
		}
		out = append(out, s[i])
	}
	return string(append(out, '\''))
}

// loginRole creates the LOGIN role user with password on c's server,
// dropping one left over by an earlier run, and drops it when t ends.
func loginRole(t *testing.T, c *pgx.Conn, user, password string) {
	t.Helper()
	mustExec(t, c, "DROP ROLE IF EXISTS "+user)
	mustExec(t, c, fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD %s", user, quoteLiteral(password)))
	t.Cleanup(func() { c.Exec(context.Background(), "DROP ROLE IF EXISTS "+user) })
}

package pgtest

import (
	"context"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func mustExec(t *testing.T, c *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := c.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func count(t *testing.T, c *pgx.Conn, sql string) int {
	t.Helper()
	var n int
	if err := c.QueryRow(context.Background(), sql).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func TestFreshDatabasesAreIsolated(t *testing.T) {
	a, b := URL(t), URL(t)
	if a == b {
		t.Fatal("two URL calls returned the same database")
	}
	ca, cb := connect(t, a), connect(t, b)
	mustExec(t, ca, "CREATE TABLE t (k text PRIMARY KEY)")
	mustExec(t, ca, "INSERT INTO t VALUES ('x')")
	if n := count(t, ca, "SELECT count(*) FROM t"); n != 1 {
		t.Fatalf("rows in own table = %d, want 1", n)
	}
	if n := count(t, cb, "SELECT count(*) FROM pg_tables WHERE tablename = 't'"); n != 0 {
		t.Fatal("table created in one fresh database is visible in another")
	}
}

func TestDatabaseDroppedAfterTest(t *testing.T) {
	var name string
	t.Run("inner", func(t *testing.T) {
		u, err := url.Parse(URL(t))
		if err != nil {
			t.Fatal(err)
		}
		name = u.Path[1:]
	})
	host, err := sharedHost()
	if err != nil {
		t.Fatal(err)
	}
	c := connect(t, host.urlFor("postgres"))
	var n int
	if err := c.QueryRow(context.Background(), "SELECT count(*) FROM pg_database WHERE datname = $1", name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("database %s still exists after its test ended", name)
	}
}

func TestPasswordAuthentication(t *testing.T) {
	dsn := URL(t)
	c := connect(t, dsn)
	const role, pw = "app_user", `p@ss:w/rd?#%&=`
	mustExec(t, c, "CREATE ROLE "+role+" LOGIN PASSWORD '"+pw+"'")
	t.Cleanup(func() {
		// Roles are cluster-wide: remove it so reruns start clean.
		c.Exec(context.Background(), "DROP ROLE IF EXISTS "+role)
	})
	u, _ := url.Parse(dsn)
	u.User = url.UserPassword(role, pw)
	connect(t, u.String()).Close(context.Background())

	u.User = url.UserPassword(role, "wrong")
	_, err := pgx.Connect(context.Background(), u.String())
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
		t.Fatalf("wrong password: err = %v, want SQLSTATE 28P01", err)
	}
}

func pgxConnect(dsn string) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return pgx.Connect(ctx, dsn)
}

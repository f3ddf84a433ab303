package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// adminTimeout bounds every administrative statement pgtest runs.
const adminTimeout = 60 * time.Second

// dbHost reaches one PostgreSQL server as a user that may create databases
// and makes throwaway databases on it.
type dbHost struct {
	admin url.URL // URL of the administrative database, with credentials

	// running reports whether the server can take statements now; nil
	// means always. Cleanup skips dropping databases on a stopped server.
	running func() bool

	mu   sync.Mutex
	conn *pgx.Conn
}

// urlFor returns the URL of database name on this host.
func (h *dbHost) urlFor(name string) string {
	u := h.admin
	u.Path = "/" + name
	u.RawPath = ""
	return u.String()
}

// redacted is the admin URL without its password, fit for messages.
func (h *dbHost) redacted() string {
	return h.admin.Redacted()
}

// freshDatabase creates an empty database for t from template0 (never
// connected to, so concurrent copies never conflict) and drops it when t
// ends. It returns the new database's URL.
func (h *dbHost) freshDatabase(t testing.TB) string {
	t.Helper()
	name := databaseName(t.Name())
	if err := h.createDatabase(name); err != nil {
		t.Fatalf("pgtest: create database %s on %s: %v", name, h.redacted(), err)
	}
	t.Cleanup(func() {
		if h.running != nil && !h.running() {
			return // stopped or killed by the test; the server's own cleanup removes everything
		}
		err := h.dropDatabase(name)
		if err != nil && (h.running == nil || h.running()) {
			t.Errorf("pgtest: drop database %s on %s: %v", name, h.redacted(), err)
		}
	})
	return h.urlFor(name)
}

// createDatabase creates the empty database name from template0.
func (h *dbHost) createDatabase(name string) error {
	stmt := "CREATE DATABASE " + pgx.Identifier{name}.Sanitize() + " TEMPLATE template0"
	return h.exec(func(ctx context.Context, c *pgx.Conn) error {
		stmt := stmt
		if serverMajor(c) >= 15 {
			// Copying files beats WAL-logging every page (the PostgreSQL
			// 15 default) for the small template0.
			stmt += " STRATEGY FILE_COPY"
		}
		err := execAdmin(ctx, c, stmt)
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42P04" { // duplicate_database: our retry after a lost reply
			return nil
		}
		return err
	}, true)
}

// dropDatabase drops database name, ending its sessions.
func (h *dbHost) dropDatabase(name string) error {
	drop := "DROP DATABASE IF EXISTS " + pgx.Identifier{name}.Sanitize() + " WITH (FORCE)"
	return h.exec(func(ctx context.Context, c *pgx.Conn) error {
		return execAdmin(ctx, c, drop)
	}, true)
}

// execAdmin runs stmt (which may not run in a transaction block, like
// CREATE DATABASE) so that a node fenced read-only with
// default_transaction_read_only, or a primary whose synchronous standby
// is down, does not stop pgtest's own bookkeeping: the session overrides
// both settings for stmt only.
func execAdmin(ctx context.Context, c *pgx.Conn, stmt string) error {
	if _, err := c.Exec(ctx, "SET default_transaction_read_only = off; SET synchronous_commit = local"); err != nil {
		return err
	}
	_, err := c.Exec(ctx, stmt)
	if _, rerr := c.Exec(ctx, "RESET default_transaction_read_only; RESET synchronous_commit"); err == nil {
		err = rerr
	}
	return err
}

// exec runs fn on the cached admin connection, connecting first if needed.
// After a connection-level failure the connection is dropped; fn is then
// run once more on a new connection if idempotent is true or nothing was
// sent.
func (h *dbHost) exec(fn func(context.Context, *pgx.Conn) error, idempotent bool) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		if h.conn == nil {
			h.conn, err = pgx.Connect(ctx, h.admin.String())
			if err != nil {
				h.conn = nil
				return fmt.Errorf("connect: %w", err)
			}
		}
		err = fn(ctx, h.conn)
		var pgErr *pgconn.PgError
		if err == nil || errors.As(err, &pgErr) && !h.conn.IsClosed() {
			return err
		}
		h.closeLocked()
		if !idempotent && !pgconn.SafeToRetry(err) {
			return err
		}
	}
	return err
}

// closeConn closes the cached admin connection, if any.
func (h *dbHost) closeConn() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closeLocked()
}

func (h *dbHost) closeLocked() {
	if h.conn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	h.conn.Close(ctx)
	h.conn = nil
}

var notIdentChars = regexp.MustCompile(`[^a-z0-9]+`)

// databaseName is a unique database name that shows the test's name.
func databaseName(testName string) string {
	s := strings.Trim(notIdentChars.ReplaceAllString(strings.ToLower(testName), "_"), "_")
	if len(s) > 40 {
		s = s[:40]
	}
	return "pgt_" + s + "_" + randomHex(5)
}

// serverMajor is the major version of the server c talks to (0 if unknown).
func serverMajor(c *pgx.Conn) int {
	v := c.PgConn().ParameterStatus("server_version")
	end := strings.IndexFunc(v, func(r rune) bool { return r < '0' || r > '9' })
	if end >= 0 {
		v = v[:end]
	}
	n, _ := strconv.Atoi(v)
	return n
}

package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
)

// RequireEnv is the environment variable that turns "PostgreSQL is not
// available" from a skip into a test failure when set to "1".
const RequireEnv = "DBMANAGER_REQUIRE_POSTGRES"

// DatabaseURLEnv names an existing server to use instead of starting one:
// a postgres:// URL whose user may CREATE DATABASE.
const DatabaseURLEnv = "TEST_DATABASE_URL"

// shared is the package's shared server, chosen on the first URL call.
var shared struct {
	mu     sync.Mutex
	tried  bool
	host   *dbHost      // where fresh databases are made
	server *Server      // non-nil when pgtest started the server itself
	stop   func() error // non-nil when a container must be ended at exit
	source string       // which source was used, for messages
	err    error
}

// Main runs the tests of a package and then stops the package's shared
// server and removes everything pgtest created. Use it in TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
// A failed cleanup turns a passing run into exit code 1.
func Main(m *testing.M) int {
	code := m.Run()
	if err := shutdown(); err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: cleanup failed: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// shutdown stops the shared server and ends the local environment.
func shutdown() error {
	var errs []error
	shared.mu.Lock()
	if shared.host != nil {
		shared.host.closeConn()
	}
	if shared.server != nil {
		errs = append(errs, shared.server.destroy())
	}
	if shared.stop != nil {
		errs = append(errs, shared.stop())
	}
	shared.mu.Unlock()
	local.mu.Lock()
	env := local.env
	local.mu.Unlock()
	if env != nil {
		errs = append(errs, env.shutdown())
	}
	return errors.Join(errs...)
}

// URL returns the postgres:// URL of a fresh, empty database on the
// package's shared server, dropped when t ends. The server is the first
// that works of: TEST_DATABASE_URL, a server started from the local
// PostgreSQL binaries, a PostgreSQL container when a Docker engine answers
// (both stopped by [Main]). If none works, t is skipped with
// the reason, or fails when DBMANAGER_REQUIRE_POSTGRES=1. Local servers
// log in as the superuser "postgres" with sslmode=disable.
func URL(t testing.TB) string {
	t.Helper()
	host, err := sharedHost()
	if err != nil {
		unavailable(t, err)
	}
	return host.freshDatabase(t)
}

// Source describes where the shared server of [URL] comes from ("" before
// the first URL call): "TEST_DATABASE_URL", "local binaries in DIR" or
// "Docker container IMAGE".
func Source() string {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	return shared.source
}

// sharedHost picks and starts the shared server once.
func sharedHost() (*dbHost, error) {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.tried {
		return shared.host, shared.err
	}
	shared.tried = true
	s, err := pickSource(sharedSources())
	if err != nil {
		shared.err = err
		return nil, err
	}
	shared.host, shared.server, shared.stop, shared.source = s.host, s.server, s.stop, s.source
	return s.host, nil
}

// externalHost checks that raw is a usable postgres:// URL of a server we
// can create databases on.
func externalHost(raw string) (*dbHost, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		// Never echo raw: it may hold a password.
		return nil, errors.New("not a postgres:// URL")
	}
	h := &dbHost{admin: *u}
	err = h.exec(func(ctx context.Context, c *pgx.Conn) error {
		var ok bool
		err := c.QueryRow(ctx, "SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user").Scan(&ok)
		if err == nil && !ok {
			err = errors.New("its user may not CREATE DATABASE")
		}
		return err
	}, true)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", h.redacted(), err)
	}
	return h, nil
}

// unavailable skips t because no PostgreSQL source works, or fails it when
// DBMANAGER_REQUIRE_POSTGRES=1.
func unavailable(t testing.TB, reason error) {
	t.Helper()
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf("pgtest: PostgreSQL is required (%s=1) but not available: %v", RequireEnv, reason)
		return
	}
	t.Skipf("pgtest: PostgreSQL not available (set %s=1 to fail instead): %v", RequireEnv, reason)
}

package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// replicationTimeout bounds each wait for a standby to stream, catch up or
// follow a new primary.
const replicationTimeout = 60 * time.Second

// newStandby makes node i a standby of primary with pg_basebackup and
// starts it on a free port.
func (c *Cluster) newStandby(i int, primary *Server) (*Server, error) {
	dir, data, err := c.env.newEmptyServerDir()
	if err != nil {
		return nil, err
	}
	s := c.newNode(i, dir, data)
	if err := c.basebackup(s, primary); err != nil {
		return s, err
	}
	if err := c.writeStandbyConf(s, primary); err != nil {
		return s, err
	}
	s.args = c.nodeArgs(i, false)
	return s, s.start(true)
}

// passwordEnv passes the superuser password to a client tool without
// putting it on a command line.
func (c *Cluster) passwordEnv() []string { return []string{"PGPASSWORD=" + c.password} }

// basebackup copies primary into s's (absent or empty) data dir with
// pg_basebackup -R -X stream, as the postgres user.
func (c *Cluster) basebackup(s, primary *Server) error {
	out, err := c.env.runEnv(c.passwordEnv(), "pg_basebackup",
		"-D", s.data, "-h", primary.Host(), "-p", strconv.Itoa(primary.Port()), "-U", superuser,
		"-X", "stream", "-R", "-c", "fast", "--no-sync", "--no-manifest", "-w")
	if err != nil {
		return fmt.Errorf("pg_basebackup from %s: %w\n%s", primary.name, err, tail(out, 2000))
	}
	return nil
}

// conninfo is the libpq connection string a standby uses to stream from
// primary, naming itself app.
func (c *Cluster) conninfo(primary *Server, app string) string {
	kv := [][2]string{
		{"host", primary.Host()}, {"port", strconv.Itoa(primary.Port())},
		{"user", superuser}, {"password", c.password},
		{"application_name", app}, {"sslmode", "disable"},
	}
	parts := make([]string, len(kv))
	for i, p := range kv {
		v := strings.ReplaceAll(strings.ReplaceAll(p[1], `\`, `\\`), `'`, `\'`)
		parts[i] = p[0] + "='" + v + "'"
	}
	return strings.Join(parts, " ")
}

// confQuote quotes v as a postgresql.conf / ALTER SYSTEM string literal.
func confQuote(v string) string { return "'" + strings.ReplaceAll(v, "'", "''") + "'" }

// writeStandbyConf makes s (stopped) a standby of primary: standby.signal
// and a postgresql.auto.conf holding only primary_conninfo (whatever
// pg_basebackup or pg_rewind copied there from the source is replaced,
// including a fence).
func (c *Cluster) writeStandbyConf(s, primary *Server) error {
	auto := "# Written by pgtest; ALTER SYSTEM rewrites it.\nprimary_conninfo = " +
		confQuote(c.conninfo(primary, s.name)) + "\n"
	if err := writeOwned(filepath.Join(s.data, "postgresql.auto.conf"), auto, c.env); err != nil {
		return err
	}
	return writeOwned(filepath.Join(s.data, "standby.signal"), "", c.env)
}

// writeOwned writes a file with mode 0600 owned by the postgres user.
func writeOwned(path, text string, env *localEnv) error {
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		return err
	}
	if c := env.cred; c != nil {
		return os.Chown(path, int(c.Uid), int(c.Gid))
	}
	return nil
}

// poll runs check every pollInterval*10 until it reports done, fails, or
// timeout passes; what names the awaited state in the timeout error.
func poll(timeout time.Duration, what string, check func(ctx context.Context) (bool, error)) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		done, err := check(ctx)
		cancel()
		if done && err == nil {
			return nil
		}
		last = err
		if time.Now().After(deadline) {
			if last != nil {
				return fmt.Errorf("%s: not after %v: %w", what, timeout, last)
			}
			return fmt.Errorf("%s: not after %v", what, timeout)
		}
		time.Sleep(10 * pollInterval)
	}
}

// query runs fn on a new connection to s's "postgres" database (not the
// cached admin connection, so it sees what a new session sees).
func (s *Server) query(ctx context.Context, fn func(*pgx.Conn) error) error {
	conn, err := pgx.Connect(ctx, s.host.urlFor("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return fn(conn)
}

// queryRow scans one row of sql on s's cached admin connection.
func (s *Server) queryRow(sql string, args []any, dest ...any) error {
	return s.host.exec(func(ctx context.Context, c *pgx.Conn) error {
		return c.QueryRow(ctx, sql, args...).Scan(dest...)
	}, true)
}

// waitStreaming waits until primary reports standby as streaming.
func (c *Cluster) waitStreaming(primary, standby *Server) error {
	return c.waitReplicationState(primary, standby, replicationTimeout,
		"state = 'streaming'", "streaming")
}

// waitSync waits until primary reports standby as its synchronous standby.
func (c *Cluster) waitSync(primary, standby *Server) error {
	return c.waitReplicationState(primary, standby, replicationTimeout,
		"state = 'streaming' AND sync_state = 'sync'", "synchronous")
}

func (c *Cluster) waitReplicationState(primary, standby *Server, timeout time.Duration, cond, what string) error {
	err := poll(timeout, fmt.Sprintf("%s streaming from %s (%s)", standby.name, primary.name, what),
		func(context.Context) (bool, error) {
			var n int
			err := primary.queryRow("SELECT count(*) FROM pg_stat_replication WHERE application_name = $1 AND "+cond,
				[]any{standby.name}, &n)
			return n > 0, err
		})
	if err != nil {
		return fmt.Errorf("%w; %s log:\n%s", err, standby.name, standby.logSince(0))
	}
	return nil
}

// Database creates a fresh, empty database on the primary, waits until
// every running standby has replayed its creation (so a standby with an
// apply delay makes this take that long), and drops it when t ends, on the
// node that is the primary then, if it runs. It returns the database's
// name, for [Cluster.NodeURL] and [Cluster.MultiHostURL].
func (c *Cluster) Database(t testing.TB) string {
	t.Helper()
	p := c.Primary()
	if !p.isRunning() {
		t.Fatalf("pgtest: Cluster.Database: primary %s is not running", p.name)
	}
	name := databaseName(t.Name())
	if err := p.host.createDatabase(name); err != nil {
		t.Fatalf("pgtest: Cluster.Database: create %s on %s: %v", name, p.name, err)
	}
	t.Cleanup(func() {
		p := c.Primary()
		if !p.isRunning() {
			return
		}
		if err := p.host.dropDatabase(name); err != nil && p.isRunning() {
			t.Errorf("pgtest: Cluster.Database: drop %s on %s: %v", name, p.name, err)
		}
	})
	if err := c.waitCaughtUp(); err != nil {
		t.Fatalf("pgtest: Cluster.Database: %v", err)
	}
	return name
}

// WaitCaughtUp returns once every running standby has replayed the
// primary's WAL up to its pg_current_wal_lsn() at the time of the call, so
// everything committed on the primary before the call is visible on every
// standby. Running nodes that are not in recovery (an old primary not yet
// rebuilt) are skipped. It fails t after a minute.
func (c *Cluster) WaitCaughtUp(t testing.TB) {
	t.Helper()
	if err := c.waitCaughtUp(); err != nil {
		t.Fatalf("pgtest: Cluster.WaitCaughtUp: %v", err)
	}
}

func (c *Cluster) waitCaughtUp() error {
	p := c.Primary()
	lsn, err := currentLSN(p)
	if err != nil {
		return err
	}
	var errs []error
	for _, s := range c.Standbys() {
		if s.isRunning() {
			errs = append(errs, waitReplayed(p, s, lsn, replicationTimeout))
		}
	}
	return errors.Join(errs...)
}

// currentLSN is p's pg_current_wal_lsn().
func currentLSN(p *Server) (string, error) {
	var lsn string
	if err := p.queryRow("SELECT pg_current_wal_lsn()::text", nil, &lsn); err != nil {
		return "", fmt.Errorf("current WAL position of primary %s: %w", p.name, err)
	}
	return lsn, nil
}

// waitReplayed waits until s has replayed WAL up to lsn of primary p, or
// is not in recovery.
func waitReplayed(p, s *Server, lsn string, timeout time.Duration) error {
	err := poll(timeout, fmt.Sprintf("%s replayed %s of %s", s.name, lsn, p.name),
		func(context.Context) (bool, error) {
			var recovering, done bool
			err := s.queryRow("SELECT pg_is_in_recovery(), coalesce(pg_last_wal_replay_lsn() >= $1::pg_lsn, false)",
				[]any{lsn}, &recovering, &done)
			return !recovering || done, err
		})
	if err != nil {
		return fmt.Errorf("%w; %s log:\n%s", err, s.name, s.logSince(0))
	}
	return nil
}

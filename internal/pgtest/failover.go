package pgtest

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// followTimeout bounds how long a re-pointed standby may take to stream
// from a new primary before Promote rebuilds it instead.
const followTimeout = 20 * time.Second

// Promote promotes the standby s (SELECT pg_promote()) and returns once it
// accepts writes: pg_is_in_recovery() is false and a read-write
// transaction that takes a transaction id commits on a new session. Every
// other running node that is in recovery is then re-pointed to s
// (primary_conninfo through ALTER SYSTEM + pg_reload_conf();
// recovery_target_timeline is PostgreSQL's default, latest) and Promote
// waits until it streams from s; one that cannot follow the new timeline
// (it replayed WAL past the fork) is rebuilt as with [Cluster.Rebuild]
// and the test log says so. [Cluster.Primary] is s afterwards.
//
// The old primary is left as it is (stopped, killed, or still running as
// a primary, perhaps fenced): make it a standby with [Cluster.Rebuild].
// s has no synchronous standby: its commits do not wait for anyone.
func (c *Cluster) Promote(t testing.TB, s *Server) {
	t.Helper()
	c.mustBeNode(t, "Promote", s)
	if !s.isRunning() {
		t.Fatalf("pgtest: Cluster.Promote: %s is not running", s.name)
	}
	var promoted bool
	if err := s.queryRow("SELECT pg_promote(true, 60)", nil, &promoted); err != nil {
		t.Fatalf("pgtest: Cluster.Promote: pg_promote on %s: %v", s.name, err)
	}
	if !promoted {
		t.Fatalf("pgtest: Cluster.Promote: %s did not finish promotion within 60 s; log:\n%s", s.name, s.logSince(0))
	}
	err := poll(replicationTimeout, s.name+" accepts writes", func(ctx context.Context) (bool, error) {
		return true, s.query(ctx, func(conn *pgx.Conn) error {
			_, err := conn.Exec(ctx, "BEGIN READ WRITE; SELECT pg_current_xact_id(); COMMIT")
			return err
		})
	})
	if err != nil {
		t.Fatalf("pgtest: Cluster.Promote: %v", err)
	}
	c.mu.Lock()
	c.primary = s
	c.mu.Unlock()

	var followers []*Server
	for _, n := range c.nodes {
		if n == s || !n.isRunning() {
			continue
		}
		var recovering bool
		if err := n.queryRow("SELECT pg_is_in_recovery()", nil, &recovering); err != nil {
			t.Fatalf("pgtest: Cluster.Promote: ask %s whether it is a standby: %v", n.name, err)
		}
		if !recovering {
			continue // an old primary still running: Rebuild's job
		}
		alter := "ALTER SYSTEM SET primary_conninfo = " + confQuote(c.conninfo(s, n.name))
		if err := n.host.exec(func(ctx context.Context, conn *pgx.Conn) error {
			if _, err := conn.Exec(ctx, alter); err != nil {
				return err
			}
			_, err := conn.Exec(ctx, "SELECT pg_reload_conf()")
			return err
		}, true); err != nil {
			t.Fatalf("pgtest: Cluster.Promote: re-point %s to %s: %v", n.name, s.name, err)
		}
		followers = append(followers, n)
	}
	lsn, err := currentLSN(s)
	if err != nil {
		t.Fatalf("pgtest: Cluster.Promote: %v", err)
	}
	for _, n := range followers {
		if err := c.waitFollows(s, n, lsn, followTimeout); err != nil {
			t.Logf("pgtest: Cluster.Promote: %s does not follow %s, rebuilding it: %.300v", n.name, s.name, err)
			if _, err := c.rebuild(s, n); err != nil {
				t.Fatalf("pgtest: Cluster.Promote: rebuild %s: %v", n.name, err)
			}
		}
	}
}

// Rebuild makes s (typically the old primary: stopped, killed or still
// running) a standby of the current primary: it stops s, runs pg_rewind
// --source-server against the primary (a killed s gets crash recovery
// first, by pg_rewind itself, so it never runs as a primary again), falling
// back to a fresh pg_basebackup when pg_rewind fails, writes standby.signal
// and a postgresql.auto.conf with only primary_conninfo (so s comes back
// unfenced), starts s on its port and returns once it streams. s keeps its
// name and apply delay; the initial primary's synchronous_standby_names
// (from [WithSynchronousStandby]) is dropped.
func (c *Cluster) Rebuild(t testing.TB, s *Server) {
	t.Helper()
	c.mustBeNode(t, "Rebuild", s)
	p := c.Primary()
	if s == p {
		t.Fatalf("pgtest: Cluster.Rebuild: %s is the primary; Promote another node first", s.name)
	}
	if !p.isRunning() {
		t.Fatalf("pgtest: Cluster.Rebuild: primary %s is not running", p.name)
	}
	how, err := c.rebuild(p, s)
	if err != nil {
		t.Fatalf("pgtest: Cluster.Rebuild: %v", err)
	}
	t.Logf("pgtest: Cluster.Rebuild: %s is a standby of %s again (%s)", s.name, p.name, how)
}

// rebuild makes s a standby of primary and says how: "pg_rewind" or
// "pg_basebackup" (after pg_rewind failed).
func (c *Cluster) rebuild(primary, s *Server) (how string, err error) {
	if err := s.stop(); err != nil {
		return "", fmt.Errorf("stop %s: %w", s.name, err)
	}
	// A just-promoted primary records its new timeline in pg_control only
	// at its next checkpoint; pg_rewind reads it there.
	if err := primary.host.exec(func(ctx context.Context, conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, "CHECKPOINT")
		return err
	}, true); err != nil {
		return "", fmt.Errorf("checkpoint on %s: %w", primary.name, err)
	}
	how = "pg_rewind"
	if err := c.rewind(s, primary); err != nil {
		// Diverged beyond what pg_rewind handles, or no common history:
		// copy the primary afresh.
		how = "pg_basebackup after " + firstLine(err.Error())
		if rerr := os.RemoveAll(s.data); rerr != nil {
			return "", fmt.Errorf("%w; remove %s for a fresh copy: %w", err, s.name, rerr)
		}
		if berr := c.basebackup(s, primary); berr != nil {
			return "", fmt.Errorf("%w; then %w", err, berr)
		}
	}
	if err := c.writeStandbyConf(s, primary); err != nil {
		return "", err
	}
	s.mu.Lock()
	s.args = c.nodeArgs(slices.Index(c.nodes, s), false)
	s.mu.Unlock()
	if err := s.start(false); err != nil {
		return "", fmt.Errorf("start %s as a standby: %w", s.name, err)
	}
	lsn, err := currentLSN(primary)
	if err != nil {
		return "", err
	}
	return how, c.waitFollows(primary, s, lsn, replicationTimeout)
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// waitFollows waits until s streams from primary and has replayed its WAL
// up to lsn (so it is on primary's timeline), allowing s's apply delay on
// top of timeout.
func (c *Cluster) waitFollows(primary, s *Server, lsn string, timeout time.Duration) error {
	timeout += c.cfg.applyDelay[slices.Index(c.nodes, s)-1]
	if err := c.waitReplicationState(primary, s, timeout, "state = 'streaming'", "streaming"); err != nil {
		return err
	}
	return waitReplayed(primary, s, lsn, timeout)
}

// rewind runs pg_rewind on s's data dir (s stopped) against primary.
func (c *Cluster) rewind(s, primary *Server) error {
	src := fmt.Sprintf("host=%s port=%d user=%s dbname=postgres sslmode=disable",
		primary.Host(), primary.Port(), superuser)
	out, err := c.env.runEnv(c.passwordEnv(), "pg_rewind",
		"--target-pgdata="+s.data, "--source-server="+src, "--no-sync")
	if err != nil {
		return fmt.Errorf("pg_rewind %s from %s: %w\n%s", s.name, primary.name, err, tail(out, 2000))
	}
	return nil
}

// mustBeNode fails t unless s is a node of c.
func (c *Cluster) mustBeNode(t testing.TB, method string, s *Server) {
	t.Helper()
	if !slices.Contains(c.nodes, s) {
		t.Fatalf("pgtest: Cluster.%s: the server on port %s is not a node of this cluster", method, strconv.Itoa(s.Port()))
	}
}

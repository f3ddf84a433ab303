package pgtest

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
)

// Fence makes s read-only in place, as Aurora does to a failed writer:
// ALTER SYSTEM SET default_transaction_read_only = on, then
// pg_reload_conf(). It returns once a new session sees
// transaction_read_only = on; sessions already open follow at their next
// statement (unless they set the parameter themselves). Writes then fail
// with SQLSTATE 25006 (read_only_sql_transaction); reads, SELECT 1 pings
// and connections keep working, and pg_is_in_recovery() stays false.
// pgtest's own database bookkeeping ignores the fence.
func (s *Server) Fence(t testing.TB) {
	t.Helper()
	if err := s.setReadOnly("ALTER SYSTEM SET default_transaction_read_only = on", "on"); err != nil {
		t.Fatalf("pgtest: Server.Fence: %v", err)
	}
}

// Unfence undoes [Server.Fence] (ALTER SYSTEM RESET
// default_transaction_read_only, then pg_reload_conf()) and returns once a
// new session sees transaction_read_only = off.
func (s *Server) Unfence(t testing.TB) {
	t.Helper()
	if err := s.setReadOnly("ALTER SYSTEM RESET default_transaction_read_only", "off"); err != nil {
		t.Fatalf("pgtest: Server.Unfence: %v", err)
	}
}

func (s *Server) setReadOnly(alter, want string) error {
	if !s.isRunning() {
		return fmt.Errorf("server %s on port %d is not running", s.name, s.Port())
	}
	err := s.host.exec(func(ctx context.Context, c *pgx.Conn) error {
		if _, err := c.Exec(ctx, alter); err != nil {
			return err
		}
		_, err := c.Exec(ctx, "SELECT pg_reload_conf()")
		return err
	}, true)
	if err != nil {
		return err
	}
	return poll(replicationTimeout, "new sessions see transaction_read_only = "+want,
		func(ctx context.Context) (bool, error) {
			var got string
			err := s.query(ctx, func(c *pgx.Conn) error {
				return c.QueryRow(ctx, "SHOW transaction_read_only").Scan(&got)
			})
			return got == want, err
		})
}

// InRecovery reports whether s is in recovery (a standby): SELECT
// pg_is_in_recovery(). It fails t if s cannot be asked.
func (s *Server) InRecovery(t testing.TB) bool {
	t.Helper()
	var r bool
	if err := s.queryRow("SELECT pg_is_in_recovery()", nil, &r); err != nil {
		t.Fatalf("pgtest: Server.InRecovery: %v", err)
	}
	return r
}

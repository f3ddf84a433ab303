package dbmanager

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gatewaykit/dbmanager/internal/pgtest"
)

// newTestPool opens a pool on a fresh, empty database and closes it when
// the test ends. It skips the test when no PostgreSQL is available (unless
// DBMANAGER_REQUIRE_POSTGRES=1).
func newTestPool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// newTestPGStore returns a PGStore on a fresh database.
func newTestPGStore(t testing.TB, opts ...pgOption) *PGStore {
	t.Helper()
	s, err := newPGStore(context.Background(), newTestPool(t), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// pgtestURL is pgtest.URL, for tests that open their own pools.
func pgtestURL(t testing.TB) string { return pgtest.URL(t) }

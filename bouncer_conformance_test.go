package dbmanager_test

import (
	"context"
	"log/slog"
	"net/url"
	"testing"
	"time"

	"github.com/gatewaykit/dbmanager"
	"github.com/gatewaykit/dbmanager/internal/pgtest"
	"github.com/gatewaykit/dbmanager/storetest"
)

// The Store contract behind a real PgBouncer 1.18 (no prepared statement
// support), with the library's defaults: a PGStore on a plain pgxpool
// (pgx's default exec mode, cache_statement, for the pool) and the
// Manager's Store from a DATABASE_URL that points at PgBouncer.

// bouncerInFront starts a PgBouncer of t's own in front of the shared
// server and returns a function giving a fresh database's URL through it.
func bouncerInFront(t *testing.T, poolMode string) func(t testing.TB) string {
	t.Helper()
	u, err := url.Parse(pgtest.URL(t))
	if err != nil {
		t.Fatal("pgtest URL does not parse")
	}
	b := pgtest.NewPgBouncer(t, u.Host, pgtest.WithPoolMode(poolMode))
	return func(t testing.TB) string { return b.URL(pgtest.URL(t)) }
}

func TestConformancePGStoreBehindPgBouncer(t *testing.T) {
	for _, mode := range []string{"transaction", "session"} {
		t.Run(mode, func(t *testing.T) {
			storetest.Run(t, pgStoreOn(bouncerInFront(t, mode)))
		})
	}
}

func TestConformanceManagerBehindPgBouncer(t *testing.T) {
	fresh := bouncerInFront(t, "transaction")
	storetest.Run(t, func(t *testing.T) dbmanager.Store {
		cfg, err := dbmanager.LoadConfig(func(k string) string {
			if k == "DATABASE_URL" {
				return fresh(t)
			}
			return ""
		})
		if err != nil {
			t.Fatal(err)
		}
		m := dbmanager.New(cfg, dbmanager.WithLogger(slog.New(slog.DiscardHandler)))
		if err := m.Init(t.Context()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = m.Close(ctx)
		})
		if !m.Info().UsingPrimary {
			t.Fatalf("not on PostgreSQL through PgBouncer: %+v", m.Info())
		}
		return m.Store()
	})
}

package dbmanager_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gatewaykit/dbmanager"
	"github.com/gatewaykit/dbmanager/internal/pgtest"
	"github.com/gatewaykit/dbmanager/storetest"
)

func TestConformanceMemStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) dbmanager.Store { return dbmanager.NewMemStore() })
}

func TestConformancePGStore(t *testing.T) {
	storetest.Run(t, pgStoreOn(pgtest.URL))
}

// pgStoreOn returns a storetest constructor: a PGStore with the defaults
// on a plain pgxpool of its own, on the database url(t) names.
func pgStoreOn(url func(t testing.TB) string) func(t *testing.T) dbmanager.Store {
	return func(t *testing.T) dbmanager.Store {
		pool, err := pgxpool.New(context.Background(), url(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		s, err := dbmanager.NewPGStore(t.Context(), pool)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
}

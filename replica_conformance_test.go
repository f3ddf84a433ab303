package dbmanager_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/gatewaykit/dbmanager"
	"github.com/gatewaykit/dbmanager/internal/pgtest"
	"github.com/gatewaykit/dbmanager/storetest"
)

// managerStore is a Manager's Store that closes its Manager (storetest
// checks the rules for use after Close).
type managerStore struct {
	dbmanager.Store
	m *dbmanager.Manager
}

func (s managerStore) Close() error { return s.m.Close(context.Background()) }

// TestConformanceManagerWithReplicas runs the Store contract through a
// Manager that reads from two replicas (one synchronous, one 1 s behind).
func TestConformanceManagerWithReplicas(t *testing.T) {
	c := pgtest.NewCluster(t, pgtest.WithStandbys(2), pgtest.WithSynchronousStandby(), pgtest.WithApplyDelay(1, time.Second))
	db := c.Database(t)
	env := map[string]string{
		"DATABASE_URL":      c.NodeURL(c.Primary(), db),
		"DATABASE_READ_URL": c.MultiHostURL(db, c.Standbys()...),
	}
	n := 0
	storetest.Run(t, func(t *testing.T) dbmanager.Store {
		cfg, err := dbmanager.LoadConfig(func(k string) string { return env[k] })
		if err != nil {
			t.Fatal(err)
		}
		n++
		m := dbmanager.New(cfg, dbmanager.WithLogger(slog.New(slog.DiscardHandler)), dbmanager.WithStoreSchema("conformance"+string(rune('a'+n))))
		t.Cleanup(func() { _ = m.Close(context.Background()) })
		if err := m.Init(t.Context()); err != nil {
			t.Fatal(err)
		}
		if len(m.Info().Replicas) != 2 {
			t.Fatalf("replicas not configured: %+v", m.Info())
		}
		return managerStore{Store: m.Store(), m: m}
	})
}

package dbmanager_test

import (
	"context"
	"errors"
	"log"

	"github.com/gatewaykit/dbmanager"
)

// A write during a failover either never ran (the Store retried it on the
// new writer as long as the call's deadline and DB_CONNECT_TIMEOUT
// allowed, then gave up with ErrUnavailable) or was sent before its
// connection was lost: then its outcome is unknown, and reading the key
// again tells.
func ExampleErrOutcomeUnknown() {
	ctx := context.Background()
	m := dbmanager.Default()
	if err := m.Init(ctx); err != nil {
		log.Fatal(err)
	}
	store := m.Store()
	rec, err := store.Put(ctx, "orders", "o-1001", []byte(`{"total": 42}`))
	switch {
	case errors.Is(err, dbmanager.ErrOutcomeUnknown):
		// It may have applied: look.
		if rec, err = store.Get(ctx, "orders", "o-1001"); err == nil {
			log.Printf("the write applied: version %d", rec.Version)
		}
	case errors.Is(err, dbmanager.ErrUnavailable):
		// It did not run: answer 503 and let the client try again.
	case err != nil:
		log.Fatal(err)
	}
}

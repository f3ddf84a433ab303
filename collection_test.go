package dbmanager

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"
)

type account struct {
	Name    string  `json:"name"`
	Balance int     `json:"balance"`
	Rate    float64 `json:"rate,omitempty"`
}

// forEachBackend runs test on a MemStore and on a PGStore (one fresh
// database for all of the test's subtests).
func forEachBackend(t *testing.T, test func(t *testing.T, s Store)) {
	t.Run("memory", func(t *testing.T) { test(t, NewMemStore()) })
	t.Run("postgresql", func(t *testing.T) { test(t, newTestPGStore(t)) })
}

func TestCollection(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		accounts := NewCollection[account](s, "accounts")

		t.Run("CreateGetPutDelete", func(t *testing.T) {
			d, err := accounts.Create(ctx, "ada", account{Name: "Ada", Balance: 10})
			if err != nil || d.Version != 1 || d.Key != "ada" || d.Value.Balance != 10 || d.CreatedAt.IsZero() {
				t.Fatalf("Create = %+v, %v", d, err)
			}
			if _, err := accounts.Create(ctx, "ada", account{}); !errors.Is(err, ErrConflict) {
				t.Errorf("Create of an existing key: %v, want ErrConflict", err)
			}
			got, err := accounts.Get(ctx, "ada")
			if err != nil || got.Value != (account{Name: "Ada", Balance: 10}) || got.Version != 1 {
				t.Errorf("Get = %+v, %v", got, err)
			}
			if _, err := accounts.Put(ctx, "ada", account{Name: "Ada", Balance: 5}, IfVersion(1)); err != nil {
				t.Errorf("Put IfVersion(current): %v", err)
			}
			if _, err := accounts.Put(ctx, "ada", account{}, IfVersion(1)); !errors.Is(err, ErrConflict) {
				t.Errorf("Put IfVersion(stale): %v, want ErrConflict", err)
			}
			if err := accounts.Delete(ctx, "ada"); err != nil {
				t.Fatal(err)
			}
			if _, err := accounts.Get(ctx, "ada"); !errors.Is(err, ErrNotFound) {
				t.Errorf("Get after Delete: %v, want ErrNotFound", err)
			}
		})

		t.Run("ConcurrentUpdates", func(t *testing.T) {
			const n = 10
			if _, err := accounts.Create(ctx, "counter", account{}); err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			for range n {
				wg.Go(func() {
					if _, err := accounts.Update(ctx, "counter", func(a *account) error { a.Balance++; return nil }); err != nil {
						t.Errorf("Update: %v", err)
					}
				})
			}
			wg.Wait()
			d, err := accounts.Get(ctx, "counter")
			if err != nil || d.Value.Balance != n || d.Version != n+1 {
				t.Errorf("%d concurrent Updates: balance %d version %d (%v), want %d and %d", n, d.Value.Balance, d.Version, err, n, n+1)
			}
		})

		t.Run("UpdateStopsOnErrors", func(t *testing.T) {
			if _, err := accounts.Update(ctx, "nobody", func(*account) error { return nil }); !errors.Is(err, ErrNotFound) {
				t.Errorf("Update of a missing key: %v, want ErrNotFound", err)
			}
			accounts.Put(ctx, "bob", account{Name: "Bob"})
			stop := errors.New("insufficient funds")
			calls := 0
			_, err := accounts.Update(ctx, "bob", func(*account) error { calls++; return stop })
			if !errors.Is(err, stop) || calls != 1 {
				t.Errorf("Update returns fn's error at once: %v after %d calls", err, calls)
			}
		})

		t.Run("UpdateGivesUp", func(t *testing.T) {
			few := NewCollection[account](s, "accounts", WithUpdateAttempts(3))
			few.Put(ctx, "busy", account{})
			calls := 0
			_, err := few.Update(ctx, "busy", func(a *account) error {
				calls++
				// Someone else writes between our read and our write.
				_, err := few.Put(ctx, "busy", account{Balance: 100 + calls})
				return err
			})
			if !errors.Is(err, ErrConflict) || calls != 3 {
				t.Errorf("Update gives up after its attempts with ErrConflict: %v after %d calls", err, calls)
			}
		})

		t.Run("EncodeDecodeErrorsAreInvalid", func(t *testing.T) {
			_, err := accounts.Put(ctx, "nan", account{Rate: math.NaN()})
			var oe *OpError
			if !errors.Is(err, ErrInvalid) || !errors.As(err, &oe) || oe.Key != "nan" {
				t.Errorf("a value that does not encode: %v, want an OpError wrapping ErrInvalid", err)
			}
			if _, err := s.Put(ctx, "accounts", "not-an-account", []byte(`[1,2]`)); err != nil {
				t.Fatal(err)
			}
			if _, err := accounts.Get(ctx, "not-an-account"); !errors.Is(err, ErrInvalid) {
				t.Errorf("a document that does not decode: %v, want ErrInvalid", err)
			}
			s.Delete(ctx, "accounts", "not-an-account")
		})

		t.Run("ListAndAll", func(t *testing.T) {
			people := NewCollection[account](s, "people")
			for i := range 250 {
				if _, err := people.Put(ctx, fmt.Sprintf("p%03d", i), account{Balance: i}); err != nil {
					t.Fatal(err)
				}
			}
			docs, next, err := people.List(ctx, ListOptions{Prefix: "p1", Limit: 10})
			if err != nil || len(docs) != 10 || docs[0].Key != "p100" || docs[9].Value.Balance != 109 || next != "p109" {
				t.Errorf("List = %d docs, next %q, %v", len(docs), next, err)
			}
			i := 0
			for d, err := range people.All(ctx, "") {
				if err != nil {
					t.Fatal(err)
				}
				if d.Value.Balance != i {
					t.Fatalf("All yields documents in key order: got %d at %d", d.Value.Balance, i)
				}
				i++
			}
			if i != 250 {
				t.Errorf("All yields every document across pages: %d, want 250", i)
			}
		})
	})
}

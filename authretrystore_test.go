package dbmanager

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/gatewaykit/dbmanager/internal/credentials"
)

// errAuth is a login refused for its password (SQLSTATE 28P01).
var errAuth = fmt.Errorf("failed to connect: %w", &pgconn.PgError{Severity: "FATAL", Code: "28P01", Message: `password authentication failed for user "app"`})

// fixedSecret is a SecretSource that always serves the same value.
type fixedSecret string

func (s fixedSecret) SecretString(context.Context, string) (string, error) { return string(s), nil }

// authFailingStore fails the first n calls with an authentication error.
type authFailingStore struct {
	Store
	mu    sync.Mutex
	fails int
	calls int
}

func (s *authFailingStore) Get(ctx context.Context, collection, key string) (Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.fails > 0 {
		s.fails--
		return Record{}, &OpError{Op: "get", Collection: collection, Key: key, Err: fmt.Errorf("%w: %w", ErrUnavailable, errAuth)}
	}
	return Record{Collection: collection, Key: key, Value: []byte(`{}`), Version: 1}, nil
}

func TestRetryAuthStore(t *testing.T) {
	if !credentials.IsAuthFailure(&OpError{Op: "get", Err: errAuth}) {
		t.Fatal("28P01 inside an *OpError not recognised")
	}
	var src SecretSource = fixedSecret(`{"username":"app","password":"pw","host":"db","port":5432}`)
	c := credentials.NewCache(src, "prod/db", credentials.WithMinInterval(0))
	inner := &authFailingStore{Store: NewMemStore(), fails: 2}
	s := RetryAuthStore(inner, c)
	rec, err := s.Get(context.Background(), "c", "k")
	if err != nil || rec.Key != "k" || inner.calls != 3 {
		t.Fatalf("Get through RetryAuthStore: %v, %v after %d calls", rec, err, inner.calls)
	}
	if s.Backend() != BackendMemory {
		t.Fatal("Backend not passed through")
	}
	// Non-auth errors pass straight through.
	if err := s.Delete(context.Background(), "c", "missing"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Delete of a missing key: %v", err)
	}
	if err := s.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
}

package credentials

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// secretsClock is a settable clock for TTL tests.
type secretsClock struct {
	mu sync.Mutex
	t  time.Time
}

func newSecretsClock() *secretsClock {
	return &secretsClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *secretsClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *secretsClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// countingSource is a Source that serves a settable value, counts
// calls and can block or fail.
type countingSource struct {
	mu    sync.Mutex
	value string
	err   error
	calls atomic.Int64
	gate  chan struct{} // if non-nil, each call waits for it
}

func (s *countingSource) set(v string) {
	s.mu.Lock()
	s.value = v
	s.mu.Unlock()
}

func (s *countingSource) setErr(err error) {
	s.mu.Lock()
	s.err = err
	s.mu.Unlock()
}

func (s *countingSource) SecretString(ctx context.Context, id string) (string, error) {
	s.calls.Add(1)
	if s.gate != nil {
		select {
		case <-s.gate:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.value, s.err
}

func secretJSON(user, pw string) string {
	return fmt.Sprintf(`{"username":%q,"password":%q,"host":"db","port":5432}`, user, pw)
}

func TestSecretCacheTTL(t *testing.T) {
	clock := newSecretsClock()
	src := &countingSource{value: secretJSON("app", "one")}
	c := NewCache(src, "prod/db", WithTTL(time.Minute), withClock(clock.Now))
	ctx := context.Background()
	for range 10 {
		got, err := c.Current(ctx)
		if err != nil || got.Password != "one" {
			t.Fatalf("Current: %v, %v", got, err)
		}
	}
	if n := src.calls.Load(); n != 1 {
		t.Fatalf("%d fetches within the TTL, want 1", n)
	}
	src.set(secretJSON("app", "two"))
	clock.Add(59 * time.Second)
	if got, _ := c.Current(ctx); got.Password != "one" {
		t.Fatal("fetched again before the TTL ran out")
	}
	clock.Add(time.Second)
	if got, _ := c.Current(ctx); got.Password != "two" {
		t.Fatal("not fetched again after the TTL")
	}
	if n := src.calls.Load(); n != 2 {
		t.Fatalf("%d fetches, want 2", n)
	}
}

func TestSecretCacheOneFetchInFlight(t *testing.T) {
	src := &countingSource{value: secretJSON("app", "pw"), gate: make(chan struct{})}
	c := NewCache(src, "prod/db")
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for range 50 {
		wg.Go(func() {
			got, err := c.Current(context.Background())
			if err == nil && got.Password != "pw" {
				err = errors.New("wrong credentials")
			}
			errs <- err
		})
	}
	// Let every goroutine reach the cache, then release the one fetch.
	for src.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	close(src.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := src.calls.Load(); n != 1 {
		t.Fatalf("%d fetches for 50 concurrent callers, want 1", n)
	}
}

func TestSecretCacheWaiterContext(t *testing.T) {
	src := &countingSource{value: secretJSON("app", "pw"), gate: make(chan struct{})}
	c := NewCache(src, "prod/db")
	leaderDone := make(chan error, 1)
	go func() { _, err := c.Current(context.Background()); leaderDone <- err }()
	for src.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Current(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("waiter with a cancelled context: %v", err)
	}
	close(src.gate)
	if err := <-leaderDone; err != nil {
		t.Fatal(err)
	}
}

func TestSecretCacheLeaderCancelledOthersRetry(t *testing.T) {
	src := &countingSource{value: secretJSON("app", "pw"), gate: make(chan struct{})}
	c := NewCache(src, "prod/db", WithMinInterval(0))
	leaderCtx, cancelLeader := context.WithCancel(context.Background())
	leaderDone := make(chan error, 1)
	go func() { _, err := c.Current(leaderCtx); leaderDone <- err }()
	for src.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	waiterDone := make(chan error, 1)
	go func() { _, err := c.Current(context.Background()); waiterDone <- err }()
	time.Sleep(10 * time.Millisecond)
	cancelLeader()
	if err := <-leaderDone; !errors.Is(err, context.Canceled) {
		t.Fatalf("leader: %v", err)
	}
	close(src.gate) // the waiter now fetches itself
	if err := <-waiterDone; err != nil {
		t.Fatalf("waiter after the leader's context ended: %v", err)
	}
}

func TestSecretCacheServesStaleOnFetchError(t *testing.T) {
	clock := newSecretsClock()
	src := &countingSource{value: secretJSON("app", "pw")}
	c := NewCache(src, "prod/db", WithTTL(time.Minute), withClock(clock.Now))
	ctx := context.Background()
	if _, err := c.Current(ctx); err != nil {
		t.Fatal(err)
	}
	src.setErr(errors.New("secrets manager is down"))
	clock.Add(2 * time.Minute)
	got, err := c.Current(ctx)
	if err != nil || got.Password != "pw" {
		t.Fatalf("stale credentials not served: %v, %v", got, err)
	}
	// Within MinInterval of the failed attempt: no new fetch.
	before := src.calls.Load()
	c.Current(ctx)
	if src.calls.Load() != before {
		t.Fatal("fetched again within MinInterval of a failed fetch")
	}
	src.setErr(nil)
	src.set(secretJSON("app", "new"))
	clock.Add(time.Second)
	if got, _ := c.Current(ctx); got.Password != "new" {
		t.Fatal("not refreshed once Secrets Manager answered again")
	}
}

func TestSecretCacheFirstFetchErrors(t *testing.T) {
	clock := newSecretsClock()
	src := &countingSource{value: `{"username":"app","password":"` + smTestPassword + `","port":"x"}`}
	c := NewCache(src, "prod/db", withClock(clock.Now))
	_, err := c.Current(context.Background())
	if !errors.Is(err, ErrMalformedSecret) {
		t.Fatalf("err = %v, want ErrMalformedSecret", err)
	}
	assertSecretAbsent(t, err.Error(), smTestPassword)
	// A second call within MinInterval reuses the error instead of fetching.
	c.Current(context.Background())
	if n := src.calls.Load(); n != 1 {
		t.Fatalf("%d fetches, want 1", n)
	}
}

func TestSecretCacheRefreshRateLimited(t *testing.T) {
	clock := newSecretsClock()
	src := &countingSource{value: secretJSON("app", "one")}
	c := NewCache(src, "prod/db", withClock(clock.Now))
	ctx := context.Background()
	c.Current(ctx)
	src.set(secretJSON("app", "two"))
	for range 20 {
		if got, _ := c.Refresh(ctx); got.Password != "one" {
			t.Fatal("refreshed within MinInterval")
		}
	}
	clock.Add(DefaultMinInterval)
	if got, _ := c.Current(ctx); got.Password != "two" {
		t.Fatal("an invalidation was forgotten after MinInterval")
	}
	if n := src.calls.Load(); n != 2 {
		t.Fatalf("%d fetches, want 2", n)
	}
}

func TestSecretCacheBeforeConnect(t *testing.T) {
	src := &countingSource{value: secretJSON("app", smTestPassword)}
	c := NewCache(src, "prod/db")
	cc, err := pgx.ParseConfig("postgres://placeholder@db.example.com:6543/gw?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.BeforeConnect(context.Background(), cc); err != nil {
		t.Fatal(err)
	}
	if cc.User != "app" || cc.Password != smTestPassword || cc.Host != "db.example.com" || cc.Port != 6543 || cc.Database != "gw" {
		t.Fatalf("BeforeConnect set user=%q host=%q port=%d db=%q", cc.User, cc.Host, cc.Port, cc.Database)
	}
}

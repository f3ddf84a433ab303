package credentials

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

var errAuth = fmt.Errorf("failed to connect: %w", &pgconn.PgError{Severity: "FATAL", Code: "28P01", Message: `password authentication failed for user "app"`})

func TestIsAuthFailure(t *testing.T) {
	fatal := func(code, msg string) *pgconn.PgError {
		return &pgconn.PgError{Severity: "FATAL", Code: code, Message: msg}
	}
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"PostgreSQL 28P01", errAuth, true},
		{"PostgreSQL 28P01 wrapped twice", fmt.Errorf("get: %w", errAuth), true},
		{"PostgreSQL 28P01 joined", errors.Join(errors.New("first host"), errAuth), true},
		{"pgcat-style 28P01", fatal("28P01", `password authentication failed for user "app"`), true},
		{"PgBouncer md5/plain", fatal("08P01", "password authentication failed"), true},
		{"PgBouncer scram-sha-256", fatal("08P01", "SASL authentication failed"), true},
		{"PgBouncer scram-sha-256 wrapped", fmt.Errorf("failed to connect to `user=app database=app`: %w", fatal("08P01", "SASL authentication failed")), true},
		{"PgBouncer forwarding PostgreSQL's refusal", fatal("08P01", `password authentication failed for user "app"`), true},
		{"08P01 prepared statement", fatal("08P01", `bind message supplies 2 parameters, but prepared statement "" requires 3`), false},
		{"08P01 prepared statement missing", &pgconn.PgError{Severity: "ERROR", Code: "08P01", Message: `prepared statement "stmtcache_1" does not exist`}, false},
		{"08P01 protocol violation", &pgconn.PgError{Severity: "ERROR", Code: "08P01", Message: "invalid frontend message type 0"}, false},
		{"PgBouncer unknown packet", fatal("08P01", "unknown pkt"), false},
		{"PgBouncer server_login_retry", fatal("08P01", "server login has been failing, try again later (server_login_retry)"), false},
		{"PgBouncer message at ERROR severity", &pgconn.PgError{Severity: "ERROR", Code: "08P01", Message: "password authentication failed"}, false},
		{"PgBouncer message as a prefix of something else", fatal("08P01", "password authentication failed: LDAP"), false},
		{"3D000", &pgconn.PgError{Code: "3D000"}, false},
		{"28000", fatal("28000", `role "app" does not exist`), false},
		{"the text 28P01", errors.New("28P01"), false},
		{"the text of PgBouncer's refusal", errors.New("password authentication failed"), false},
		{"nil", nil, false},
	}
	for _, c := range cases {
		if got := IsAuthFailure(c.err); got != c.want {
			t.Errorf("%s: IsAuthFailure(%v) = %v, want %v", c.name, c.err, got, c.want)
		}
	}
}

func TestRetryAuthNonAuthErrorReturnsAtOnce(t *testing.T) {
	src := &countingSource{value: secretJSON("app", "pw")}
	c := NewCache(src, "prod/db")
	boom := errors.New("connection refused")
	calls := 0
	err := c.RetryAuth(context.Background(), func(context.Context) error { calls++; return boom })
	if !errors.Is(err, boom) || calls != 1 || src.calls.Load() != 0 {
		t.Fatalf("err=%v calls=%d fetches=%d", err, calls, src.calls.Load())
	}
	if err := c.RetryAuth(context.Background(), func(context.Context) error { return nil }); err != nil {
		t.Fatal(err)
	}
}

// TestRetryAuthFollowsRotation: the "database" accepts only the password
// "new"; the secret serves "old" for three more fetches, then "new".
func TestRetryAuthFollowsRotation(t *testing.T) {
	src := &countingSource{value: secretJSON("app", "old")}
	c := NewCache(src, "prod/db", WithMinInterval(10*time.Millisecond))
	ctx := context.Background()
	if _, err := c.Current(ctx); err != nil {
		t.Fatal(err)
	}
	var fetchesAfter atomic.Int64
	login := func(ctx context.Context) error {
		creds, err := c.Current(ctx)
		if err != nil {
			return err
		}
		if creds.Password != "new" {
			if fetchesAfter.Add(1) == 3 {
				src.set(secretJSON("app", "new"))
			}
			return errAuth
		}
		return nil
	}
	if err := c.RetryAuth(ctx, login); err != nil {
		t.Fatalf("RetryAuth: %v", err)
	}
	if n := src.calls.Load(); n > 10 {
		t.Fatalf("%d fetches for one rotation", n)
	}
}

func TestRetryAuthBudget(t *testing.T) {
	src := &countingSource{value: secretJSON("app", "old")}
	c := NewCache(src, "prod/db", WithRotationBudget(300*time.Millisecond), WithMinInterval(0))
	start := time.Now()
	calls := 0
	err := c.RetryAuth(context.Background(), func(context.Context) error { calls++; return errAuth })
	elapsed := time.Since(start)
	if !IsAuthFailure(err) {
		t.Fatalf("err = %v, want the auth failure wrapped", err)
	}
	if calls < 2 {
		t.Fatalf("only %d attempts", calls)
	}
	// Generous margin for a loaded machine; without the budget it would
	// retry for the default 60 s.
	if elapsed > 300*time.Millisecond+2*time.Second {
		t.Fatalf("gave up after %s, budget 300ms", elapsed)
	}
}

func TestRetryAuthContextDeadline(t *testing.T) {
	src := &countingSource{value: secretJSON("app", "old")}
	c := NewCache(src, "prod/db", WithMinInterval(0))
	ctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := c.RetryAuth(ctx, func(context.Context) error { return errAuth })
	if !IsAuthFailure(err) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want auth failure and DeadlineExceeded", err)
	}
	if elapsed := time.Since(start); elapsed > 250*time.Millisecond+time.Second { // generous margin for a loaded machine
		t.Fatalf("returned %s after start, deadline 250ms", elapsed)
	}
}

// TestRetryAuthConcurrentFetchesBounded: 50 callers failing at once cause
// a handful of fetches, not 50 per round.
func TestRetryAuthConcurrentFetchesBounded(t *testing.T) {
	src := &countingSource{value: secretJSON("app", "old")}
	c := NewCache(src, "prod/db", WithMinInterval(50*time.Millisecond))
	ctx := context.Background()
	c.Current(ctx)
	var rotated atomic.Bool
	time.AfterFunc(300*time.Millisecond, func() { src.set(secretJSON("app", "new")); rotated.Store(true) })
	login := func(ctx context.Context) error {
		creds, _ := c.Current(ctx)
		if creds.Password != "new" {
			return errAuth
		}
		return nil
	}
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if err := c.RetryAuth(ctx, login); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	// About one fetch per 50 ms while the old password is served, plus the
	// initial one: ~8; allow 20.
	if n := src.calls.Load(); n > 20 {
		t.Fatalf("%d fetches for 50 concurrent callers over one rotation", n)
	}
}

// TestRetryAfterAuthFailure: a caller that ran the login once itself
// hands its failure over; the retry refreshes the secret and runs op again
// until it succeeds, and an error that is not an authentication failure
// after a retry returns at once.
func TestRetryAfterAuthFailure(t *testing.T) {
	src := &countingSource{value: secretJSON("app", "old")}
	c := NewCache(src, "prod/db", WithMinInterval(0))
	ctx := context.Background()
	if _, err := c.Current(ctx); err != nil {
		t.Fatal(err)
	}
	gen := c.Generation()
	if gen != 1 {
		t.Fatalf("Generation = %d after the first fetch, want 1", gen)
	}
	src.set(secretJSON("app", "new"))
	calls := 0
	login := func(ctx context.Context) error {
		calls++
		creds, err := c.Current(ctx)
		if err != nil {
			return err
		}
		if creds.Password != "new" {
			return errAuth
		}
		return nil
	}
	if err := c.RetryAfterAuthFailure(ctx, gen, errAuth, login); err != nil {
		t.Fatalf("RetryAfterAuthFailure: %v", err)
	}
	if calls != 1 || c.Generation() != 2 {
		t.Fatalf("%d retries, generation %d; want 1 retry with the refreshed secret (generation 2)", calls, c.Generation())
	}
	boom := errors.New("connection refused")
	if err := c.RetryAfterAuthFailure(ctx, c.Generation(), errAuth, func(context.Context) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("err = %v, want the retry's own error", err)
	}
}

// TestRetryContext: the retry runs under the context WithRetryContext's
// function prepares (the root's call bound), not only the caller's, and
// its cancel runs when the retry ends.
func TestRetryContext(t *testing.T) {
	src := &countingSource{value: secretJSON("app", "old")}
	var prepared, cancelled atomic.Int64
	bound := func(ctx context.Context) (context.Context, context.CancelFunc) {
		prepared.Add(1)
		ctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		return ctx, func() { cancelled.Add(1); cancel() }
	}
	c := NewCache(src, "prod/db", WithMinInterval(0), WithRetryContext(bound))
	if err := c.RetryAuth(context.Background(), func(context.Context) error { return nil }); err != nil || prepared.Load() != 0 {
		t.Fatalf("a call that succeeded: err=%v, retry context prepared %d times", err, prepared.Load())
	}
	err := c.RetryAuth(context.Background(), func(context.Context) error { return errAuth })
	if !IsAuthFailure(err) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the auth failure ended by the prepared deadline", err)
	}
	if prepared.Load() != 1 || cancelled.Load() != 1 {
		t.Fatalf("retry context prepared %d, cancelled %d times; want 1 and 1", prepared.Load(), cancelled.Load())
	}
}

package credentials

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// Defaults of a Cache.
const (
	DefaultTTL            = time.Hour        // how long a fetched secret is used before it is fetched again
	DefaultMinInterval    = time.Second      // the least time between two fetches of the same secret
	DefaultRotationBudget = 60 * time.Second // how long RetryAuth keeps retrying (RDS's rotation window)
)

// Cache holds the database credentials read from one secret and
// fetches them again once per TTL, not once per connection. It is safe for
// concurrent use: however many goroutines ask, at most one fetch is in
// flight, and the others wait for its result (or for their own context).
// Fetches are also at least MinInterval apart, so a storm of failing
// logins cannot turn into a storm of GetSecretValue calls.
//
// When a fetch fails and the cache still holds credentials from an earlier
// fetch, Current keeps returning those (logging a warning), so an outage of
// Secrets Manager does not take the database down with it.
//
// Wire it into a pool with BeforeConnect, and wrap operations that may
// open a connection with RetryAuth (see rotation.go). The zero Cache is
// not usable: make one with NewCache.
type Cache struct {
	src      Source
	secretID string
	opts     options

	mu          sync.Mutex
	creds       Credentials
	have        bool
	generation  atomic.Uint64 // grows with every fetch that returned credentials (written under mu)
	fetchedAt   time.Time     // when creds were fetched
	lastAttempt time.Time     // when the last fetch started
	stale       bool          // Invalidate was called: fetch again, rate limit permitting
	lastErr     error         // the error of the last fetch, if it failed
	inflight    *secretFetch
}

// secretFetch is one fetch in flight; done closes when it has finished.
type secretFetch struct {
	done  chan struct{}
	creds Credentials
	gen   uint64
	err   error
}

type options struct {
	ttl         time.Duration
	minInterval time.Duration
	budget      time.Duration
	now         func() time.Time
	logger      *slog.Logger
	parse       func(string) (Credentials, error)
	observer    Observer // the Manager's telemetry; may be nil
	// retryContext prepares the context of a rotation retry; may be nil.
	retryContext func(context.Context) (context.Context, context.CancelFunc)
}

// Option configures a Cache (see NewCache).
type Option func(*options)

// WithTTL sets how long fetched credentials are used before the
// secret is fetched again (default DefaultTTL). Zero or less keeps
// the default.
func WithTTL(ttl time.Duration) Option {
	return func(o *options) {
		if ttl > 0 {
			o.ttl = ttl
		}
	}
}

// WithMinInterval sets the least time between two fetches (default
// DefaultMinInterval). Zero allows back-to-back fetches (tests).
func WithMinInterval(d time.Duration) Option {
	return func(o *options) {
		if d >= 0 {
			o.minInterval = d
		}
	}
}

// WithRotationBudget sets how long RetryAuth keeps retrying a login that
// fails authentication (default DefaultRotationBudget, 60 s). Zero or less
// keeps the default.
func WithRotationBudget(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.budget = d
		}
	}
}

// WithLogger sets the logger for warnings (a failed refresh served
// from the cache, a rotation retry). Log lines name the secret, never its
// value. The default is slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.logger = l
		}
	}
}

// Observer hears a Cache's fetches and rotation retries (the Manager's
// telemetry). Its methods must not block.
type Observer interface {
	// SecretFetched is called after every fetch of the secret, with the
	// fetch's error (nil on success; it never contains the secret).
	SecretFetched(ctx context.Context, err error)
	// RotationRetried is called before each retry of a login that failed
	// authentication.
	RotationRetried(ctx context.Context)
}

// WithObserver reports fetches and rotation retries to o (nil: none).
func WithObserver(o Observer) Option {
	return func(so *options) { so.observer = o }
}

// WithRetryContext makes the rotation retry (RetryAuth and
// RetryAfterAuthFailure after a failed login) run under f(ctx) instead of
// ctx, and call the returned cancel when it ends. The root package passes
// its deadline.Enforce: a timer behind a call bound that nothing enforces yet,
// so the retry's waits end at that bound.
func WithRetryContext(f func(context.Context) (context.Context, context.CancelFunc)) Option {
	return func(o *options) { o.retryContext = f }
}

// withClock replaces time.Now (tests).
func withClock(now func() time.Time) Option {
	return func(o *options) { o.now = now }
}

// NewCache returns a cache of the credentials in secretID, read from
// src and parsed with ParseRDSSecret. Nothing is fetched until the first
// Current (or BeforeConnect) call.
func NewCache(src Source, secretID string, opts ...Option) *Cache {
	o := options{
		ttl:         DefaultTTL,
		minInterval: DefaultMinInterval,
		budget:      DefaultRotationBudget,
		now:         time.Now,
		logger:      slog.Default(),
		parse:       ParseRDSSecret,
	}
	for _, opt := range opts {
		opt(&o)
	}
	return &Cache{src: src, secretID: secretID, opts: o}
}

// SecretID is the name or ARN of the cached secret.
func (c *Cache) SecretID() string { return c.secretID }

// Generation identifies the credentials the cache holds: it grows with
// every fetch that returned credentials (0 before the first). Reading it
// takes no lock: read it before a login and pass it to
// RetryAfterAuthFailure if the login fails authentication.
func (c *Cache) Generation() uint64 { return c.generation.Load() }

// Current returns the cached credentials, fetching the secret first if
// none are cached, the TTL has run out, or Invalidate was called (and the
// last fetch is at least MinInterval ago). If the fetch fails and older
// credentials are cached, it returns those and logs a warning; without
// any, it returns the fetch error (which never contains the secret).
func (c *Cache) Current(ctx context.Context) (Credentials, error) {
	creds, _, err := c.current(ctx)
	return creds, err
}

// current is Current plus the generation of the credentials returned.
func (c *Cache) current(ctx context.Context) (Credentials, uint64, error) {
	for {
		c.mu.Lock()
		now := c.opts.now()
		if c.have && !c.needsFetch(now) {
			creds, gen := c.creds, c.generation.Load()
			c.mu.Unlock()
			return creds, gen, nil
		}
		if c.have && c.inflight == nil && now.Sub(c.lastAttempt) < c.opts.minInterval {
			// Due for a fetch, but the last one was moments ago.
			creds, gen := c.creds, c.generation.Load()
			c.mu.Unlock()
			return creds, gen, nil
		}
		if !c.have && c.inflight == nil && c.lastErr != nil && now.Sub(c.lastAttempt) < c.opts.minInterval {
			// Nothing cached and the last fetch failed moments ago.
			err := c.lastErr
			c.mu.Unlock()
			return Credentials{}, 0, err
		}
		f := c.inflight
		if f == nil {
			f = &secretFetch{done: make(chan struct{})}
			c.inflight = f
			c.lastAttempt = now
			c.mu.Unlock()
			c.fetch(ctx, f)
		} else {
			c.mu.Unlock()
			select {
			case <-f.done:
			case <-ctx.Done():
				return Credentials{}, 0, fmt.Errorf("dbmanager: waiting for secret %q: %w", c.secretID, ctx.Err())
			}
		}
		if f.err == nil {
			return f.creds, f.gen, nil
		}
		// The fetch was cut short by the context of the goroutine that ran
		// it, not by ours: try again ourselves.
		if isContextError(f.err) && ctx.Err() == nil {
			continue
		}
		c.mu.Lock()
		creds, gen, have := c.creds, c.generation.Load(), c.have
		c.mu.Unlock()
		if have && ctx.Err() == nil {
			c.opts.logger.WarnContext(ctx, "Secret refresh failed; using the cached credentials",
				slog.String("secret", c.secretID), slog.String("error", f.err.Error()))
			return creds, gen, nil
		}
		return Credentials{}, 0, f.err
	}
}

// needsFetch reports whether the cached credentials are due for a fetch.
// c.mu is held.
func (c *Cache) needsFetch(now time.Time) bool {
	return c.stale || now.Sub(c.fetchedAt) >= c.opts.ttl
}

// fetch runs f with ctx in the calling goroutine and publishes its result.
func (c *Cache) fetch(ctx context.Context, f *secretFetch) {
	var creds Credentials
	s, err := c.src.SecretString(ctx, c.secretID)
	if err == nil {
		creds, err = c.opts.parse(s)
		if err != nil {
			err = fmt.Errorf("dbmanager: secret %q: %w", c.secretID, err)
		}
	}
	if c.opts.observer != nil {
		c.opts.observer.SecretFetched(ctx, err)
	}
	c.mu.Lock()
	if err == nil {
		c.creds, c.have, c.stale = creds, true, false
		c.fetchedAt = c.opts.now()
		f.creds, f.gen = creds, c.generation.Add(1)
	}
	f.err = err
	if !isContextError(err) {
		c.lastErr = err
	}
	c.inflight = nil
	c.mu.Unlock()
	close(f.done)
}

// Invalidate marks the cached credentials as out of date: the next Current
// fetches the secret again, unless the last fetch started less than
// MinInterval ago.
func (c *Cache) Invalidate() {
	c.mu.Lock()
	c.stale = true
	c.mu.Unlock()
}

// Refresh invalidates the cache and returns the credentials Current then
// gives: freshly fetched, or the cached ones if a fetch ran less than
// MinInterval ago (or fails while older credentials are cached).
func (c *Cache) Refresh(ctx context.Context) (Credentials, error) {
	c.Invalidate()
	return c.Current(ctx)
}

// invalidateGeneration invalidates the cache only if it still holds the
// credentials of generation gen, so that many connections failing with the
// same old password ask for one fetch, not one each.
func (c *Cache) invalidateGeneration(gen uint64) {
	c.mu.Lock()
	if c.generation.Load() == gen {
		c.stale = true
	}
	c.mu.Unlock()
}

// BeforeConnect is a pgxpool.Config.BeforeConnect hook: it sets the
// connection's User and Password from the cached secret (fetching it when
// due). The host, port and database of cc are left alone; they come from
// the DSN. Its errors never contain the secret.
func (c *Cache) BeforeConnect(ctx context.Context, cc *pgx.ConnConfig) error {
	creds, err := c.Current(ctx)
	if err != nil {
		return err
	}
	cc.User = creds.Username
	cc.Password = creds.Password
	return nil
}

func isContextError(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

package credentials

// Rotation of secret-based credentials.
//
// When Secrets Manager rotates a database password, there is a window of
// up to about a minute in which PostgreSQL already wants the new password
// while GetSecretValue may still return the old one. A new connection made
// in that window fails with SQLSTATE 28P01 (invalid_password), or behind
// a PgBouncer that checks passwords itself with its FATAL 08P01
// "password authentication failed" (see IsAuthFailure).
//
// Design: pgxpool (v5.12) has no hook that sees a failed connect. Its
// connection constructor runs BeforeConnect, then pgx.ConnectConfig, and
// hands the error straight back to Acquire; OnPgError is not called during
// the startup handshake, ValidateConnect and AfterConnect run only after a
// successful login, and pgconn stops trying fallback hosts at 28P01. So
// the retry cannot live inside the pool. Instead:
//
//   - Cache.BeforeConnect puts the cached username and password on
//     every new connection;
//   - Cache.RetryAuth wraps anything that may open a connection
//     (Acquire, Ping, a Store call): on an authentication failure it asks
//     the cache for the secret again (one fetch in flight, at most one per
//     MinInterval, and only if no other caller has refreshed it since the
//     failing attempt) and retries with exponential backoff within the
//     rotation budget (60 s by default) and the context's deadline. Other
//     errors return at once. A login that failed authentication sent no
//     statement, so retrying it is always safe;
//   - the Manager's Store runs each call once and hands only an
//     authentication failure of its acquire to RetryAfterAuthFailure
//     (the root's acquireRetryingAuth), so a call costs nothing extra
//     until a login fails;
//   - Cache.Connect is the same for a single pgx connection (start-up
//     probes, tools), and returns errors that cannot print the password.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// SQLSTATE codes of authentication failures.
const (
	sqlstateInvalidPassword = "28P01"
	// PgBouncer refuses a login it checks itself (auth_file, auth_query)
	// with its generic "pooler error" code, protocol_violation; so it
	// counts only with one of poolerAuthMessages.
	sqlstateProtocolViolation = "08P01"
)

// poolerAuthMessages are the messages of the FATAL 08P01 ErrorResponse
// PgBouncer (1.18 and later, src/client.c) sends when it refuses a
// client's login itself: "password authentication failed" for a
// cleartext or md5 password, "SASL authentication failed" for
// scram-sha-256, and "no such user" when its auth_query finds no row for
// the user name (without auth_query an unknown user gets a mock login and
// one of the first two, as PostgreSQL answers 28P01 for an unknown role).
var poolerAuthMessages = []string{"password authentication failed", "SASL authentication failed", PoolerNoSuchUser}

// PoolerNoSuchUser is the message of PgBouncer's refusal (FATAL 08P01) of
// a user name its auth_query does not know.
const PoolerNoSuchUser = "no such user"

// poolerForwardedAuthPrefix starts the message of PostgreSQL's own
// refusal (28P01) when PgBouncer forwards it to the clients waiting for a
// server login, as a FATAL 08P01 with the server's message
// (kill_pool_logins, src/server.c).
const poolerForwardedAuthPrefix = "password authentication failed for user "

// IsAuthFailure reports whether err (or any error it wraps) is a login
// whose credentials were refused: PostgreSQL's SQLSTATE 28P01
// (invalid_password), or PgBouncer's own refusal, a FATAL 08P01 whose
// message is "password authentication failed", "SASL authentication
// failed" or "no such user" (or PostgreSQL's refusal it forwards). Any
// other 08P01, such as a prepared statement a transaction pooler lost, is
// not one.
func IsAuthFailure(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	switch pgErr.Code {
	case sqlstateInvalidPassword:
		return true
	case sqlstateProtocolViolation:
		return pgErr.Severity == "FATAL" && isPoolerAuthMessage(pgErr.Message)
	}
	return false
}

// isPoolerAuthMessage reports whether msg is one of PgBouncer's messages
// for a refused password.
func isPoolerAuthMessage(msg string) bool {
	return slices.Contains(poolerAuthMessages, msg) || strings.HasPrefix(msg, poolerForwardedAuthPrefix)
}

// rotationBackoff is the wait between RetryAuth attempts whose credentials
// did not change: 100 ms growing to 5 s, with jitter.
func rotationBackoff() *backoff.ExponentialBackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 100 * time.Millisecond
	b.MaxInterval = 5 * time.Second
	b.Multiplier = 2
	b.RandomizationFactor = 0.3
	b.Reset()
	return b
}

// RetryAuth runs op and, while it fails with an authentication failure
// (see IsAuthFailure), refreshes the secret and runs op again, waiting
// with exponential backoff whenever the refresh brought no new
// credentials. It gives up when the rotation budget (WithRotationBudget,
// default 60 s) is spent or the next wait would pass ctx's deadline, and
// then returns the last error wrapped (errors.As still finds the
// *pgconn.PgError). Any other error, and success, return at once.
//
// op must be safe to run again after an authentication failure, which is
// the case for anything whose only failure point is opening a connection
// (a failed login runs no statement).
func (c *Cache) RetryAuth(ctx context.Context, op func(context.Context) error) error {
	gen := c.Generation()
	err := op(ctx)
	if err == nil || !IsAuthFailure(err) {
		return err
	}
	return c.retryAuthFailure(ctx, gen, err, op)
}

// RetryAfterAuthFailure is RetryAuth for a caller that ran op once itself:
// err is that run's error, an authentication failure (see IsAuthFailure),
// and gen the Generation read before it. It refreshes the secret and
// retries op as RetryAuth does, and returns what RetryAuth would; callers
// that run op once themselves pay for nothing else until a login fails.
func (c *Cache) RetryAfterAuthFailure(ctx context.Context, gen uint64, err error, op func(context.Context) error) error {
	return c.retryAuthFailure(ctx, gen, err, op)
}

// retryAuthFailure is RetryAuth after op's first run failed authentication
// (err) with the credentials of generation gen. Its waits (for a fetch in
// flight, between attempts) end with ctx, after WithRetryContext's
// function (the root's call bound, internal/deadline) has prepared it.
func (c *Cache) retryAuthFailure(ctx context.Context, gen uint64, err error, op func(context.Context) error) error {
	if c.opts.retryContext != nil {
		var cancel context.CancelFunc
		ctx, cancel = c.opts.retryContext(ctx)
		defer cancel()
	}
	start := c.opts.now()
	b := rotationBackoff()
	for attempt := 1; ; attempt++ {
		// Ask for the secret again unless someone already did since the
		// credentials op used were fetched.
		c.invalidateGeneration(gen)
		_, newGen, ferr := c.current(ctx)
		wait := time.Duration(0)
		if ferr != nil || newGen == gen {
			wait = b.NextBackOff()
		}
		if ferr == nil {
			gen = newGen
		}
		if c.opts.now().Sub(start)+wait > c.opts.budget {
			return c.authGaveUp(err, attempt, c.opts.now().Sub(start), nil)
		}
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < wait {
			return c.authGaveUp(err, attempt, c.opts.now().Sub(start), context.DeadlineExceeded)
		}
		if attempt == 1 {
			c.opts.logger.WarnContext(ctx, "Database authentication failed; refreshing the secret and retrying (password rotation?)",
				slog.String("secret", c.secretID), slog.Duration("budget", c.opts.budget))
		}
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return c.authGaveUp(err, attempt, c.opts.now().Sub(start), ctx.Err())
			}
		}
		if cerr := ctx.Err(); cerr != nil {
			return c.authGaveUp(err, attempt, c.opts.now().Sub(start), cerr)
		}
		if c.opts.observer != nil {
			c.opts.observer.RotationRetried(ctx)
		}
		last := err
		err = op(ctx)
		if err != nil && !IsAuthFailure(err) && ctx.Err() != nil {
			// The context ended during the retry: report why we were retrying.
			return c.authGaveUp(last, attempt, c.opts.now().Sub(start), ctx.Err())
		}
		if err == nil || !IsAuthFailure(err) {
			if err == nil {
				c.opts.logger.InfoContext(ctx, "Database authentication succeeded after refreshing the secret",
					slog.String("secret", c.secretID), slog.Int("retries", attempt))
			}
			return err
		}
	}
}

// authGaveUp is RetryAuth's final error: it wraps the last authentication
// error and, if the context ended the retries, the context's error.
func (c *Cache) authGaveUp(last error, retries int, elapsed time.Duration, ctxErr error) error {
	if ctxErr != nil {
		return fmt.Errorf("dbmanager: authentication failed with the credentials of secret %q after %d retries in %s (%w): %w",
			c.secretID, retries, elapsed.Round(time.Millisecond), ctxErr, last)
	}
	return fmt.Errorf("dbmanager: authentication failed with the credentials of secret %q after %d retries in %s (rotation budget %s): %w",
		c.secretID, retries, elapsed.Round(time.Millisecond), c.opts.budget, last)
}

// Connect opens a single connection with config (a copy is used) and the
// cached credentials, retrying through rotation as RetryAuth does. Each
// error of pgx.ConnectConfig passes through redact, which must drop what
// can reveal the password (pgx's *pgconn.ConnectError carries the whole
// config): the root package passes its safeError, which keeps only the
// message, which pgx builds without the password, and the
// *pgconn.PgError if there is one.
func (c *Cache) Connect(ctx context.Context, config *pgx.ConnConfig, redact func(error) error) (*pgx.Conn, error) {
	var conn *pgx.Conn
	err := c.RetryAuth(ctx, func(ctx context.Context) error {
		cc := config.Copy()
		if err := c.BeforeConnect(ctx, cc); err != nil {
			return err
		}
		var err error
		conn, err = pgx.ConnectConfig(ctx, cc)
		if err != nil {
			return redact(err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return conn, nil
}

package dbmanager

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gatewaykit/dbmanager/internal/credentials"
)

// NewPool opens a *pgxpool.Pool on the PostgreSQL that cfg names, for
// services that want this library's connection handling but not its Store:
// the target is resolved as Init resolves it (DATABASE_URL, then the AWS
// Secrets Manager secret, then AWS_DB_*), and the pool gets the same
// settings the Manager's does (DB_POOL_* sizes and timeouts, the TLS
// policy and the RDS trust roots, TCP keepalives, the connect timeout,
// SQL_ECHO, following the writer unless target_session_attrs says
// otherwise).
//
// Credentials follow the configuration: with a secret, every new
// connection takes the cached secret's user and password (fetched again
// after DB_SECRET_CACHE_TTL), and a login that fails authentication marks
// the secret stale, so the next connection the pool opens reads it again
// (at most once a second): after a password rotation, the connections
// already open keep working and new ones log in with the new password.
// pgxpool does not retry a failed connection attempt, so the one Acquire
// that met the old password fails; the Manager's Store retries that one
// too. With DB_IAM_AUTH=true every new connection gets a fresh IAM token
// (TLS required).
//
// NewPool connects once within ctx to prove the target answers and accepts
// writes (as Init does; a read-only node is retried until ctx ends unless
// the connection string asks for another kind of node). Its errors are
// redacted: a configuration error wraps ErrConfig, an unreachable or
// refusing server is a *ConnectionError with its Reason; a configuration
// that names no PostgreSQL is a *ConfigError. The options that apply are
// WithLogger and WithSecretSource; the others are ignored. The caller owns
// the pool and closes it.
func NewPool(ctx context.Context, cfg Config, opts ...Option) (*pgxpool.Pool, error) {
	if src := cfg.Source(); src == SourceMemory || src == SourceNone {
		return nil, &ConfigError{Var: "DATABASE_URL", Problem: "no PostgreSQL configured (set DATABASE_URL, AWS_DB_SECRET or AWS_DB_HOST)"}
	}
	o := applyOptions(opts)
	// The credential machinery is the Manager's; this one never serves a
	// Store and holds nothing that needs closing.
	m := &Manager{cfg: cfg, opts: o, log: o.logger}
	m.tel = newTelemetry(cfg, o, o.logger)
	target, cache, beforeConnect, err := m.resolveLogin(ctx)
	if err != nil {
		return nil, err
	}
	popts := []poolOption{withPoolLogger(m.log), withBeforeConnect(beforeConnect), withReadOnlyNotice(m.noteReadOnlyNode)}
	if cache != nil {
		popts = append(popts, withConnectFailureNotice(func(err error) {
			if credentials.IsAuthFailure(err) {
				cache.Invalidate()
			}
		}))
	}
	pc, err := newPoolConfig(cfg, target, popts...)
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, safeError(err)
	}
	if err := reachWriter(ctx, pool, target.Addr()); err != nil {
		pool.Close()
		return nil, err // already "dbmanager: cannot connect to PostgreSQL at ...", redacted
	}
	return pool, nil
}

// TraceConnectStart is part of the pool's pgx.ConnectTracer.
func (h *poolHooks) TraceConnectStart(ctx context.Context, _ pgx.TraceConnectStartData) context.Context {
	return ctx
}

// TraceConnectEnd tells the pool's connect-failure notice (NewPool's
// secret invalidation) about a connection attempt that failed.
func (h *poolHooks) TraceConnectEnd(_ context.Context, data pgx.TraceConnectEndData) {
	if data.Err != nil && h.connectFailed != nil {
		h.connectFailed(data.Err)
	}
}

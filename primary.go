package dbmanager

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gatewaykit/dbmanager/internal/credentials"
	"github.com/gatewaykit/dbmanager/internal/deadline"
	"github.com/gatewaykit/dbmanager/internal/tlstrust"
)

// primary is an open connection to the configured PostgreSQL: its pool and
// the Store on it.
type primary struct {
	target connTarget
	pool   *pgxpool.Pool
	store  *PGStore
	tls    *tlstrust.Recorder // what the pool's verified TLS handshakes showed
	tel    *poolTelemetry
	// replicas are the read replicas (nil without read configuration);
	// their checks start when the Store starts serving from p.
	replicas *replicaSet
}

// close releases what connectPrimary opened.
func (p *primary) close() {
	if p == nil {
		return
	}
	if p.store != nil {
		_ = p.store.Close()
	}
	p.replicas.close()
	p.tel.closePool(p.pool)
}

// connectPrimary resolves the target, opens a pool, proves it answers and
// opens the Store on it (creating its table if needed), all within ctx.
// Its errors are classified: misconfiguration wraps ErrConfig (or another
// error isMisconfiguration knows), everything else means "unreachable".
func (m *Manager) connectPrimary(ctx context.Context) (*primary, error) {
	target, cache, beforeConnect, err := m.resolveLogin(ctx)
	if err != nil {
		return nil, err
	}
	tlsRec := &tlstrust.Recorder{}
	pc, err := newPoolConfig(m.cfg, target, withPoolLogger(m.log), withBeforeConnect(beforeConnect), withTLSRecorder(tlsRec),
		withReadOnlyNotice(m.noteReadOnlyNode))
	if err != nil {
		return nil, err
	}
	m.checkSuspects(pc)
	pt := m.tel.instrumentPool(pc)
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, safeError(err)
	}
	p := &primary{target: target, pool: pool, tls: tlsRec, tel: pt.observe(pool)}
	// The pool itself bounds the wait by DB_POOL_TIMEOUT.
	acquire := func(ctx context.Context) (*pgxpool.Conn, error) { return acquireConn(ctx, pool, 0) }
	if cache != nil {
		acquire = func(ctx context.Context) (*pgxpool.Conn, error) { return acquireRetryingAuth(ctx, pool, cache) }
	}
	if err := reachWriter(ctx, pool, target.Addr()); err != nil {
		p.close()
		if cache != nil && credentials.IsAuthFailure(err) {
			// The secret's password was refused: read the secret again on
			// the next attempt (a rotation under way, or a secret fixed
			// since), or recovery would keep trying the refused password
			// until DB_SECRET_CACHE_TTL. The cache's minimum interval
			// between fetches still bounds the calls to Secrets Manager.
			cache.Invalidate()
		}
		return nil, err
	}
	if p.replicas, err = m.openReplicas(target, pool, beforeConnect); err != nil {
		p.close()
		return nil, err
	}
	p.store, err = newPGStore(ctx, pool, withSchema(m.opts.schema), withAcquire(acquire), withRetryBudget(m.cfg.ConnectTimeout), withReplicas(p.replicas))
	if err != nil {
		p.close()
		if isReadOnlyError(err) {
			// A node that turned read-only after the ping, or one the
			// connection string accepts as it is (target_session_attrs=any):
			// say so, not "cannot create the schema".
			return nil, &ConnectionError{Reason: ReasonReadOnly, Target: target.Addr(), err: errNodeReadOnly}
		}
		return nil, err
	}
	if p.store.proxied() {
		logBehindProxy(ctx, m.log, pc.ConnConfig.DefaultQueryExecMode)
	}
	return p, nil
}

// acquireRetryingAuth takes a connection from pool and, when opening one
// fails authentication during a password rotation, retries as
// credentials.Cache.RetryAuth does. The first try costs what Acquire costs.
func acquireRetryingAuth(ctx context.Context, pool *pgxpool.Pool, cache *credentials.Cache) (*pgxpool.Conn, error) {
	gen := cache.Generation()
	conn, err := acquireConn(ctx, pool, 0)
	if err == nil || !credentials.IsAuthFailure(err) {
		return conn, err
	}
	return acquireAfterAuthFailure(ctx, pool, cache, gen, err)
}

func acquireAfterAuthFailure(ctx context.Context, pool *pgxpool.Pool, cache *credentials.Cache, gen uint64, err error) (*pgxpool.Conn, error) {
	var conn *pgxpool.Conn
	err = cache.RetryAfterAuthFailure(ctx, gen, err, func(ctx context.Context) (err error) {
		conn, err = acquireConn(ctx, pool, 0)
		return err
	})
	return conn, err
}

// resolveLogin resolves where the database is and how to log in: the
// target (its secret read through the cache when one is configured, and
// recorded for Info without its DSN), the secret cache (nil without a
// secret) and the pool's BeforeConnect hook (nil when the DSN carries the
// password). connectPrimary and NewPool share it.
func (m *Manager) resolveLogin(ctx context.Context) (connTarget, *credentials.Cache, func(context.Context, *pgx.ConnConfig) error, error) {
	cache, err := m.secretCache(ctx)
	if err != nil {
		return connTarget{}, nil, nil, err
	}
	var secret credentialsFunc
	if cache != nil {
		secret = cache.Current
	}
	target, err := resolveTarget(ctx, m.cfg, secret)
	if err != nil {
		return connTarget{}, nil, nil, err
	}
	m.mu.Lock()
	m.target = connTarget{Source: target.Source, Host: target.Host, Port: target.Port, Hosts: target.Hosts,
		Database: target.Database, User: target.User, Redacted: target.Redacted} // no DSN: Info only
	m.mu.Unlock()
	beforeConnect, err := m.credentialHook(ctx, cache)
	if err != nil {
		return connTarget{}, nil, nil, err
	}
	return target, cache, beforeConnect, nil
}

// reachWriter pings until the pool holds a connection to a node that
// accepts writes. A node that answers but is read-only is tried again,
// with backoff, until ctx ends (DB_CONNECT_TIMEOUT at Init): a failover
// may be under way, or a single endpoint's DNS may still name the old
// writer, and each new connection resolves it again. The error is then
// the read-only one, never the context's; any other failure returns at
// once.
func reachWriter(ctx context.Context, pool *pgxpool.Pool, addr string) error {
	var readOnly error
	wait := 50 * time.Millisecond
	for {
		err := pool.Ping(ctx)
		if err == nil {
			return nil
		}
		err = classifyConnectError(explainAcquireError(ctx, pool, err), addr)
		if !isReadOnlyError(err) {
			if readOnly != nil && ctx.Err() != nil {
				return readOnly
			}
			return err
		}
		readOnly = err
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			wait = time.Until(dl) / 2 // one last try before the deadline
			if wait < 10*time.Millisecond {
				return readOnly
			}
		}
		if sleepCtx(ctx, wait) != nil {
			return readOnly
		}
		wait = min(2*wait, 500*time.Millisecond)
	}
}

// noteReadOnlyNode hears the pool find a connection on a read-only node
// (a failover, a fenced writer, stale DNS): the pool closes it and checks
// the others. It is logged once per episode (10 s without one ends it).
func (m *Manager) noteReadOnlyNode() {
	now := time.Now().UnixNano()
	if prev := m.lastReadOnly.Swap(now); now-prev > int64(readOnlyEpisode) {
		m.log.Warn("Primary database connection found on a read-only node; reconnecting to the writer")
	}
}

// readOnlyEpisode is how long without a read-only finding ends an episode
// of them (one log line each).
const readOnlyEpisode = 10 * time.Second

// secretCache returns the Manager's secret cache when the configuration
// names a secret, creating it (and the AWS client) on first use.
func (m *Manager) secretCache(ctx context.Context) (*credentials.Cache, error) {
	if m.cfg.Source() != SourceSecret {
		return nil, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.secrets != nil {
		return m.secrets, nil
	}
	src := m.opts.secrets
	if src == nil {
		aws, err := NewAWSSecretSource(ctx, m.cfg.Region)
		if err != nil {
			// No region or no usable AWS configuration: nothing to retry.
			return nil, fmt.Errorf("%w: Secrets Manager: %w", ErrConfig, err)
		}
		src = aws
	}
	m.secrets = credentials.NewCache(src, m.cfg.SecretID,
		credentials.WithTTL(m.cfg.SecretCacheTTL),
		credentials.WithRotationBudget(m.cfg.RotationBudget),
		credentials.WithLogger(m.log),
		credentials.WithObserver(m.tel),
		credentials.WithRetryContext(deadline.Enforce))
	return m.secrets, nil
}

// credentialHook is the pool's BeforeConnect: an IAM token, the cached
// secret, or nothing (the DSN carries the password).
func (m *Manager) credentialHook(ctx context.Context, cache *credentials.Cache) (func(context.Context, *pgx.ConnConfig) error, error) {
	if m.cfg.IAMAuth {
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.iam == nil {
			iam, err := credentials.NewIAM(ctx, m.cfg.Region, nil)
			if err != nil {
				// No region or no AWS credentials: nothing to retry.
				return nil, fmt.Errorf("%w: IAM authentication: %w", ErrConfig, err)
			}
			m.iam = iam
		}
		if cache == nil {
			return m.iam.BeforeConnect, nil
		}
		// The secret gives the user name; IAM the password.
		return func(ctx context.Context, cc *pgx.ConnConfig) error {
			if err := cache.BeforeConnect(ctx, cc); err != nil {
				return err
			}
			return m.iam.BeforeConnect(ctx, cc)
		}, nil
	}
	if cache != nil {
		return cache.BeforeConnect, nil
	}
	return nil, nil
}

// checkSuspects makes the pool ping, before use, every idle connection
// that was already idle when a call on the primary last failed for want of
// a connection: one dead connection usually means the others died too (a
// server restart, a network cut), and no caller should meet them.
func (m *Manager) checkSuspects(pc *pgxpool.Config) {
	inner := pc.ShouldPing
	pc.ShouldPing = func(ctx context.Context, p pgxpool.ShouldPingParams) bool {
		if since := m.outage.SuspectSince(); since != 0 && time.Now().Add(-p.IdleDuration).UnixNano() <= since {
			return true
		}
		return inner != nil && inner(ctx, p)
	}
}

// isMisconfiguration tells a configuration the Manager must refuse (Init
// fails whatever DB_FALLBACK says) from a primary that is merely
// unreachable now (Init falls back to memory and keeps trying).
func isMisconfiguration(err error) bool {
	for _, target := range []error{ErrConfig, ErrMalformedSecret, ErrSecretNotFound, ErrIAMRequiresTLS, ErrInvalid} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// errorText is the one-line, redacted reason shown in logs, Info and
// health for err (pgx lists each address it tried on a line of its own).
func errorText(err error) string {
	return strings.Join(strings.Fields(safeError(err).Error()), " ")
}

// tlsInfo is what Info and the start-up log show about p's TLS.
func (p *primary) tlsInfo() TLSInfo { return tlsInfoOf(p.tls) }

package dbmanager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gatewaykit/dbmanager/internal/credentials"
	"github.com/gatewaykit/dbmanager/internal/outage"
)

// Manager is a service's database connection: it finds PostgreSQL from the
// configuration (DATABASE_URL, a Secrets Manager secret, or AWS_DB_*
// variables), opens a pool with TLS and the pool settings, and serves one
// Store that callers keep for the life of the process. When PostgreSQL is
// not configured, or unreachable at start-up, the Store serves from memory
// (health "degraded") while a background loop keeps trying the primary and,
// once it answers, moves what was written meanwhile to it.
//
// A Manager is safe for concurrent use. Create one with New (or use
// Default), call Init once at start-up, and Close at shutdown.
type Manager struct {
	cfg    Config
	cfgErr error // a configuration error found before New (Default)
	opts   managerOptions
	log    *slog.Logger
	tel    *instrumentation // metrics and spans (telemetry.go)

	router routingStore
	mem    *MemStore

	initMu   sync.Mutex // serialises Init
	initDone bool
	initErr  error

	mu             sync.Mutex // guards the fields below
	mode           mode
	primary        *primary
	secrets        *credentials.Cache
	iam            *credentials.IAM
	target         connTarget // where the primary is, as last resolved (display fields only)
	fallbackReason string
	recovery       recoveryCounts
	lastStatus     string // the health status last logged
	closed         bool

	outage       outage.Tracker // the running primary's outages: the lost/restored log pair (outage.go)
	lastReadOnly atomic.Int64   // unix nanos the pool last found a connection on a read-only node

	stop context.CancelFunc // ends background goroutines
	bg   context.Context
	wg   sync.WaitGroup
}

// mode is what the Store is serving from, and why.
type mode int

const (
	modeUninitialized  mode = iota
	modeMemoryChosen        // DATABASE_URL=memory://
	modeMemoryNoConfig      // nothing configured
	modeFallback            // primary configured but unreachable; recovering
	modePrimary             // serving from PostgreSQL
	modeClosed
)

// recoveryCounts are the numbers Info reports about moves back to the
// primary.
type recoveryCounts struct {
	recoveries int // completed moves
	moved      int // records written to PostgreSQL by moves
	conflicts  int // records PostgreSQL kept over a memory record
}

// New returns a Manager for cfg. It does not connect: call Init. The
// Store it returns works from the start, but calls before Init fail with
// ErrUnavailable.
func New(cfg Config, opts ...Option) *Manager {
	o := applyOptions(opts)
	m := &Manager{cfg: cfg, opts: o, log: o.logger, mem: NewMemStore()}
	m.bg, m.stop = context.WithCancel(context.Background())
	m.tel = newTelemetry(cfg, o, o.logger)
	m.tel.observeManager(m.servingBackend)
	m.router.instrument = m.tel.instrumentStore
	m.router.observe = m.observePrimary
	m.router.outages = &m.outage
	m.router.callTimeout = cfg.ConnectTimeout + cfg.PoolTimeout
	m.router.switchTo(notInitialized, false)
	return m
}

var (
	defaultMu      sync.Mutex
	defaultManager *Manager
)

// Default returns the process-wide Manager, built on first use from the
// environment (ConfigFromEnv) with the default options. A configuration
// error is reported by its Init. Default is safe to call from many
// goroutines; all get the same Manager until SetDefault replaces it.
func Default() *Manager {
	defaultMu.Lock()
	defer defaultMu.Unlock()
	if defaultManager == nil {
		cfg, err := ConfigFromEnv()
		defaultManager = New(cfg)
		defaultManager.cfgErr = err
	}
	return defaultManager
}

// SetDefault makes m the Manager that Default returns (nil: build a new one
// from the environment on the next call). It does not close the previous
// one.
func SetDefault(m *Manager) {
	defaultMu.Lock()
	defaultManager = m
	defaultMu.Unlock()
}

// Init decides where the Store serves from, as the configuration says:
//
//   - DATABASE_URL=memory://: memory, on purpose (health "healthy");
//   - nothing configured: memory (health "degraded"), logging
//     "No database URL configured";
//   - a reachable primary: PostgreSQL;
//   - a primary that cannot be reached within DB_CONNECT_TIMEOUT (refused,
//     timeout, DNS, TLS, authentication): memory (health "degraded") and a
//     background loop that moves back to PostgreSQL when it answers; with
//     DB_FALLBACK=none Init returns the *ConnectionError instead;
//   - a misconfiguration (a malformed variable or URL, an unreadable CA
//     file, a malformed or missing secret): Init returns the error, whatever
//     DB_FALLBACK says.
//
// Init waits at most DB_CONNECT_TIMEOUT for PostgreSQL. If ctx ends first,
// Init returns ctx's error and decides nothing, so it can be called again.
// Otherwise calling it again returns the first call's result; concurrent
// calls initialise once. After Close it returns ErrClosed.
func (m *Manager) Init(ctx context.Context) error {
	m.initMu.Lock()
	defer m.initMu.Unlock()
	if m.initDone {
		return m.initErr
	}
	if m.isClosed() {
		return ErrClosed
	}
	ctx, span := m.tel.span(ctx, "dbmanager.Init")
	err := m.init(ctx)
	m.tel.endInit(span, err, m.router.Backend())
	if err != nil && ctx.Err() != nil && !errors.Is(err, ErrConfig) {
		return err // the caller gave up: let a later Init try again
	}
	m.initDone, m.initErr = true, err
	return err
}

func (m *Manager) init(ctx context.Context) error {
	m.log.InfoContext(ctx, "DatabaseManager initialized", slog.String("source", string(m.cfg.Source())))
	if m.cfgErr != nil {
		m.log.ErrorContext(ctx, "Database configuration is invalid", slog.String("error", m.cfgErr.Error()))
		return m.cfgErr
	}
	switch m.cfg.Source() {
	case SourceMemory:
		m.serveMemory(modeMemoryChosen, "")
		m.log.InfoContext(ctx, "Using in-memory storage (DATABASE_URL=memory://)")
		m.log.InfoContext(ctx, "Database initialized: in-memory (primary=False)")
		return nil
	case SourceNone:
		m.serveMemory(modeMemoryNoConfig, "no database configured")
		m.log.WarnContext(ctx, "No database URL configured",
			slog.String("hint", "set DATABASE_URL, AWS_DB_SECRET or AWS_DB_HOST; DATABASE_URL=memory:// chooses memory on purpose"))
		m.log.InfoContext(ctx, "Database initialized: in-memory (primary=False)")
		return nil
	}

	cctx, cancel := context.WithTimeout(ctx, m.cfg.ConnectTimeout)
	defer cancel()
	start := time.Now()
	p, err := m.connectPrimary(cctx)
	if err == nil {
		if !m.usePrimary(p) {
			p.close()
			return ErrClosed
		}
		m.log.InfoContext(ctx, "Primary database initialized successfully",
			slog.Any("target", p.target), slog.Any("tls", p.tlsInfo()), slog.Duration("took", time.Since(start)))
		m.log.InfoContext(ctx, "Database initialized: postgresql (primary=True)")
		return nil
	}
	if ctx.Err() != nil {
		// The caller gave up, not the primary: decide nothing yet.
		return fmt.Errorf("dbmanager: init: %w", ctx.Err())
	}
	reason := errorText(err)
	if isMisconfiguration(err) {
		m.log.ErrorContext(ctx, "Database configuration is invalid", slog.String("error", reason))
		return err
	}
	if m.cfg.Fallback == FallbackNone {
		m.log.ErrorContext(ctx, "Primary database connection failed (DB_FALLBACK=none)", slog.String("reason", reason))
		return err
	}
	m.log.ErrorContext(ctx, "Primary database connection failed. Falling back to in-memory storage.",
		slog.String("reason", reason), slog.Duration("took", time.Since(start)),
		slog.String("diagnose", doctorCommand+" finds the failing step and its fix"))
	m.tel.fellBack(ctx, err)
	if !m.startRecovery(reason) {
		return ErrClosed
	}
	m.log.InfoContext(ctx, "Database initialized: in-memory (primary=False)")
	return nil
}

// serveMemory routes the Store to memory for good.
func (m *Manager) serveMemory(md mode, reason string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.mode, m.fallbackReason = md, reason
	m.router.switchTo(m.mem, false)
}

// usePrimary routes the Store to p. It reports false if the Manager was
// closed meanwhile.
func (m *Manager) usePrimary(p *primary) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false
	}
	m.mode, m.primary = modePrimary, p
	m.router.switchTo(p.store, true)
	p.replicas.start(m.bg)
	return true
}

// Store returns the Manager's Store: one stable handle, valid for the
// Manager's life, that routes every call to the backend in use (PostgreSQL
// or the in-memory fallback). Keep it; there is no need to ask again after
// a fallback or recovery. Calls fail with ErrUnavailable before Init and
// with ErrClosed after Close. A call on PostgreSQL whose context has no
// deadline gets one of DB_CONNECT_TIMEOUT + DB_POOL_TIMEOUT (35 s by
// default), so that no call hangs on a network that drops packets.
//
// Through a failover, a call that certainly did not run (no connection, a
// node that refused it as read-only) is tried again on the new writer for
// up to DB_CONNECT_TIMEOUT, within its deadline, before it fails with
// ErrUnavailable; a write sent before its connection was lost fails with
// ErrOutcomeUnknown (which matches ErrUnavailable too): read the key
// again to learn whether it applied.
func (m *Manager) Store() Store { return &m.router }

// Pool returns the PostgreSQL pool and true while the Store serves from
// PostgreSQL; otherwise nil and false. The pool belongs to the Manager:
// do not close it.
func (m *Manager) Pool() (*pgxpool.Pool, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mode != modePrimary {
		return nil, false
	}
	return m.primary.pool, true
}

// Close stops the background reconnect loop and waits for it, closes the
// Store (later calls get ErrClosed) and closes the pool, waiting for
// connections in use to be released, or until ctx ends. Closing twice is
// harmless.
func (m *Manager) Close(ctx context.Context) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	m.mode = modeClosed
	p, mem := m.primary, m.mem
	m.router.switchTo(closedStore, false)
	m.mu.Unlock()

	m.stop()
	m.tel.close()
	done := make(chan struct{})
	go func() {
		m.wg.Wait()
		p.close()
		_ = mem.Close()
		close(done)
	}()
	select {
	case <-done:
		m.log.InfoContext(ctx, "Database connections closed")
		return nil
	case <-ctx.Done():
		return fmt.Errorf("dbmanager: close: %w", ctx.Err())
	}
}

func (m *Manager) isClosed() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.closed
}

// notInitialized answers calls made before Init (or after it failed).
var notInitialized = refusingStore{err: fmt.Errorf("%w: the Manager is not initialized (Init not called, or it failed)", ErrUnavailable)}

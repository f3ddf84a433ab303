package dbmanager

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gatewaykit/dbmanager/internal/connstr"
)

// Health statuses.
const (
	StatusHealthy   = "healthy"   // on the primary and it answers, or memory chosen on purpose
	StatusDegraded  = "degraded"  // serving from memory because the primary is missing or down
	StatusUnhealthy = "unhealthy" // the primary is configured and its writes fail (down, read-only, silent), or the Manager is closed
)

// Health is the state of the Manager's database, as Manager.Health finds
// it. Its JSON form is the "database" object of the seed's health endpoint,
// with the latency and pool statistics added.
type Health struct {
	Status       string `json:"status"`
	Type         string `json:"type"` // BackendPostgreSQL or BackendMemory
	Message      string `json:"message"`
	UsingPrimary bool   `json:"using_primary"`
	// Latency is how long the ping took (0 when nothing was pinged).
	Latency time.Duration `json:"latency_ms"`
	// Pool is the pool's statistics while on PostgreSQL.
	Pool *PoolStats `json:"pool,omitempty"`
	// Replicas lists the read replicas, as their last checks found them
	// (none without read configuration). A replica out of rotation does
	// not change Status: reads go to the others or the primary.
	Replicas []ReplicaInfo `json:"replicas,omitempty"`
}

// MarshalJSON writes Latency in milliseconds.
func (h Health) MarshalJSON() ([]byte, error) {
	type plain Health
	return json.Marshal(struct {
		plain
		Latency float64 `json:"latency_ms"`
	}{plain(h), float64(h.Latency.Microseconds()) / 1000})
}

// Health reports the database's state. On PostgreSQL it checks that the
// Store's writes can succeed: one round trip of a statement of the Store's
// shape on its table that a read-only node refuses like a write (so it is
// never "healthy" on a standby, a fenced writer or with no writer at
// all), bounded by the health timeout (WithHealthTimeout, default 2 s) and
// ctx. A change of status is logged once, in the seed's words ("Database
// health: healthy - Primary database connection is healthy").
func (m *Manager) Health(ctx context.Context) Health {
	m.mu.Lock()
	md, p, reason := m.mode, m.primary, m.fallbackReason
	m.mu.Unlock()
	var h Health
	switch md {
	case modeUninitialized:
		h = Health{Status: StatusUnhealthy, Type: BackendMemory, Message: "Database manager is not initialized"}
	case modeClosed:
		h = Health{Status: StatusUnhealthy, Type: BackendMemory, Message: "Database manager is closed"}
	case modeMemoryChosen:
		h = Health{Status: StatusHealthy, Type: BackendMemory, Message: "In-memory storage in use (DATABASE_URL=memory://)"}
	case modeMemoryNoConfig:
		h = Health{Status: StatusDegraded, Type: BackendMemory, Message: "No database URL configured; using in-memory storage"}
	case modeFallback:
		h = Health{Status: StatusDegraded, Type: BackendMemory,
			Message: "Primary database unavailable; using in-memory storage and retrying: " + reason}
	case modePrimary:
		h = m.pingPrimary(ctx, p)
	}
	m.logStatusChange(ctx, h)
	return h
}

// pingPrimary checks that the primary takes the Store's writes (see
// healthStatement: one round trip) and reports its health.
func (m *Manager) pingPrimary(ctx context.Context, p *primary) Health {
	h := Health{Type: BackendPostgreSQL, UsingPrimary: true}
	pctx, cancel := context.WithTimeout(ctx, m.opts.healthTimeout)
	defer cancel()
	start := time.Now()
	epoch := m.outage.Epoch()
	err := p.store.pg.checkWritable(pctx)
	h.Latency = time.Since(start)
	stats := poolStatsOf(p.pool)
	h.Pool = &stats
	if err != nil && ctx.Err() == nil && pctx.Err() != nil && !errors.Is(err, ErrUnavailable) {
		// The health timeout, not the caller, ended it: the primary is silent.
		err = fmt.Errorf("%w: no answer within %s: %w", ErrUnavailable, m.opts.healthTimeout, err)
	}
	if err == nil || ctx.Err() == nil {
		m.observePrimary(epoch, true, err)
	}
	if err != nil {
		h.Status = StatusUnhealthy
		h.Message = "Primary database connection failed: " + errorText(err)
		if isReadOnlyError(err) {
			h.Message = "Primary database is read-only; writes fail until a writable node answers: " + errorText(err)
		}
		h.Replicas = p.replicas.infos()
		return h
	}
	h.Status = StatusHealthy
	h.Message = "Primary database connection is healthy"
	if h.Replicas = p.replicas.infos(); h.Replicas != nil {
		h.Message += "; " + replicaSummary(h.Replicas)
	}
	return h
}

// logStatusChange logs h when its status differs from the last one logged.
func (m *Manager) logStatusChange(ctx context.Context, h Health) {
	m.mu.Lock()
	changed := m.lastStatus != h.Status
	m.lastStatus = h.Status
	m.mu.Unlock()
	if !changed {
		return
	}
	level := slog.LevelInfo
	if h.Status != StatusHealthy {
		level = slog.LevelWarn
	}
	m.log.Log(ctx, level, "Database health: "+h.Status+" - "+h.Message)
}

// ConnectionInfo describes the Manager's connection for operators. It
// never holds a password: the target is shown by its parts.
type ConnectionInfo struct {
	UsingPrimary bool   `json:"is_using_primary"`
	DatabaseType string `json:"database_type"` // BackendPostgreSQL or BackendMemory
	// Source is where the connection settings came from.
	Source Source `json:"source"`
	// Host and Port are the target's host and port. With several hosts
	// (a multi-host DATABASE_URL), Host is their names joined by commas
	// and Port the port they share, 0 when their ports differ; Hosts then
	// lists each host with its own port.
	Host string `json:"host,omitempty"`
	Port int    `json:"port,omitempty"`
	// Hosts lists every host of the target as "host:port", in the order
	// they are tried (one element for a single host).
	Hosts    []string `json:"hosts,omitempty"`
	Database string   `json:"database,omitempty"`
	User     string   `json:"user,omitempty"`
	// FallbackReason says why the Store serves from memory ("" on the
	// primary or when memory was chosen).
	FallbackReason string `json:"fallback_reason,omitempty"`
	// Recovering is true while a background loop is trying to reach the
	// primary.
	Recovering bool `json:"recovering"`
	// PrimaryFailing is true while calls on the running primary fail for
	// want of a connection.
	PrimaryFailing bool `json:"primary_failing"`
	// Recoveries counts moves back to the primary; RecordsMoved the records
	// they wrote to it; Conflicts the records where the primary's own
	// record was kept (see Conflict).
	Recoveries   int `json:"recoveries"`
	RecordsMoved int `json:"records_moved"`
	Conflicts    int `json:"conflicts"`
	// TLS is how the connections to the primary are secured: the mode,
	// and which roots verified the server and when its certificate
	// expires (see TLSInfo). Nil when not on the primary.
	TLS *TLSInfo `json:"tls,omitempty"`
	// Replicas lists the read replicas while on the primary (none without
	// read configuration); ReadsFromPrimary counts the Store reads that
	// went to the primary meanwhile (none caught up or in rotation,
	// ReadFromWriter, or a replica failed).
	Replicas         []ReplicaInfo `json:"replicas,omitempty"`
	ReadsFromPrimary uint64        `json:"reads_from_primary,omitempty"`
}

// Info returns the connection's description without any I/O. The target
// is the one last resolved: the primary in use, or the one being retried.
func (m *Manager) Info() ConnectionInfo {
	m.mu.Lock()
	defer m.mu.Unlock()
	info := ConnectionInfo{
		UsingPrimary:   m.mode == modePrimary,
		DatabaseType:   BackendMemory,
		Source:         m.cfg.Source(),
		Host:           m.target.Host,
		Port:           m.target.Port,
		Hosts:          slices.Clone(m.target.Hosts),
		Database:       m.target.Database,
		User:           m.target.User,
		FallbackReason: m.fallbackReason,
		Recovering:     m.mode == modeFallback,
		PrimaryFailing: m.mode == modePrimary && m.outage.Down(),
		Recoveries:     m.recovery.recoveries,
		RecordsMoved:   m.recovery.moved,
		Conflicts:      m.recovery.conflicts,
	}
	if info.UsingPrimary {
		info.DatabaseType = BackendPostgreSQL
		tls := m.primary.tlsInfo()
		info.TLS = &tls
		if rs := m.primary.replicas; rs != nil {
			info.Replicas, info.ReadsFromPrimary = rs.infos(), rs.writerReads.Load()
		}
	}
	return info
}

// HealthHandler serves the seed service's health endpoint:
//
//	{"status": "healthy", "service": "...", "version": "...",
//	 "database": {"status": "healthy", "type": "postgresql",
//	              "message": "Primary database connection is healthy", "using_primary": true}}
//
// with status 200 when healthy or degraded and 503 when unhealthy. It
// pings with the request's context.
func HealthHandler(m *Manager, service, version string) http.Handler {
	type database struct {
		Status       string        `json:"status"`
		Type         string        `json:"type"`
		Message      string        `json:"message"`
		UsingPrimary bool          `json:"using_primary"`
		Replicas     []ReplicaInfo `json:"replicas,omitempty"`
	}
	type body struct {
		Status   string   `json:"status"`
		Service  string   `json:"service"`
		Version  string   `json:"version"`
		Database database `json:"database"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := m.Health(r.Context())
		code := http.StatusOK
		if h.Status == StatusUnhealthy {
			code = http.StatusServiceUnavailable
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(body{
			Status: h.Status, Service: service, Version: version,
			Database: database{Status: h.Status, Type: h.Type, Message: h.Message, UsingPrimary: h.UsingPrimary, Replicas: h.Replicas},
		})
	})
}

// TLS modes, as TLSInfo.Mode reports them.
const (
	TLSModeVerifyFull = "verify-full" // chain to a trusted root, and the host name
	TLSModeVerifyCA   = "verify-ca"   // chain to a trusted root only
	TLSModeUnverified = "unverified"  // sslmode prefer/require: encrypted if the server agrees, certificate not checked
	TLSModeOff        = "off"         // sslmode=disable
)

// TLSInfo is how the connections to PostgreSQL are secured: the mode the
// configuration asks for and, once a connection has verified the server,
// which trusted roots verified it and when the server's certificate
// expires. It holds no secret.
type TLSInfo struct {
	// Mode is TLSModeVerifyFull, TLSModeVerifyCA, TLSModeUnverified or
	// TLSModeOff.
	Mode string `json:"mode"`
	// Roots names the trusted roots that verified the server on the last
	// verified connection: "system" (the system's trust store, which holds
	// Amazon's public roots for RDS Proxy), "embedded RDS bundle <date>"
	// (the Amazon RDS roots built into the library, as AWS published them
	// on <date>), or "file <path>" (AWS_SSLROOTCERT, or the connection
	// string's sslrootcert). Empty until a connection verified the server.
	Roots string `json:"roots,omitempty"`
	// RootCA is the common name of the root the server's chain ended at,
	// e.g. "Amazon RDS eu-west-1 Root CA RSA2048 G1".
	RootCA string `json:"root_ca,omitempty"`
	// ServerCertExpires is when the server's certificate expires (zero
	// until a connection verified the server).
	ServerCertExpires time.Time `json:"server_cert_expires,omitzero"`
}

// LogValue shows the mode, and the roots and expiry once known.
func (i TLSInfo) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String("mode", i.Mode)}
	if i.Roots != "" {
		attrs = append(attrs, slog.String("roots", i.Roots), slog.String("root_ca", i.RootCA),
			slog.String("server_cert_expires", i.ServerCertExpires.Format(time.DateOnly)))
	}
	return slog.GroupValue(attrs...)
}

// ValidateConnection connects to dsn once, pings, and closes. The attempt
// is bounded by the DSN's connect_timeout, else DefaultConnectTimeout, and
// by ctx. A failure is a *ConnectionError (wrapping ErrUnavailable) with a
// Reason; a DSN that cannot be parsed is a redacted error wrapping
// ErrConfig. No setting of a Config (TLS requirement, CA file) is applied:
// Diagnose walks a whole Config's path, TLS included.
func ValidateConnection(ctx context.Context, dsn string) error {
	cc, err := pgx.ParseConfig(dsn)
	if err != nil {
		return safeError(err)
	}
	if cc.ConnectTimeout <= 0 {
		cc.ConnectTimeout = DefaultConnectTimeout
	}
	return validateConnConfig(ctx, cc)
}

// validateConnConfig connects with cc, pings and closes, bounded by
// cc.ConnectTimeout (DefaultConnectTimeout when zero) for the whole
// attempt and by ctx. Failures are *ConnectionError values.
func validateConnConfig(ctx context.Context, cc *pgx.ConnConfig) error {
	timeout := cc.ConnectTimeout
	if timeout <= 0 {
		timeout = DefaultConnectTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	target := connstr.DisplayHostPort(cc.Host, int(cc.Port))
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return classifyConnectError(err, target)
	}
	defer func() {
		cctx, ccancel := context.WithTimeout(context.Background(), time.Second)
		defer ccancel()
		_ = conn.Close(cctx)
	}()
	if err := conn.Ping(ctx); err != nil {
		return classifyConnectError(err, target)
	}
	return nil
}

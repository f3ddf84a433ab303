package dbmanager

import (
	"context"
	"crypto/tls"
	"strings"

	"github.com/gatewaykit/dbmanager/internal/connstr"
	"github.com/gatewaykit/dbmanager/internal/tlstrust"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Targets and their hosts: the per-host steps (dns, tcp, tls, auth,
// server) run for every host:port of every target, in the order pgx tries
// them.

// Target roles.
const (
	roleWriter  = "writer"
	roleReplica = "replica" // a read replica (DATABASE_READ_URL / AWS_DB_READ_HOST)
)

// replicaStepPrefix names a read replica's per-host steps: replica-dns,
// replica-tcp, replica-tls, replica-auth, replica-server.
const replicaStepPrefix = "replica-"

// replicaOutOfRotation is what a read replica's failed step means for the
// service: a warning, since reads go on without it.
const replicaOutOfRotation = "the Manager keeps this read replica out of rotation while this lasts, and its reads go to another replica or the writer (a warning: nothing fails)"

// diagTarget is one place the Manager connects to, with the pool
// configuration it would use there.
type diagTarget struct {
	role   string
	target connTarget
	pool   *pgxpool.Config
	tls    *tlstrust.Recorder // what verified handshakes with pool's TLS settings showed
}

// targets lists what the Manager connects to: the writer, then each read
// replica. hostSteps diagnoses a replica exactly as the writer; only the
// writer gets the store step.
func (d *diagnosis) targets() []*diagTarget {
	return append([]*diagTarget{d.writer}, d.replicas...)
}

// stepName is the name of the per-host step name on t: the name itself on
// the writer, prefixed with replicaStepPrefix on a read replica.
func (t *diagTarget) stepName(name string) string {
	if t.role == roleReplica {
		return replicaStepPrefix + name
	}
	return name
}

// portSetting names where the port of t's hosts is set, for a fix text.
func (t *diagTarget) portSetting() string {
	if t.role == roleReplica {
		return "DATABASE_READ_URL's port, or the :port of the AWS_DB_READ_HOST entry (the writer's port when it has none)"
	}
	return "the DATABASE_URL's or the secret's port, or AWS_DB_PORT"
}

// hostSetting names where the host names of t are set, for a fix text.
func (t *diagTarget) hostSetting() string {
	if t.role == roleReplica {
		return "the replica's entry in AWS_DB_READ_HOST, or DATABASE_READ_URL's host list"
	}
	return "AWS_DB_HOST, the URL's host or the secret's host"
}

// hostStep runs the per-host step name of t on addr and reports whether it
// failed. On a read replica a failure is recorded as a warning saying the
// replica is out of rotation: the Manager serves reads without it. (A
// misconfigured replica fails the config step instead.)
func (d *diagnosis) hostStep(ctx context.Context, t *diagTarget, name, addr string, check func(context.Context, *Step)) bool {
	status := d.step(ctx, t.stepName(name), addr, check)
	if status == StepFailed && t.role == roleReplica {
		s := &d.steps[len(d.steps)-1]
		s.Status = StepWarning
		s.Detail += "; " + replicaOutOfRotation
	}
	return status == StepFailed
}

// endpoint is one host:port of a target and the TLS settings pgx tries on
// it, in order (nil: plaintext), as pgconn builds them from the
// connection string (sslmode=prefer: TLS, then plaintext).
type endpoint struct {
	host string
	port uint16
	tls  []*tls.Config
}

// endpointsOf groups the host and fallbacks of cc by host:port, keeping
// pgx's order.
func endpointsOf(cc *pgconn.Config) []endpoint {
	var eps []endpoint
	add := func(host string, port uint16, tc *tls.Config) {
		for i := range eps {
			if eps[i].host == host && eps[i].port == port {
				eps[i].tls = append(eps[i].tls, tc)
				return
			}
		}
		eps = append(eps, endpoint{host: host, port: port, tls: []*tls.Config{tc}})
	}
	add(cc.Host, cc.Port, cc.TLSConfig)
	for _, fb := range cc.Fallbacks {
		add(fb.Host, fb.Port, fb.TLSConfig)
	}
	return eps
}

func (e endpoint) addr() string { return connstr.DisplayHostPort(e.host, int(e.port)) }

// addrs lists the host:port of every endpoint of t, comma-separated.
func (t *diagTarget) addrs() string {
	var out []string
	for _, ep := range endpointsOf(&t.pool.ConnConfig.Config) {
		out = append(out, ep.addr())
	}
	return strings.Join(out, ",")
}

// tlsConfig is the first TLS setting pgx tries (nil when only plaintext).
func (e endpoint) tlsConfig() *tls.Config {
	for _, tc := range e.tls {
		if tc != nil {
			return tc
		}
	}
	return nil
}

// plaintextAllowed reports whether pgx would also connect without TLS.
func (e endpoint) plaintextAllowed() bool {
	for _, tc := range e.tls {
		if tc == nil {
			return true
		}
	}
	return false
}

func (e endpoint) unixSocket() bool { return strings.HasPrefix(e.host, "/") }

// connConfig is the target's connection configuration restricted to this
// endpoint: what the pool would try on this host, and nothing else.
func (e endpoint) connConfig(pool *pgxpool.Config) *pgx.ConnConfig {
	cc := pool.ConnConfig.Copy()
	cc.Host, cc.Port, cc.TLSConfig = e.host, e.port, e.tls[0]
	cc.Fallbacks = nil
	for _, tc := range e.tls[1:] {
		cc.Fallbacks = append(cc.Fallbacks, &pgconn.FallbackConfig{Host: e.host, Port: e.port, TLSConfig: tc})
	}
	return cc
}

// hostResult is what the per-host steps found on one endpoint.
type hostResult struct {
	serverStep int    // index of its server step in d.steps; -1 if it did not run
	loggedIn   bool   // auth succeeded
	readOnly   bool   // the node does not accept writes
	poolUses   bool   // the pool's own node check (ValidateConnect) accepts it
	fix        string // for a read-only node: how to point the writer elsewhere
}

// hostSteps runs dns, tcp, tls, auth and server for every endpoint of t and
// reports whether t can serve its role: for the writer, whether the node
// the pool would use logs in and accepts writes.
func (d *diagnosis) hostSteps(ctx context.Context, t *diagTarget) bool {
	var results []hostResult
	for _, ep := range endpointsOf(&t.pool.ConnConfig.Config) {
		results = append(results, d.endpointSteps(ctx, t, ep))
	}
	if t.role != roleWriter {
		for _, r := range results {
			if r.loggedIn {
				return true
			}
		}
		return false
	}
	for _, r := range results {
		if r.loggedIn && r.poolUses {
			// pgx stops at the first node that logs in and passes its
			// check: this is the node the Manager would write to.
			return !r.readOnly
		}
	}
	// No node passes: read-only nodes the pool skipped are why.
	for _, r := range results {
		if r.serverStep >= 0 && r.readOnly {
			s := &d.steps[r.serverStep]
			s.Status = StepFailed
			s.Detail += "; no host of the writer accepts writes, so the Manager finds no writer and falls back to memory (reason read-only)"
			s.Fix = r.fix
		}
	}
	return false
}

// endpointSteps runs the per-host steps on one endpoint; a step that
// fails makes the ones after it skipped.
func (d *diagnosis) endpointSteps(ctx context.Context, t *diagTarget, ep endpoint) hostResult {
	res := hostResult{serverStep: -1}
	addr := ep.addr()
	cc := ep.connConfig(t.pool)
	skipRest := func(names []string, failed string) {
		for _, n := range names {
			d.skip(t.stepName(n), addr, "needs "+t.stepName(failed)+", which failed")
		}
	}
	var addrs []netAddr
	if d.hostStep(ctx, t, "dns", addr, func(ctx context.Context, s *Step) { addrs = d.checkDNS(ctx, s, t, cc, ep) }) {
		skipRest([]string{"tcp", "tls", "auth", "server"}, "dns")
		return res
	}
	var reached netAddr
	if d.hostStep(ctx, t, "tcp", addr, func(ctx context.Context, s *Step) { reached = d.checkTCP(ctx, s, t, cc, addrs) }) {
		skipRest([]string{"tls", "auth", "server"}, "tcp")
		return res
	}
	if d.hostStep(ctx, t, "tls", addr, func(ctx context.Context, s *Step) { d.checkTLS(ctx, s, t, cc, ep, reached) }) {
		skipRest([]string{"auth", "server"}, "tls")
		return res
	}
	var conn *pgx.Conn
	if d.hostStep(ctx, t, "auth", addr, func(ctx context.Context, s *Step) { conn = d.checkAuth(ctx, s, t, cc) }) {
		skipRest([]string{"server"}, "auth")
		return res
	}
	kept := false
	defer func() {
		if !kept {
			closeConn(conn)
		}
	}()
	res.loggedIn = true
	res.serverStep = len(d.steps)
	d.hostStep(ctx, t, "server", addr, func(ctx context.Context, s *Step) { d.checkServer(ctx, s, t, cc, conn, &res) })
	if t.role == roleWriter && len(d.replicas) > 0 && d.writerConn == nil && res.poolUses && !res.readOnly {
		// The node the Manager would write to: the replicas' server steps
		// read its WAL position on this connection to measure their lag.
		kept, d.writerConn = true, conn
		d.cleanup = append(d.cleanup, func() { closeConn(conn) })
	}
	return res
}

package dbmanager

import (
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

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

// tlsRecorder remembers what the last verified TLS handshake of a pool (or
// connection config) showed. Safe for concurrent handshakes.
type tlsRecorder struct {
	mode string // set when the config is built, before any handshake
	last atomic.Pointer[TLSInfo]
}

// info returns the last verified handshake's TLSInfo, or only the mode
// before one happened. A nil recorder gives the zero TLSInfo.
func (r *tlsRecorder) info() TLSInfo {
	if r == nil {
		return TLSInfo{}
	}
	if last := r.last.Load(); last != nil {
		return *last
	}
	return TLSInfo{Mode: r.mode}
}

// watch makes tc record, after each handshake it verified, the root the
// chain ended at and the server certificate's expiry. It never changes
// whether a handshake succeeds. tc must already verify (see verifies).
func (r *tlsRecorder) watch(tc *tls.Config, plan *trustPlan, mode string) {
	roots := tc.RootCAs // nil: the system roots
	inner := tc.VerifyConnection
	tc.VerifyConnection = func(cs tls.ConnectionState) error {
		if inner != nil {
			if err := inner(cs); err != nil {
				return err
			}
		}
		r.record(cs, roots, plan, mode)
		return nil
	}
}

func (r *tlsRecorder) record(cs tls.ConnectionState, roots *x509.CertPool, plan *trustPlan, mode string) {
	if len(cs.PeerCertificates) == 0 {
		return
	}
	leaf := cs.PeerCertificates[0]
	var chain []*x509.Certificate
	if len(cs.VerifiedChains) > 0 {
		chain = cs.VerifiedChains[0]
	} else {
		// verify-ca: pgx verified the chain in VerifyPeerCertificate and
		// Go keeps no chain; build it again to see its root.
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		chains, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter})
		if err != nil || len(chains) == 0 {
			return
		}
		chain = chains[0]
	}
	anchor := chain[len(chain)-1]
	name := anchor.Subject.CommonName
	if name == "" {
		name = anchor.Subject.String()
	}
	r.last.Store(&TLSInfo{Mode: mode, Roots: plan.rootsOf(anchor), RootCA: name, ServerCertExpires: leaf.NotAfter.UTC()})
}

// verifies reports whether tc checks the server's certificate: Go's own
// verification (verify-full) or pgx's chain-only callback (verify-ca).
func verifies(tc *tls.Config) bool {
	return tc != nil && (!tc.InsecureSkipVerify || tc.VerifyPeerCertificate != nil)
}

// tlsModeOf names the mode of one host's TLS settings.
func tlsModeOf(tc *tls.Config) string {
	switch {
	case tc == nil:
		return TLSModeOff
	case !tc.InsecureSkipVerify:
		return TLSModeVerifyFull
	case tc.VerifyPeerCertificate != nil:
		return TLSModeVerifyCA
	default:
		return TLSModeUnverified
	}
}

// withTLSRecorder makes the pool record its verified handshakes in r.
func withTLSRecorder(r *tlsRecorder) poolOption { return func(o *poolOptions) { o.tls = r } }

// newConnConfigRecording is connConfig with a new recorder: its connections record their
// verified handshakes in the returned recorder (read it with info()
// after connecting): the roots that verified the server and its
// certificate's expiry.
func newConnConfigRecording(cfg Config, dsn string) (*pgx.ConnConfig, *tlsRecorder, error) {
	rec := &tlsRecorder{}
	cc, err := connConfig(cfg, dsn, rec)
	if err != nil {
		return nil, nil, err
	}
	return cc, rec, nil
}

// tlsInfo is what Info and the start-up log show about p's TLS.
func (p *primary) tlsInfo() TLSInfo { return p.tls.info() }

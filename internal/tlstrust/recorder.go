package tlstrust

import (
	"crypto/tls"
	"crypto/x509"
	"sync/atomic"
	"time"
)

// TLS modes, as Info.Mode (and the root's TLSInfo.Mode) reports them.
const (
	ModeVerifyFull = "verify-full" // chain to a trusted root, and the host name
	ModeVerifyCA   = "verify-ca"   // chain to a trusted root only
	ModeUnverified = "unverified"  // sslmode prefer/require: encrypted if the server agrees, certificate not checked
	ModeOff        = "off"         // sslmode=disable
)

// Info is what a Recorder saw, field for field the root's TLSInfo (which
// documents each field; the root converts one to the other).
type Info struct {
	Mode              string
	Roots             string
	RootCA            string
	ServerCertExpires time.Time
}

// Recorder remembers what the last verified TLS handshake of a pool (or
// connection config) showed. Safe for concurrent handshakes.
type Recorder struct {
	mode atomic.Pointer[string] // set when the config is built, before any handshake
	last atomic.Pointer[Info]
}

// SetMode records the mode the configuration asks for (ModeOf of its
// first host, or the first that uses TLS).
func (r *Recorder) SetMode(mode string) { r.mode.Store(&mode) }

// Info returns the last verified handshake's Info, or only the mode
// before one happened. A nil recorder gives the zero Info.
func (r *Recorder) Info() Info {
	if r == nil {
		return Info{}
	}
	if last := r.last.Load(); last != nil {
		return *last
	}
	if m := r.mode.Load(); m != nil {
		return Info{Mode: *m}
	}
	return Info{}
}

// Watch makes tc record, after each handshake it verified, the root the
// chain ended at (named by plan) and the server certificate's expiry. It
// never changes whether a handshake succeeds. tc must already verify (see
// Verifies).
func (r *Recorder) Watch(tc *tls.Config, plan *Plan, mode string) {
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

func (r *Recorder) record(cs tls.ConnectionState, roots *x509.CertPool, plan *Plan, mode string) {
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
	r.last.Store(&Info{Mode: mode, Roots: plan.RootsOf(anchor), RootCA: name, ServerCertExpires: leaf.NotAfter.UTC()})
}

// Verifies reports whether tc checks the server's certificate: Go's own
// verification (verify-full) or pgx's chain-only callback (verify-ca).
func Verifies(tc *tls.Config) bool {
	return tc != nil && (!tc.InsecureSkipVerify || tc.VerifyPeerCertificate != nil)
}

// ModeOf names the mode of one host's TLS settings.
func ModeOf(tc *tls.Config) string {
	switch {
	case tc == nil:
		return ModeOff
	case !tc.InsecureSkipVerify:
		return ModeVerifyFull
	case tc.VerifyPeerCertificate != nil:
		return ModeVerifyCA
	default:
		return ModeUnverified
	}
}

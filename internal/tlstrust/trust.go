// Package tlstrust decides which roots verified TLS trusts and records
// which of them verified the server.
//
// Trusted roots for verified TLS (sslmode verify-ca or verify-full, which
// AWS_REQUIRE_SSL=true and IAM authentication imply):
//
//	AWS_SSLROOTCERT   sslrootcert in the URL   trusted
//	(unset)           (none)                   system roots + embedded RDS roots
//	(unset)           a file, or "system"      that, as in libpq
//	system            (none)                   system roots
//	system            a file, or "system"      that, as in libpq
//	a file            (none)                   that file only
//	a file            a file, or "system"      both
//
// Connections that do not verify (sslmode prefer or require without a
// root file) are left as libpq defines them. The root's tlsconfig.go
// applies the policy to connection strings; this package holds the
// decision (Plan), the embedded Amazon RDS roots, and the Recorder behind
// the Manager's TLSInfo.
package tlstrust

import (
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync/atomic"

	"github.com/gatewaykit/dbmanager/internal/rdsca"
)

// System is the AWS_SSLROOTCERT (and sslrootcert) value that trusts the
// system's roots only: the word libpq uses for sslrootcert.
const System = "system"

// SettingError is a setting whose value cannot be used: Var names it
// (AWS_SSLROOTCERT, sslrootcert), Problem says what is wrong without
// quoting anything secret. The root turns it into a *ConfigError.
type SettingError struct {
	Var     string
	Problem string
}

func (e *SettingError) Error() string { return e.Var + ": " + e.Problem }

// Kind is where verified TLS takes its trusted roots from.
type Kind int

const (
	SystemAndRDS Kind = iota // the default: system roots and the embedded RDS bundle
	SystemOnly               // AWS_SSLROOTCERT=system
	File                     // AWS_SSLROOTCERT=<file>
	URL                      // the connection string's own sslrootcert
)

// Plan is the trust decision for one connection string.
type Plan struct {
	Kind        Kind
	File        string              // AWS_SSLROOTCERT (Kind File)
	FileCerts   []*x509.Certificate // its certificates
	URLRootCert string              // the connection string's sslrootcert ("" if none)
}

// NewPlan decides the trusted roots for the AWS_SSLROOTCERT setting
// rootCert and a connection string whose sslrootcert is urlRootCert. An
// unusable AWS_SSLROOTCERT file is a *SettingError naming the path.
func NewPlan(rootCert, urlRootCert string) (*Plan, error) {
	p := &Plan{URLRootCert: urlRootCert}
	switch {
	case rootCert == System:
		p.Kind = SystemOnly
		if urlRootCert != "" {
			p.Kind = URL
		}
	case rootCert != "":
		certs, err := LoadCAFile(rootCert)
		if err != nil {
			return nil, err
		}
		p.Kind, p.File, p.FileCerts = File, rootCert, certs
	case urlRootCert != "":
		p.Kind = URL
	default:
		p.Kind = SystemAndRDS
	}
	return p, nil
}

// LoadCAFile reads the PEM bundle AWS_SSLROOTCERT names and returns its
// certificates; a missing, unreadable or non-PEM file is a *SettingError
// naming the path.
func LoadCAFile(path string) ([]*x509.Certificate, error) {
	bad := func(problem string) error {
		return &SettingError{Var: "AWS_SSLROOTCERT", Problem: fmt.Sprintf("%q: %s", path, problem)}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		switch {
		case os.IsNotExist(err):
			return nil, bad("no such file; want a PEM CA bundle (e.g. RDS's global-bundle.pem)")
		case os.IsPermission(err):
			return nil, bad("permission denied")
		default:
			return nil, bad("cannot read the file")
		}
	}
	certs, err := rdsca.Parse(data)
	switch {
	case errors.Is(err, rdsca.ErrNoCertificate):
		return nil, bad("not a PEM certificate bundle (no CERTIFICATE block)")
	case err != nil:
		return nil, bad("contains a certificate that cannot be parsed")
	}
	return certs, nil
}

// extraEmbeddedRoots is added to the embedded RDS roots everywhere they
// are used (pool, description). Only tests set it (AddEmbeddedRootsForTest):
// a throwaway CA then goes through exactly the path the RDS bundle takes.
var extraEmbeddedRoots atomic.Pointer[[]*x509.Certificate]

// AddEmbeddedRootsForTest makes certs count as embedded RDS roots until
// the returned function is called. For tests only.
func AddEmbeddedRootsForTest(certs []*x509.Certificate) (restore func()) {
	extraEmbeddedRoots.Store(&certs)
	return func() { extraEmbeddedRoots.Store(nil) }
}

// EmbeddedRoots returns the embedded RDS roots (parsed once).
func EmbeddedRoots() ([]*x509.Certificate, error) {
	roots, err := rdsca.Roots()
	if err != nil {
		return nil, &SettingError{Var: "AWS_SSLROOTCERT", Problem: "the embedded RDS bundle cannot be read; set AWS_SSLROOTCERT to a CA file or to system"}
	}
	if extra := extraEmbeddedRoots.Load(); extra != nil {
		roots = append(slices.Clip(roots), *extra...)
	}
	return roots, nil
}

// isEmbeddedRoot reports whether c is one of the embedded RDS roots.
func isEmbeddedRoot(c *x509.Certificate) bool {
	roots, err := EmbeddedRoots()
	return err == nil && slices.ContainsFunc(roots, c.Equal)
}

// EmbeddedBundleName names the embedded bundle with its date.
func EmbeddedBundleName() string { return "embedded RDS bundle " + rdsca.Published() }

// SystemAndRDSPool returns a new pool of the system roots and the embedded
// RDS roots.
func SystemAndRDSPool() (*x509.CertPool, error) {
	roots, err := EmbeddedRoots()
	if err != nil {
		return nil, err
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool() // no system store: the RDS roots alone
	}
	for _, r := range roots {
		pool.AddCert(r)
	}
	return pool, nil
}

// Pool returns the pool verification uses under p. An unreadable
// sslrootcert is a *SettingError naming it.
func (p *Plan) Pool() (*x509.CertPool, error) {
	switch p.Kind {
	case SystemAndRDS:
		return SystemAndRDSPool()
	case SystemOnly:
		return x509.SystemCertPool()
	}
	pool := x509.NewCertPool()
	switch p.URLRootCert {
	case "":
	case System:
		sys, err := x509.SystemCertPool()
		if err != nil {
			return nil, err
		}
		pool = sys
	default:
		data, err := os.ReadFile(p.URLRootCert)
		if err != nil || !pool.AppendCertsFromPEM(data) {
			return nil, &SettingError{Var: "sslrootcert", Problem: fmt.Sprintf("%q: not a readable PEM CA file", p.URLRootCert)}
		}
	}
	for _, c := range p.FileCerts {
		pool.AddCert(c)
	}
	return pool, nil
}

// Describe says which roots p trusts, for people, e.g. "system and
// embedded RDS bundle 2025-07 (114 roots)", "system
// (AWS_SSLROOTCERT=system)" or "file /etc/rds.pem (AWS_SSLROOTCERT, 3
// certificates)".
func (p *Plan) Describe() string {
	url := "file " + p.URLRootCert + " (sslrootcert)"
	if p.URLRootCert == System {
		url = "system (sslrootcert=system)"
	}
	switch p.Kind {
	case SystemAndRDS:
		n := 0
		for _, b := range rdsca.Bundles() {
			n += b.Certs
		}
		return fmt.Sprintf("system and %s (%d roots)", EmbeddedBundleName(), n)
	case SystemOnly:
		return "system (AWS_SSLROOTCERT=system)"
	case File:
		n := fmt.Sprintf("%d certificates", len(p.FileCerts))
		if len(p.FileCerts) == 1 {
			n = "1 certificate"
		}
		d := "file " + p.File + " (AWS_SSLROOTCERT, " + n + ")"
		if p.URLRootCert != "" {
			d += " and " + url
		}
		return d
	default:
		return url
	}
}

// RootsOf names the roots that anchor, the root a verified chain ended
// at, came from: "system", "embedded RDS bundle <date>" or "file <path>".
func (p *Plan) RootsOf(anchor *x509.Certificate) string {
	url := "file " + p.URLRootCert
	if p.URLRootCert == System {
		url = "system"
	}
	switch p.Kind {
	case SystemAndRDS:
		if isEmbeddedRoot(anchor) {
			return EmbeddedBundleName()
		}
		return "system"
	case SystemOnly:
		return "system"
	case File:
		if p.URLRootCert == "" || slices.ContainsFunc(p.FileCerts, anchor.Equal) {
			return "file " + p.File
		}
		return url
	default:
		return url
	}
}

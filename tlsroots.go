package dbmanager

import (
	"crypto/x509"
	"fmt"
	"os"
	"slices"
	"sync/atomic"

	"github.com/gatewaykit/dbmanager/internal/connstr"
	"github.com/gatewaykit/dbmanager/internal/rdsca"
)

// SSLRootCertSystem is the AWS_SSLROOTCERT value (and Config.SSLRootCert)
// that trusts the system's roots only, without the embedded Amazon RDS
// bundle: the word libpq uses for sslrootcert.
const SSLRootCertSystem = "system"

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
// root file) are left as libpq defines them.

// rootsKind is where verified TLS takes its trusted roots from.
type rootsKind int

const (
	rootsSystemAndRDS rootsKind = iota // the default: system roots and the embedded RDS bundle
	rootsSystem                        // AWS_SSLROOTCERT=system
	rootsFile                          // AWS_SSLROOTCERT=<file>
	rootsURL                           // the connection string's own sslrootcert
)

// trustPlan is the trust decision for one connection string.
type trustPlan struct {
	kind        rootsKind
	file        string              // AWS_SSLROOTCERT (rootsFile)
	fileCerts   []*x509.Certificate // its certificates
	urlRootCert string              // the connection string's sslrootcert ("" if none)
}

// planTrust decides the trusted roots for cfg and a connection string
// whose sslrootcert is urlRootCert. An unusable AWS_SSLROOTCERT file is a
// *ConfigError naming the path.
func planTrust(cfg Config, urlRootCert string) (*trustPlan, error) {
	p := &trustPlan{urlRootCert: urlRootCert}
	switch {
	case cfg.SSLRootCert == SSLRootCertSystem:
		p.kind = rootsSystem
		if urlRootCert != "" {
			p.kind = rootsURL
		}
	case cfg.SSLRootCert != "":
		certs, err := loadCAFile(cfg.SSLRootCert)
		if err != nil {
			return nil, err
		}
		p.kind, p.file, p.fileCerts = rootsFile, cfg.SSLRootCert, certs
	case urlRootCert != "":
		p.kind = rootsURL
	default:
		p.kind = rootsSystemAndRDS
	}
	return p, nil
}

// extraEmbeddedRoots is added to the embedded RDS roots everywhere they
// are used (pool, description). Only tests set it: a throwaway CA then
// goes through exactly the path the RDS bundle takes.
var extraEmbeddedRoots atomic.Pointer[[]*x509.Certificate]

// embeddedRoots returns the embedded RDS roots (parsed once).
func embeddedRoots() ([]*x509.Certificate, error) {
	roots, err := rdsca.Roots()
	if err != nil {
		return nil, &ConfigError{Var: "AWS_SSLROOTCERT", Problem: "the embedded RDS bundle cannot be read; set AWS_SSLROOTCERT to a CA file or to system"}
	}
	if extra := extraEmbeddedRoots.Load(); extra != nil {
		roots = append(slices.Clip(roots), *extra...)
	}
	return roots, nil
}

// isEmbeddedRoot reports whether c is one of the embedded RDS roots.
func isEmbeddedRoot(c *x509.Certificate) bool {
	roots, err := embeddedRoots()
	return err == nil && slices.ContainsFunc(roots, c.Equal)
}

// embeddedBundleName names the embedded bundle with its date.
func embeddedBundleName() string { return "embedded RDS bundle " + rdsca.Published() }

// systemAndRDSPool returns a new pool of the system roots and the embedded
// RDS roots.
func systemAndRDSPool() (*x509.CertPool, error) {
	roots, err := embeddedRoots()
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

// pool returns the pool verification uses under p.
func (p *trustPlan) pool() (*x509.CertPool, error) {
	switch p.kind {
	case rootsSystemAndRDS:
		return systemAndRDSPool()
	case rootsSystem:
		return x509.SystemCertPool()
	}
	pool := x509.NewCertPool()
	switch p.urlRootCert {
	case "":
	case SSLRootCertSystem:
		sys, err := x509.SystemCertPool()
		if err != nil {
			return nil, err
		}
		pool = sys
	default:
		data, err := os.ReadFile(p.urlRootCert)
		if err != nil || !pool.AppendCertsFromPEM(data) {
			return nil, &ConfigError{Var: "sslrootcert", Problem: fmt.Sprintf("%q: not a readable PEM CA file", p.urlRootCert)}
		}
	}
	for _, c := range p.fileCerts {
		pool.AddCert(c)
	}
	return pool, nil
}

// describe says which roots p trusts, for people.
func (p *trustPlan) describe() string {
	url := "file " + p.urlRootCert + " (sslrootcert)"
	if p.urlRootCert == SSLRootCertSystem {
		url = "system (sslrootcert=system)"
	}
	switch p.kind {
	case rootsSystemAndRDS:
		n := 0
		for _, b := range rdsca.Bundles() {
			n += b.Certs
		}
		return fmt.Sprintf("system and %s (%d roots)", embeddedBundleName(), n)
	case rootsSystem:
		return "system (AWS_SSLROOTCERT=system)"
	case rootsFile:
		n := fmt.Sprintf("%d certificates", len(p.fileCerts))
		if len(p.fileCerts) == 1 {
			n = "1 certificate"
		}
		d := "file " + p.file + " (AWS_SSLROOTCERT, " + n + ")"
		if p.urlRootCert != "" {
			d += " and " + url
		}
		return d
	default:
		return url
	}
}

// rootsOf names the roots that anchor, the root a verified chain ended
// at, came from: "system", "embedded RDS bundle <date>" or "file <path>".
func (p *trustPlan) rootsOf(anchor *x509.Certificate) string {
	url := "file " + p.urlRootCert
	if p.urlRootCert == SSLRootCertSystem {
		url = "system"
	}
	switch p.kind {
	case rootsSystemAndRDS:
		if isEmbeddedRoot(anchor) {
			return embeddedBundleName()
		}
		return "system"
	case rootsSystem:
		return "system"
	case rootsFile:
		if p.urlRootCert == "" || slices.ContainsFunc(p.fileCerts, anchor.Equal) {
			return "file " + p.file
		}
		return url
	default:
		return url
	}
}

// trustedRoots returns the roots verified TLS trusts under cfg (for a
// DATABASE_URL, with its sslrootcert), as a pool, and says which they are
// in one line, e.g. "system and embedded RDS bundle 2025-07 (114 roots)",
// "system (AWS_SSLROOTCERT=system)" or "file /etc/rds.pem (AWS_SSLROOTCERT,
// 3 certificates)". It is what a connection would verify the server
// against; connections that do not verify (sslmode prefer/require) use no
// roots at all. An unusable AWS_SSLROOTCERT is a *ConfigError naming it.
func trustedRoots(cfg Config) (*x509.CertPool, string, error) {
	urlRootCert := ""
	if cfg.Source() == SourceDatabaseURL {
		dsn, err := parseDatabaseURL(cfg.DatabaseURL.Reveal())
		if err != nil {
			return nil, "", err
		}
		params, err := connstr.Params(dsn)
		if err != nil {
			return nil, "", &ConfigError{Var: "DATABASE_URL", Problem: "cannot read its parameters"}
		}
		urlRootCert = params["sslrootcert"]
	}
	plan, err := planTrust(cfg, urlRootCert)
	if err != nil {
		return nil, "", err
	}
	pool, err := plan.pool()
	if err != nil {
		return nil, "", err
	}
	return pool, plan.describe(), nil
}

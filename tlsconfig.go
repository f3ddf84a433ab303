package dbmanager

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"github.com/gatewaykit/dbmanager/internal/connstr"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/gatewaykit/dbmanager/internal/rdsca"
)

// TLS policy.
//
// With cfg.RequiresTLS() (AWS_REQUIRE_SSL=true, or AWS_DB_IAM_AUTH=true):
// every connection uses TLS with verify-full (certificate chain and host
// name). A connection string without sslmode gets sslmode=verify-full; one
// with any weaker sslmode (disable, allow, prefer, require, verify-ca) is a
// configuration error, never silently downgraded or upgraded. After
// parsing, every host's TLS settings are checked to really verify.
//
// Without it, the connection string keeps libpq's semantics (its sslmode,
// default prefer, and its sslrootcert).
//
// Whenever a host's TLS verifies the server (verify-ca or verify-full),
// its trusted roots follow the table in tlsroots.go: by default the system
// roots plus the embedded Amazon RDS roots, so RDS, Aurora and RDS Proxy
// verify with no file; AWS_SSLROOTCERT=<file> trusts that file only
// (libpq semantics: it becomes the sslrootcert; with the URL's own
// sslrootcert both are trusted); AWS_SSLROOTCERT=system the system roots
// only. A missing, unreadable or non-PEM file is a configuration error
// naming the path.

// loadCAFile reads a PEM bundle and returns its certificates.
func loadCAFile(path string) ([]*x509.Certificate, error) {
	bad := func(problem string) error {
		return &ConfigError{Var: "AWS_SSLROOTCERT", Problem: fmt.Sprintf("%q: %s", path, problem)}
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

// prepareTLS applies the TLS policy to dsn before pgx parses it and
// returns the trust decision for finishTLS.
func prepareTLS(cfg Config, dsn string) (string, *trustPlan, error) {
	params, err := connstr.Params(dsn)
	if err != nil {
		return "", nil, &ConfigError{Var: "connection string", Problem: "cannot read its parameters"}
	}
	plan, err := planTrust(cfg, params["sslrootcert"])
	if err != nil {
		return "", nil, err
	}
	set := map[string]string{}
	if plan.kind == rootsFile && params["sslrootcert"] == "" {
		set["sslrootcert"] = cfg.SSLRootCert
	}
	if cfg.RequiresTLS() {
		switch mode := params["sslmode"]; mode {
		case "":
			set["sslmode"] = "verify-full"
		case "verify-full":
		default:
			why := "AWS_REQUIRE_SSL=true"
			if !cfg.RequireSSL {
				why = "AWS_DB_IAM_AUTH=true"
			}
			return "", nil, &ConfigError{Var: "sslmode", Problem: fmt.Sprintf(
				"the connection string asks for sslmode=%s, weaker than the verify-full that %s requires; remove sslmode or set sslmode=verify-full", mode, why)}
		}
	}
	dsn, err = connstr.SetParams(dsn, set)
	if err != nil {
		return "", nil, &ConfigError{Var: "connection string", Problem: "cannot set its TLS parameters"}
	}
	return dsn, plan, nil
}

// finishTLS gives every host's TLS settings (pgx's Fallbacks included) the
// plan's trusted roots, checks, when TLS is required, that each one
// verifies chain and host name, and makes rec (if not nil) record each
// verified handshake.
func finishTLS(cfg Config, cc *pgconn.Config, plan *trustPlan, rec *tlsRecorder) error {
	configs := []*tls.Config{cc.TLSConfig}
	for _, fb := range cc.Fallbacks {
		configs = append(configs, fb.TLSConfig)
	}
	var rdsPool *x509.CertPool // shared by the hosts: built once
	mode := ""
	for _, tc := range configs {
		switch {
		case tc == nil:
		case plan.kind == rootsFile:
			roots := tc.RootCAs
			if roots == nil {
				if sys, err := x509.SystemCertPool(); err == nil {
					roots = sys
				} else {
					roots = x509.NewCertPool()
				}
			} else {
				roots = roots.Clone()
			}
			for _, c := range plan.fileCerts {
				roots.AddCert(c)
			}
			tc.RootCAs = roots
		case plan.kind == rootsSystemAndRDS && verifies(tc):
			if rdsPool == nil {
				pool, err := systemAndRDSPool()
				if err != nil {
					return err
				}
				rdsPool = pool
			}
			tc.RootCAs = rdsPool
		}
		if cfg.RequiresTLS() && (tc == nil || tc.InsecureSkipVerify || tc.ServerName == "") {
			return &ConfigError{Var: "sslmode", Problem: "TLS is required (verify-full) but a host of the connection string would connect without verified TLS (a Unix socket, or PGSSLMODE)"}
		}
		if mode == "" || mode == TLSModeOff {
			mode = tlsModeOf(tc)
		}
		if rec != nil && verifies(tc) {
			rec.watch(tc, plan, tlsModeOf(tc))
		}
	}
	if rec != nil {
		rec.mode = mode
	}
	return nil
}

// connConfig parses dsn for a single connection with cfg's TLS policy and
// connect timeout applied (DB_CONNECT_TIMEOUT, unless the DSN has
// connect_timeout and the environment did not set DB_CONNECT_TIMEOUT);
// rec (if not nil) records its verified handshakes. Errors are redacted
// and wrap ErrConfig.
func connConfig(cfg Config, dsn string, rec *tlsRecorder) (*pgx.ConnConfig, error) {
	dsn, plan, err := prepareTLS(cfg, dsn)
	if err != nil {
		return nil, err
	}
	cc, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, safeError(err)
	}
	if err := finishTLS(cfg, &cc.Config, plan, rec); err != nil {
		return nil, err
	}
	applyConnectTimeout(cfg, dsn, cc)
	return cc, nil
}

func applyConnectTimeout(cfg Config, dsn string, cc *pgx.ConnConfig) {
	params, _ := connstr.Params(dsn)
	if _, inDSN := params["connect_timeout"]; inDSN && !cfg.explicit.ConnectTimeout && cc.ConnectTimeout > 0 {
		return
	}
	if cfg.ConnectTimeout > 0 {
		cc.ConnectTimeout = cfg.ConnectTimeout
	}
}

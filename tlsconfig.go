package dbmanager

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/gatewaykit/dbmanager/internal/connstr"
	"github.com/gatewaykit/dbmanager/internal/tlstrust"
)

// SSLRootCertSystem is the AWS_SSLROOTCERT value (and Config.SSLRootCert)
// that trusts the system's roots only, without the embedded Amazon RDS
// bundle: the word libpq uses for sslrootcert.
const SSLRootCertSystem = "system"

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
// its trusted roots follow the table in internal/tlstrust: by default the system
// roots plus the embedded Amazon RDS roots, so RDS, Aurora and RDS Proxy
// verify with no file; AWS_SSLROOTCERT=<file> trusts that file only
// (libpq semantics: it becomes the sslrootcert; with the URL's own
// sslrootcert both are trusted); AWS_SSLROOTCERT=system the system roots
// only. A missing, unreadable or non-PEM file is a configuration error
// naming the path.

// planTrust decides the trusted roots for cfg and a connection string
// whose sslrootcert is urlRootCert (internal/tlstrust). An unusable
// AWS_SSLROOTCERT file is a *ConfigError naming the path.
func planTrust(cfg Config, urlRootCert string) (*tlstrust.Plan, error) {
	plan, err := tlstrust.NewPlan(cfg.SSLRootCert, urlRootCert)
	return plan, configErrorOf(err)
}

// configErrorOf turns internal/tlstrust's *SettingError into the
// *ConfigError callers check; other errors pass unchanged.
func configErrorOf(err error) error {
	var se *tlstrust.SettingError
	if errors.As(err, &se) {
		return &ConfigError{Var: se.Var, Problem: se.Problem}
	}
	return err
}

// trustedRoots returns the roots verified TLS trusts under cfg (for a
// DATABASE_URL, with its sslrootcert), as a pool, and says which they are
// in one line (tlstrust.Plan.Describe). It is what a connection would
// verify the server against; connections that do not verify (sslmode
// prefer/require) use no roots at all. An unusable AWS_SSLROOTCERT is a
// *ConfigError naming it.
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
	pool, err := plan.Pool()
	if err != nil {
		return nil, "", configErrorOf(err)
	}
	return pool, plan.Describe(), nil
}

// prepareTLS applies the TLS policy to dsn before pgx parses it and
// returns the trust decision for finishTLS.
func prepareTLS(cfg Config, dsn string) (string, *tlstrust.Plan, error) {
	params, err := connstr.Params(dsn)
	if err != nil {
		return "", nil, &ConfigError{Var: "connection string", Problem: "cannot read its parameters"}
	}
	plan, err := planTrust(cfg, params["sslrootcert"])
	if err != nil {
		return "", nil, err
	}
	set := map[string]string{}
	if plan.Kind == tlstrust.File && params["sslrootcert"] == "" {
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
func finishTLS(cfg Config, cc *pgconn.Config, plan *tlstrust.Plan, rec *tlstrust.Recorder) error {
	configs := []*tls.Config{cc.TLSConfig}
	for _, fb := range cc.Fallbacks {
		configs = append(configs, fb.TLSConfig)
	}
	var rdsPool *x509.CertPool // shared by the hosts: built once
	mode := ""
	for _, tc := range configs {
		switch {
		case tc == nil:
		case plan.Kind == tlstrust.File:
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
			for _, c := range plan.FileCerts {
				roots.AddCert(c)
			}
			tc.RootCAs = roots
		case plan.Kind == tlstrust.SystemAndRDS && tlstrust.Verifies(tc):
			if rdsPool == nil {
				pool, err := tlstrust.SystemAndRDSPool()
				if err != nil {
					return configErrorOf(err)
				}
				rdsPool = pool
			}
			tc.RootCAs = rdsPool
		}
		if cfg.RequiresTLS() && (tc == nil || tc.InsecureSkipVerify || tc.ServerName == "") {
			return &ConfigError{Var: "sslmode", Problem: "TLS is required (verify-full) but a host of the connection string would connect without verified TLS (a Unix socket, or PGSSLMODE)"}
		}
		if mode == "" || mode == TLSModeOff {
			mode = tlstrust.ModeOf(tc)
		}
		if rec != nil && tlstrust.Verifies(tc) {
			rec.Watch(tc, plan, tlstrust.ModeOf(tc))
		}
	}
	if rec != nil {
		rec.SetMode(mode)
	}
	return nil
}

// connConfig parses dsn for a single connection with cfg's TLS policy and
// connect timeout applied (DB_CONNECT_TIMEOUT, unless the DSN has
// connect_timeout and the environment did not set DB_CONNECT_TIMEOUT);
// rec (if not nil) records its verified handshakes. Errors are redacted
// and wrap ErrConfig.
func connConfig(cfg Config, dsn string, rec *tlstrust.Recorder) (*pgx.ConnConfig, error) {
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

// withTLSRecorder makes the pool record its verified handshakes in r.
func withTLSRecorder(r *tlstrust.Recorder) poolOption { return func(o *poolOptions) { o.tls = r } }

// newConnConfigRecording is connConfig with a new recorder: its
// connections record their verified handshakes in the returned recorder
// (read it with tlsInfoOf after connecting): the roots that verified the
// server and its certificate's expiry.
func newConnConfigRecording(cfg Config, dsn string) (*pgx.ConnConfig, *tlstrust.Recorder, error) {
	rec := &tlstrust.Recorder{}
	cc, err := connConfig(cfg, dsn, rec)
	if err != nil {
		return nil, nil, err
	}
	return cc, rec, nil
}

// tlsInfoOf is what r saw, as Info and the logs show it (the zero TLSInfo
// for a nil recorder).
func tlsInfoOf(r *tlstrust.Recorder) TLSInfo { return TLSInfo(r.Info()) }

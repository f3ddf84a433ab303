package dbmanager

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatewaykit/dbmanager/internal/credentials"
	"github.com/gatewaykit/dbmanager/internal/rdsca"
	"github.com/gatewaykit/dbmanager/internal/testcert"
	"github.com/gatewaykit/dbmanager/internal/tlstrust"
)

// trustAsEmbedded adds ca to the embedded RDS roots for the rest of the
// test: the path a real RDS root takes, without AWS's private keys.
func trustAsEmbedded(t *testing.T, ca *testcert.CA) {
	t.Helper()
	certs := []*x509.Certificate{ca.Cert}
	t.Cleanup(tlstrust.AddEmbeddedRootsForTest(certs))
}

// certExpiry reads the NotAfter of the certificate in a PEM file.
func certExpiry(t *testing.T, file string) time.Time {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c.NotAfter.UTC()
}

// trusts reports whether pool verifies the root certificate c.
func trusts(pool *x509.CertPool, c *x509.Certificate) bool {
	_, err := c.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err == nil
}

func someRDSRoot(t *testing.T) *x509.Certificate {
	t.Helper()
	roots, err := rdsca.Roots()
	if err != nil || len(roots) < 100 {
		t.Fatalf("embedded roots: %d, %v", len(roots), err)
	}
	return roots[len(roots)-1] // a GovCloud one
}

func TestTrustedRootsPerSetting(t *testing.T) {
	rds := someRDSRoot(t)
	ca := testcert.NewCA(t, "file-ca")
	total := 0
	for _, b := range rdsca.Bundles() {
		total += b.Certs
	}
	cases := []struct {
		name     string
		vars     []string
		desc     string
		rds, own bool // the pool trusts an RDS root / the file's CA
	}{
		{"default", nil, "system and " + tlstrust.EmbeddedBundleName() + " (" + strconv.Itoa(total) + " roots)", true, false},
		{"system", []string{"AWS_SSLROOTCERT", "system"}, "system (AWS_SSLROOTCERT=system)", false, false},
		{"file", []string{"AWS_SSLROOTCERT", ca.File}, "file " + ca.File + " (AWS_SSLROOTCERT, 1 certificate)", false, true},
		{"URL's sslrootcert", []string{"DATABASE_URL", "postgres://u@db.example/app?sslrootcert=" + url.QueryEscape(ca.File)}, "file " + ca.File + " (sslrootcert)", false, true},
		{"URL's sslrootcert=system", []string{"DATABASE_URL", "postgres://u@db.example/app?sslrootcert=system"}, "system (sslrootcert=system)", false, false},
		{"system, URL's file wins", []string{"AWS_SSLROOTCERT", "system", "DATABASE_URL", "postgres://u@db.example/app?sslrootcert=" + url.QueryEscape(ca.File)}, "file " + ca.File + " (sslrootcert)", false, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pool, desc, err := trustedRoots(envConfig(t, c.vars...))
			if err != nil {
				t.Fatal(err)
			}
			if desc != c.desc {
				t.Errorf("description %q, want %q", desc, c.desc)
			}
			if trusts(pool, rds) != c.rds || trusts(pool, ca.Cert) != c.own {
				t.Errorf("pool trusts RDS root %v, file CA %v; want %v, %v", trusts(pool, rds), trusts(pool, ca.Cert), c.rds, c.own)
			}
		})
	}
	_, _, err := trustedRoots(envConfig(t, "AWS_SSLROOTCERT", "/nonexistent/"+leakMarker+".pem"))
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "AWS_SSLROOTCERT") {
		t.Errorf("missing file: %v", err)
	}
}

// TestEmbeddedRootsOnEveryVerifyingHost: the roots go to every host's TLS
// settings, pgx's fallbacks included, whenever the host verifies; hosts
// that do not verify are left alone.
func TestEmbeddedRootsOnEveryVerifyingHost(t *testing.T) {
	rds := someRDSRoot(t)
	req := envConfig(t, "AWS_REQUIRE_SSL", "true")
	plain := DefaultConfig()
	for _, c := range []struct {
		name string
		cfg  Config
		dsn  string
		mode string
	}{
		{"required, multi-host", req, "postgres://u:pw@a.example,b.example:6543/app", TLSModeVerifyFull},
		{"verify-full in the URL", plain, "postgres://u:pw@a.example,b.example/app?sslmode=verify-full", TLSModeVerifyFull},
		{"verify-ca in the URL", plain, "host=a.example,b.example user=u sslmode=verify-ca", TLSModeVerifyCA},
	} {
		cc, rec, err := newConnConfigRecording(c.cfg, c.dsn)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if len(cc.Fallbacks) != 1 {
			t.Fatalf("%s: %d fallbacks", c.name, len(cc.Fallbacks))
		}
		for i, tc := range []*tls.Config{cc.TLSConfig, cc.Fallbacks[0].TLSConfig} {
			if tc == nil || !trusts(tc.RootCAs, rds) || tc.VerifyConnection == nil {
				t.Errorf("%s: host %d does not trust the RDS roots or does not record", c.name, i)
			}
		}
		if credentials.CheckIAMTLS(cc) != nil {
			t.Errorf("%s: IAM does not accept these TLS settings", c.name)
		}
		if got := tlsInfoOf(rec); got != (TLSInfo{Mode: c.mode}) {
			t.Errorf("%s: before connecting %+v, want mode %s only", c.name, got, c.mode)
		}
	}
	// Not verifying: untouched, and not recording (IAM must still refuse).
	for _, dsn := range []string{"postgres://u:pw@a.example/app?sslmode=require", "postgres://u:pw@a.example/app"} {
		cc, rec, err := newConnConfigRecording(plain, dsn)
		if err != nil {
			t.Fatal(err)
		}
		if cc.TLSConfig.RootCAs != nil || cc.TLSConfig.VerifyConnection != nil {
			t.Errorf("%s: unverified TLS got roots or a recorder", dsn)
		}
		if credentials.CheckIAMTLS(cc) == nil {
			t.Errorf("%s: IAM accepts unverified TLS", dsn)
		}
		if tlsInfoOf(rec).Mode != TLSModeUnverified {
			t.Errorf("%s: mode %q", dsn, tlsInfoOf(rec).Mode)
		}
	}
	cc, rec, err := newConnConfigRecording(plain, "postgres://u:pw@a.example/app?sslmode=disable")
	if err != nil || cc.TLSConfig != nil || tlsInfoOf(rec).Mode != TLSModeOff {
		t.Errorf("sslmode=disable: %v, mode %q", err, tlsInfoOf(rec).Mode)
	}
	// AWS_SSLROOTCERT=system: pgx's default, the system roots.
	cc, err = newConnConfig(envConfig(t, "AWS_REQUIRE_SSL", "true", "AWS_SSLROOTCERT", "system"), "postgres://u:pw@a.example/app")
	if err != nil || cc.TLSConfig.RootCAs != nil {
		t.Errorf("AWS_SSLROOTCERT=system: %v, roots %v", err, cc.TLSConfig.RootCAs)
	}
}

func TestTLSInfoShowsNoSecretAndLogsCompactly(t *testing.T) {
	info := TLSInfo{Mode: TLSModeVerifyFull, Roots: tlstrust.EmbeddedBundleName(), RootCA: "Amazon RDS eu-west-1 Root CA RSA2048 G1",
		ServerCertExpires: time.Date(2027, 8, 14, 0, 0, 0, 0, time.UTC)}
	logger, logs := captureLogs(t)
	logger.Info("x", "tls", info)
	want := `tls.mode=verify-full tls.roots="embedded RDS bundle 2025-07" tls.root_ca="Amazon RDS eu-west-1 Root CA RSA2048 G1" tls.server_cert_expires=2027-08-14`
	if !strings.Contains(logs.String(), want) {
		t.Errorf("log %q lacks %q", logs.String(), want)
	}
	js, _ := json.Marshal(TLSInfo{Mode: TLSModeUnverified})
	if string(js) != `{"mode":"unverified"}` {
		t.Errorf("JSON before a verified handshake: %s", js)
	}
}

// BenchmarkConnConfigTrust: what the embedded roots cost when a pool's
// config is built (once per pool, not per connection): the system roots
// alone (AWS_SSLROOTCERT=system, the baseline) against the system roots
// plus the embedded RDS roots (the default).
func BenchmarkConnConfigTrust(b *testing.B) {
	if _, err := rdsca.Roots(); err != nil { // parsed once per process, not per config
		b.Fatal(err)
	}
	for _, c := range []struct{ name, rootCert string }{{"system", "system"}, {"system+RDS", ""}} {
		cfg := DefaultConfig()
		cfg.RequireSSL, cfg.SSLRootCert = true, c.rootCert
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := newConnConfig(cfg, "postgres://u:pw@db.example/app"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestTLSModesAreTheRecorders: TLSInfo is converted from internal/tlstrust's
// Info, so its documented mode names must be the recorder's.
func TestTLSModesAreTheRecorders(t *testing.T) {
	for root, internal := range map[string]string{
		TLSModeVerifyFull: tlstrust.ModeVerifyFull,
		TLSModeVerifyCA:   tlstrust.ModeVerifyCA,
		TLSModeUnverified: tlstrust.ModeUnverified,
		TLSModeOff:        tlstrust.ModeOff,
	} {
		if root != internal {
			t.Errorf("TLS mode %q is %q in internal/tlstrust", root, internal)
		}
	}
	if SSLRootCertSystem != tlstrust.System {
		t.Errorf("SSLRootCertSystem = %q", SSLRootCertSystem)
	}
}

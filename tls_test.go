package dbmanager

import (
	"context"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/gatewaykit/dbmanager/internal/pgtest"
	"github.com/gatewaykit/dbmanager/internal/testcert"
)

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestLoadCAFileErrorsNameThePath(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	_ = os.WriteFile(notPEM, []byte("hello"), 0o644)
	unreadable := filepath.Join(dir, "unreadable.pem")
	_ = os.WriteFile(unreadable, []byte("x"), 0o000)
	badCert := filepath.Join(dir, "bad.pem")
	writePEM(t, badCert, "CERTIFICATE", []byte("garbage"))
	cases := []string{filepath.Join(dir, "missing.pem"), notPEM, badCert, dir}
	if os.Geteuid() != 0 { // root reads anything
		cases = append(cases, unreadable)
	}
	for _, path := range cases {
		cfg := DefaultConfig()
		cfg.RequireSSL = true
		cfg.SSLRootCert = path
		_, err := newConnConfig(cfg, "postgres://u:"+leakMarker+"@db.example/app")
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "AWS_SSLROOTCERT") {
			t.Errorf("%s: %v", path, err)
		}
		assertNothingLeaks(t, "CA error", err)
	}
}

func TestTLSPolicyWithoutServer(t *testing.T) {
	ca := testcert.NewCA(t, "policy-ca")
	req := DefaultConfig()
	req.RequireSSL = true
	for _, mode := range []string{"disable", "allow", "prefer", "require", "verify-ca"} {
		for _, dsn := range []string{
			"postgres://u:" + leakMarker + "@db.example/app?sslmode=" + mode,
			"host=db.example user=u password=" + leakMarker + " sslmode=" + mode,
		} {
			_, err := newConnConfig(req, dsn)
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "sslmode="+mode) {
				t.Errorf("sslmode=%s with AWS_REQUIRE_SSL: %v", mode, err)
			}
			assertNothingLeaks(t, "sslmode error", err)
		}
	}
	// No sslmode: verify-full with the host as server name.
	cc, err := newConnConfig(req, "postgres://u:pw@db.example/app")
	if err != nil {
		t.Fatal(err)
	}
	if cc.TLSConfig == nil || cc.TLSConfig.InsecureSkipVerify || cc.TLSConfig.ServerName != "db.example" || len(cc.Fallbacks) != 0 {
		t.Fatalf("not verify-full: %+v fallbacks %d", cc.TLSConfig, len(cc.Fallbacks))
	}
	// verify-full in the URL is accepted.
	if _, err := newConnConfig(req, "postgres://u:pw@db.example/app?sslmode=verify-full"); err != nil {
		t.Fatal(err)
	}
	// IAM implies TLS.
	iam := DefaultConfig()
	iam.IAMAuth = true
	if _, err := newConnConfig(iam, "postgres://u@db.example/app?sslmode=require"); !errors.Is(err, ErrConfig) {
		t.Fatalf("IAM with sslmode=require: %v", err)
	}
	// Without AWS_REQUIRE_SSL the URL keeps libpq's semantics.
	plain := DefaultConfig()
	cc, err = newConnConfig(plain, "postgres://u:pw@db.example/app?sslmode=disable")
	if err != nil || cc.TLSConfig != nil {
		t.Fatalf("sslmode=disable must stay: %v", err)
	}
	cc, err = newConnConfig(plain, "postgres://u:pw@db.example/app")
	if err != nil || cc.TLSConfig == nil || len(cc.Fallbacks) != 1 {
		t.Fatalf("default prefer must stay: %v", err)
	}
	// AWS_SSLROOTCERT becomes the trusted root.
	withCA := req
	withCA.SSLRootCert = ca.File
	cc, err = newConnConfig(withCA, "postgres://u:pw@db.example/app")
	if err != nil || cc.TLSConfig.RootCAs == nil {
		t.Fatalf("CA: %v", err)
	}
	// Unix sockets cannot do TLS: an error when TLS is required.
	if _, err := newConnConfig(req, "host=/tmp user=u"); !errors.Is(err, ErrConfig) {
		t.Fatalf("unix socket with TLS required: %v", err)
	}
}

func TestTLSAgainstServer(t *testing.T) {
	ca := testcert.NewCA(t, "good-ca")
	other := testcert.NewCA(t, "other-ca")
	// The certificate is for "localhost" only, not for 127.0.0.1.
	certFile, keyFile := ca.ServerCert(t, []string{"localhost"}, nil)
	srv := pgtest.NewServer(t, pgtest.WithTLS(certFile, keyFile))
	admin := srv.URL(t)
	_, port, db := serverParts(t, admin)
	role := roleWithPassword(t, srv.AdminURL(), "tls-"+leakMarker)
	env := func(host, caFile string) Config {
		cfg, err := LoadConfig(envOf(map[string]string{
			"AWS_DB_HOST": host, "AWS_DB_PORT": strconv.Itoa(port), "AWS_DB_NAME": db,
			"AWS_DB_USER": role, "AWS_DB_PASSWORD": "tls-" + leakMarker,
			"AWS_REQUIRE_SSL": "true", "AWS_SSLROOTCERT": caFile, "DB_CONNECT_TIMEOUT": "3",
		}))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	connect := func(cfg Config) error {
		tg, err := resolveTarget(context.Background(), cfg, nil)
		if err != nil {
			return err
		}
		cc, err := newConnConfig(cfg, tg.DSN.Reveal())
		if err != nil {
			return err
		}
		return validateConnConfig(context.Background(), cc)
	}
	t.Run("verify-full succeeds", func(t *testing.T) {
		if err := connect(env("localhost", ca.File)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("another CA fails", func(t *testing.T) {
		wantReason(t, connect(env("localhost", other.File)), ReasonTLS)
	})
	t.Run("wrong host name fails", func(t *testing.T) {
		wantReason(t, connect(env("127.0.0.1", ca.File)), ReasonTLS)
	})
	t.Run("neither the system nor the embedded RDS roots trust the test CA", func(t *testing.T) {
		cfg := env("localhost", ca.File)
		cfg.SSLRootCert = ""
		wantReason(t, connect(cfg), ReasonTLS)
	})
}

func TestTLSRequiredServerWithoutTLS(t *testing.T) {
	ca := testcert.NewCA(t, "ca")
	admin := pgtest.URL(t)
	_, port, db := serverParts(t, admin)
	role := roleWithPassword(t, admin, "plain-"+leakMarker)
	cfg, err := LoadConfig(envOf(map[string]string{
		"AWS_DB_HOST": "localhost", "AWS_DB_PORT": strconv.Itoa(port), "AWS_DB_NAME": db,
		"AWS_DB_USER": role, "AWS_DB_PASSWORD": "plain-" + leakMarker,
		"AWS_REQUIRE_SSL": "true", "AWS_SSLROOTCERT": ca.File,
	}))
	if err != nil {
		t.Fatal(err)
	}
	tg, _ := resolveTarget(context.Background(), cfg, nil)
	cc, err := newConnConfig(cfg, tg.DSN.Reveal())
	if err != nil {
		t.Fatal(err)
	}
	wantReason(t, validateConnConfig(context.Background(), cc), ReasonTLS)
}

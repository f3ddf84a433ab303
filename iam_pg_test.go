package dbmanager

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gatewaykit/dbmanager/internal/pgtest"
)

// writeIAMTestCerts writes a CA and a server certificate for 127.0.0.1 and
// localhost into dir and returns the CA, certificate and key file names.
func writeIAMTestCerts(t *testing.T, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "dbmanager test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	srvKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	caCert, _ := x509.ParseCertificate(caDER)
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(srvKey)
	write := func(name, typ string, der []byte, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("ca.crt", "CERTIFICATE", caDER, 0o644), write("server.crt", "CERTIFICATE", srvDER, 0o644), write("server.key", "EC PRIVATE KEY", keyDER, 0o600)
}

// TestIAMRealPostgresOverTLS: a role whose password is the IAM token
// (PostgreSQL cannot check IAM signatures; RDS does) logs in through a
// pool whose BeforeConnect is IAMAuth's, over verify-full TLS. The same
// pool without TLS is refused before a token is sent.
func TestIAMRealPostgresOverTLS(t *testing.T) {
	caFile, certFile, keyFile := writeIAMTestCerts(t, t.TempDir())
	srv := pgtest.NewServer(t, pgtest.WithTLS(certFile, keyFile))
	a := newTestIAM(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	token, err := a.Token(ctx, srv.Host(), srv.Port(), "iam_user")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(token, "'") {
		t.Fatal("token contains a quote")
	}
	srv.Exec(t, "CREATE ROLE iam_user LOGIN PASSWORD '"+token+"'")

	dsn := fmt.Sprintf("postgres://iam_user@%s:%d/postgres?sslmode=verify-full&sslrootcert=%s", srv.Host(), srv.Port(), caFile)
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.BeforeConnect = a.BeforeConnect
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var ssl bool
	if err := pool.QueryRow(ctx, "select ssl from pg_stat_ssl where pid = pg_backend_pid()").Scan(&ssl); err != nil {
		t.Fatalf("login with the IAM token: %v", err)
	}
	if !ssl {
		t.Fatal("connection is not encrypted")
	}

	plainCfg, err := pgxpool.ParseConfig(fmt.Sprintf("postgres://iam_user@%s:%d/postgres?sslmode=prefer", srv.Host(), srv.Port()))
	if err != nil {
		t.Fatal(err)
	}
	plainCfg.BeforeConnect = a.BeforeConnect
	plain, err := pgxpool.NewWithConfig(ctx, plainCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	err = plain.Ping(ctx)
	if !errors.Is(err, ErrIAMRequiresTLS) {
		t.Fatalf("sslmode=prefer with IAM: err = %v, want ErrIAMRequiresTLS", err)
	}
	if strings.Contains(err.Error(), token[len(token)-20:]) {
		t.Fatal("error contains the token")
	}
}

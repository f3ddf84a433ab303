// Package testcert makes throwaway certificate authorities and server
// certificates for TLS tests (a PostgreSQL server started with
// pgtest.WithTLS, a client that verifies it). Keys are ECDSA P-256; files
// are PEM, keys mode 0600.
package testcert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// CA is a certificate authority that exists only for one test.
type CA struct {
	Cert *x509.Certificate
	key  *ecdsa.PrivateKey
	// File is the CA certificate in PEM, for sslrootcert / AWS_SSLROOTCERT.
	File     string
	validity time.Duration // of the CA and the certificates it issues
}

// DefaultValidity is how long NewCA's CA and its certificates are valid.
const DefaultValidity = 24 * time.Hour

var serial atomic.Int64

func nextSerial() *big.Int { return big.NewInt(time.Now().UnixNano() + serial.Add(1)) }

// NewCA creates a CA named name and writes its certificate into a temp dir
// of t.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	return NewCAValidFor(t, name, DefaultValidity)
}

// NewCAValidFor is NewCA for a CA that, like the server certificates it
// issues, is valid for d from now (for tests that look at expiry dates).
func NewCAValidFor(t testing.TB, name string, d time.Duration) *CA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          nextSerial(),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(d),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "ca.pem")
	writePEM(t, file, "CERTIFICATE", der, 0o644)
	return &CA{Cert: cert, key: key, File: file, validity: d}
}

// ServerCert issues a server certificate for the given DNS names and IP
// addresses and returns its certificate and key files.
func (ca *CA) ServerCert(t testing.TB, dnsNames []string, ips []net.IP) (certFile, keyFile string) {
	t.Helper()
	return issue(t, dnsNames, ips, ca.Cert, ca.key, ca.validity)
}

// Localhost issues a server certificate for "localhost" and 127.0.0.1.
func (ca *CA) Localhost(t testing.TB) (certFile, keyFile string) {
	t.Helper()
	return ca.ServerCert(t, []string{"localhost"}, []net.IP{net.ParseIP("127.0.0.1")})
}

// SelfSigned writes a self-signed server certificate for "localhost" and
// 127.0.0.1 (for a server whose clients do not verify it).
func SelfSigned(t testing.TB) (certFile, keyFile string) {
	t.Helper()
	return issue(t, []string{"localhost"}, []net.IP{net.ParseIP("127.0.0.1")}, nil, nil, DefaultValidity)
}

// issue makes a server certificate signed by parent (self-signed when
// parent is nil).
func issue(t testing.TB, dnsNames []string, ips []net.IP, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, validity time.Duration) (certFile, keyFile string) {
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: nextSerial(),
		Subject:      pkix.Name{CommonName: "server"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     dnsNames,
		IPAddresses:  ips,
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	writePEM(t, certFile, "CERTIFICATE", der, 0o644)
	writePEM(t, keyFile, "PRIVATE KEY", keyDER, 0o600)
	return certFile, keyFile
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func writePEM(t testing.TB, path, typ string, der []byte, mode os.FileMode) {
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode); err != nil {
		t.Fatal(err)
	}
}

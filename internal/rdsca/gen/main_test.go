package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type testCert struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

// newCert makes a certificate named name valid until notAfter, signed by
// parent (self-signed when parent is nil).
func newCert(t *testing.T, name string, notAfter time.Time, isCA bool, parent *testCert) *testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              notAfter,
		IsCA:                  isCA,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &testCert{cert: c, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func TestSelectRootsKeepsOnlyLongLivedRoots(t *testing.T) {
	now := time.Now()
	good := newCert(t, "good root", now.AddDate(40, 0, 0), true, nil)
	expired := newCert(t, "expired root", now.Add(-time.Minute), true, nil)
	soon := newCert(t, "root expiring soon", now.AddDate(5, 0, -1), true, nil)
	inter := newCert(t, "intermediate", now.AddDate(40, 0, 0), true, good)
	leaf := newCert(t, "leaf", now.AddDate(40, 0, 0), false, nil)
	var src []byte
	for _, c := range []*testCert{expired, good, soon, inter, leaf, good} {
		src = append(src, c.pem...)
	}
	r, err := selectRoots(src, now)
	if err != nil {
		t.Fatal(err)
	}
	if r.SourceCerts != 6 || r.Certs != 1 || !bytes.Equal(r.pem, good.pem) {
		t.Fatalf("kept %d of %d (%q); want only the good root", r.Certs, r.SourceCerts, r.Omitted)
	}
	sum := sha256.Sum256(src)
	out := sha256.Sum256(good.pem)
	if r.SourceSHA256 != hex.EncodeToString(sum[:]) || r.SHA256 != hex.EncodeToString(out[:]) {
		t.Errorf("SHA-256 of source %s / output %s are wrong", r.SourceSHA256, r.SHA256)
	}
	want := []string{"expired root: expired", "root expiring soon: expires", "intermediate: intermediate (not self-signed)", "leaf: not a CA", "good root: duplicate"}
	if len(r.Omitted) != len(want) {
		t.Fatalf("omitted %q; want %q", r.Omitted, want)
	}
	for i, w := range want {
		if !strings.HasPrefix(r.Omitted[i], w) {
			t.Errorf("omitted[%d] = %q; want %q...", i, r.Omitted[i], w)
		}
	}
}

func TestSelectRootsRejectsBadSources(t *testing.T) {
	now := time.Now()
	soon := newCert(t, "soon", now.AddDate(1, 0, 0), true, nil)
	good := newCert(t, "good", now.AddDate(40, 0, 0), true, nil)
	for name, src := range map[string][]byte{
		"empty":         nil,
		"no root left":  soon.pem,
		"private key":   append(append([]byte{}, good.pem...), "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"...),
		"trailing text": append(append([]byte{}, good.pem...), "not pem"...),
		"bad cert":      []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
	} {
		if _, err := selectRoots(src, now); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestEmbeddedFilesAreWhatGenWrites: running gen over the embedded files
// gives them back byte for byte, so they are exactly gen's output (only
// roots, in canonical PEM).
func TestEmbeddedFilesAreWhatGenWrites(t *testing.T) {
	out := t.TempDir()
	if err := run("..", "2025-07", out, time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, s := range sources {
		want, err := os.ReadFile(filepath.Join("..", s.file))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(out, s.file))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: gen's output differs from the embedded file", s.file)
		}
	}
	record, err := os.ReadFile(filepath.Join(out, "record.go"))
	if err != nil || !bytes.Contains(record, []byte("DO NOT EDIT")) {
		t.Errorf("record.go: %v", err)
	}
}

func TestRunNeedsADateForLocalFiles(t *testing.T) {
	if err := run("..", "", t.TempDir(), time.Now()); err == nil {
		t.Error("-from without -published: no error")
	}
	if err := run("..", "July", t.TempDir(), time.Now()); err == nil {
		t.Error("-published July: no error")
	}
}

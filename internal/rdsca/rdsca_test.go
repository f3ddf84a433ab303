package rdsca

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"testing"
	"time"
)

// minRemaining is the rule gen applies: an embedded root stays valid for
// more than 5 more years.
const minRemainingYears = 5

// TestEmbeddedFilesMatchTheirRecord fails when an embedded file was
// changed without running the refresh (go generate), which rewrites the
// record with the file's SHA-256 and counts.
func TestEmbeddedFilesMatchTheirRecord(t *testing.T) {
	if len(records) != 2 {
		t.Fatalf("record lists %d files; want the commercial and the GovCloud bundle", len(records))
	}
	for _, r := range records {
		data, err := File(r.File)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		if got := hex.EncodeToString(sum[:]); got != r.SHA256 {
			t.Errorf("%s: SHA-256 %s, record says %s: the file changed without the refresh (go generate ./internal/rdsca)", r.File, got, r.SHA256)
		}
		certs, err := Parse(data)
		if err != nil {
			t.Fatalf("%s: %v", r.File, err)
		}
		if len(certs) != r.Certs {
			t.Errorf("%s: %d certificates, record says %d", r.File, len(certs), r.Certs)
		}
		if r.SourceCerts != r.Certs+len(r.Omitted) {
			t.Errorf("%s: source had %d certificates, %d embedded + %d omitted", r.File, r.SourceCerts, r.Certs, len(r.Omitted))
		}
		if len(r.SourceSHA256) != 64 || r.Source == "" || r.Published == "" {
			t.Errorf("%s: incomplete provenance %+v", r.File, r)
		}
	}
}

// TestEmbeddedCertificatesAreLongLivedRoots: every embedded certificate
// parses, is a self-signed CA, is not expired and not within 5 years of
// expiry. When this fails because time has passed, refresh the bundles
// (see the package documentation); gen leaves such roots out.
func TestEmbeddedCertificatesAreLongLivedRoots(t *testing.T) {
	all, err := Roots()
	if err != nil {
		t.Fatal(err)
	}
	limit := time.Now().AddDate(minRemainingYears, 0, 0)
	seen := map[[32]byte]bool{}
	want := 0
	for _, r := range records {
		want += r.Certs
	}
	if len(all) != want {
		t.Fatalf("Roots() = %d certificates; the record says %d", len(all), want)
	}
	for _, c := range all {
		name := c.Subject.CommonName
		if !c.BasicConstraintsValid || !c.IsCA {
			t.Errorf("%s is not a CA", name)
		}
		if !bytes.Equal(c.RawSubject, c.RawIssuer) || c.CheckSignatureFrom(c) != nil {
			t.Errorf("%s is not self-signed", name)
		}
		if !c.NotAfter.After(limit) {
			t.Errorf("%s expires %s, within %d years: refresh the bundles (go generate ./internal/rdsca)", name, c.NotAfter.Format(time.DateOnly), minRemainingYears)
		}
		sum := sha256.Sum256(c.Raw)
		if seen[sum] {
			t.Errorf("%s is embedded twice", name)
		}
		seen[sum] = true
	}
	// Roots is parsed once and shared.
	again, _ := Roots()
	if &again[0] != &all[0] {
		t.Error("Roots parsed the files again")
	}
}

func TestPublishedAndBundlesAreCopies(t *testing.T) {
	if Published() == "" {
		t.Fatal("no publication date")
	}
	b := Bundles()
	b[0].File = "changed"
	for i := range b {
		b[i].Omitted = append(b[i].Omitted[:0], "changed")
	}
	again := Bundles()
	if again[0].File == "changed" || slices.Contains(again[len(again)-1].Omitted, "changed") {
		t.Error("Bundles shares the record")
	}
}

func TestParseSkipsOtherBlocksAndRejectsBadOnes(t *testing.T) {
	key := "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
	for name, c := range map[string]struct {
		data string
		want error
	}{
		"empty":    {"", ErrNoCertificate},
		"text":     {"hello", ErrNoCertificate},
		"key only": {key, ErrNoCertificate},
		"garbage":  {"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", ErrBadCertificate},
	} {
		if _, err := Parse([]byte(c.data)); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
	root, _ := File(records[0].File)
	certs, err := Parse(append([]byte(key), root...))
	if err != nil || len(certs) != records[0].Certs {
		t.Errorf("a key before the certificates: %d certificates, %v", len(certs), err)
	}
}

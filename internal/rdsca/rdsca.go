// Package rdsca embeds the root certificates of Amazon RDS's certificate
// authorities, so that a client verifies RDS and Aurora endpoints with no
// CA file to download. The roots are parsed once, on first use.
//
// The embedded files are AWS's published bundles reduced to their roots:
// global-bundle.pem (the commercial regions) and us-gov-global-bundle.pem
// (GovCloud). A certificate is embedded only when it is a self-signed CA
// valid for more than 5 more years; intermediates are left out (RDS
// servers send their own). The record (record.go) keeps each source's and
// each embedded file's SHA-256, the counts and what was left out; the
// package test fails when a file no longer matches its record or a root
// comes within 5 years of expiry.
//
// Refresh (writes the .pem files and record.go; commit all three):
//
//	go generate ./internal/rdsca
//
// downloads the bundles from AWS (the URLs are in gen/main.go). Offline,
// with the files already downloaded into DIR:
//
//	go run ./internal/rdsca/gen -from DIR -published YYYY-MM -out internal/rdsca
package rdsca

//go:generate go run ./gen

import (
	"crypto/x509"
	"embed"
	"encoding/pem"
	"errors"
	"fmt"
	"sync"
)

//go:embed global-bundle.pem us-gov-global-bundle.pem
var files embed.FS

// Bundle is one embedded file and where it came from.
type Bundle struct {
	File         string   // the embedded file, e.g. "global-bundle.pem"
	Source       string   // the URL AWS publishes the source at
	Published    string   // when the source was published or downloaded (YYYY-MM or YYYY-MM-DD)
	SourceSHA256 string   // SHA-256 of the source file, hex
	SourceCerts  int      // certificates in the source
	SHA256       string   // SHA-256 of the embedded file, hex
	Certs        int      // certificates embedded (all roots)
	Omitted      []string // certificates of the source left out, each "<common name>: <reason>"
}

// Bundles returns the record of the embedded files.
func Bundles() []Bundle {
	out := make([]Bundle, len(records))
	for i, r := range records {
		out[i] = r
		out[i].Omitted = append([]string(nil), r.Omitted...)
	}
	return out
}

// Published is when the embedded bundles were published: the newest
// Published of the record.
func Published() string {
	p := ""
	for _, r := range records {
		p = max(p, r.Published)
	}
	return p
}

// File returns an embedded file's bytes.
func File(name string) ([]byte, error) { return files.ReadFile(name) }

var roots = sync.OnceValues(func() ([]*x509.Certificate, error) {
	var all []*x509.Certificate
	for _, r := range records {
		data, err := files.ReadFile(r.File)
		if err != nil {
			return nil, err
		}
		certs, err := Parse(data)
		if err != nil {
			return nil, fmt.Errorf("rdsca: %s: %w", r.File, err)
		}
		all = append(all, certs...)
	}
	return all, nil
})

// Roots returns every embedded root certificate, parsed on the first call.
// The slice and certificates are shared: do not modify them.
func Roots() ([]*x509.Certificate, error) { return roots() }

// Errors of Parse.
var (
	ErrNoCertificate  = errors.New("no CERTIFICATE block")
	ErrBadCertificate = errors.New("a certificate cannot be parsed")
)

// Parse returns the certificates of the CERTIFICATE blocks of a PEM file;
// other blocks are skipped, as x509.CertPool.AppendCertsFromPEM does. A
// block that does not parse is an error wrapping ErrBadCertificate; a file
// without any, ErrNoCertificate.
func Parse(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: certificate %d: %w", ErrBadCertificate, len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, ErrNoCertificate
	}
	return certs, nil
}

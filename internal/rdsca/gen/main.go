// Command gen refreshes the Amazon RDS certificate bundles that package
// rdsca embeds. It reads the bundles AWS publishes, keeps only the root
// certificates a client should trust for years to come, and writes the
// embedded files and their record (record.go) with both files' SHA-256.
//
//	go generate ./internal/rdsca        # download from AWS (needs HTTPS to truststore.pki.*)
//	go run ./internal/rdsca/gen -from DIR -published 2025-07 -out internal/rdsca
//
// With -from, DIR holds files already downloaded under the names below.
//
// A certificate is kept when it is a CA (basic constraints), self-signed
// (a root: RDS servers send their own intermediates) and valid for more
// than 5 more years. Everything else is left out and listed in the record
// with the reason; a source with no root left, or with anything but
// parseable certificates, is an error and nothing is written.
package main

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"go/format"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// minRemainingYears is how long an embedded root must stay valid; package
// rdsca's test enforces the same rule.
const minRemainingYears = 5

// source is one bundle AWS publishes.
type source struct {
	file string // name of the embedded file (and of the file under -from)
	url  string // where AWS publishes it
}

var sources = []source{
	{"global-bundle.pem", "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"},
	{"us-gov-global-bundle.pem", "https://truststore.pki.us-gov-west-1.rds.amazonaws.com/global/global-bundle.pem"},
}

// result is one bundle after selection: what record.go says about it.
type result struct {
	File, Source, Published string
	SourceSHA256            string
	SourceCerts             int
	SHA256                  string
	Certs                   int
	Omitted                 []string
	pem                     []byte
}

func main() {
	from := flag.String("from", "", "read the bundles from this directory instead of downloading them")
	published := flag.String("published", "", "when the source files were published or downloaded (YYYY-MM or YYYY-MM-DD); default today when downloading")
	out := flag.String("out", ".", "the rdsca package directory to write")
	flag.Parse()
	if err := run(*from, *published, *out, time.Now()); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func run(from, published, out string, now time.Time) error {
	if published == "" {
		if from != "" {
			return errors.New("-from needs -published: say when AWS published (or you downloaded) those files")
		}
		published = now.UTC().Format(time.DateOnly)
	}
	if _, err := time.Parse("2006-01", published); err != nil {
		if _, err := time.Parse(time.DateOnly, published); err != nil {
			return fmt.Errorf("-published %q: want YYYY-MM or YYYY-MM-DD", published)
		}
	}
	var results []result
	for _, s := range sources {
		data, err := read(from, s)
		if err != nil {
			return err
		}
		r, err := selectRoots(data, now)
		if err != nil {
			return fmt.Errorf("%s: %w", s.file, err)
		}
		r.File, r.Source, r.Published = s.file, s.url, published
		results = append(results, r)
		fmt.Fprintf(os.Stderr, "%s: %d of %d certificates kept\n", s.file, r.Certs, r.SourceCerts)
		for _, o := range r.Omitted {
			fmt.Fprintln(os.Stderr, "  left out:", o)
		}
	}
	record, err := renderRecord(results)
	if err != nil {
		return err
	}
	for _, r := range results {
		if err := os.WriteFile(filepath.Join(out, r.File), r.pem, 0o644); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(out, "record.go"), record, 0o644)
}

// read returns the bundle from dir, or downloads it when dir is "".
func read(dir string, s source) ([]byte, error) {
	if dir != "" {
		return os.ReadFile(filepath.Join(dir, s.file))
	}
	client := &http.Client{Timeout: time.Minute}
	resp, err := client.Get(s.url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", s.url, resp.Status)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 16<<20))
}

// selectRoots keeps the self-signed CA certificates of src that are valid
// for more than minRemainingYears after now, in the order of src,
// without duplicates.
func selectRoots(src []byte, now time.Time) (result, error) {
	sum := sha256.Sum256(src)
	r := result{SourceSHA256: hex.EncodeToString(sum[:])}
	limit := now.AddDate(minRemainingYears, 0, 0)
	seen := map[[32]byte]bool{}
	var out bytes.Buffer
	for rest := src; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			if len(bytes.TrimSpace(rest)) > 0 {
				return result{}, errors.New("text after the last certificate that is not PEM")
			}
			break
		}
		if block.Type != "CERTIFICATE" {
			return result{}, fmt.Errorf("unexpected PEM block %q", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return result{}, fmt.Errorf("certificate %d: %w", r.SourceCerts+1, err)
		}
		r.SourceCerts++
		name := c.Subject.CommonName
		if name == "" {
			name = c.Subject.String()
		}
		var why []string
		if !c.BasicConstraintsValid || !c.IsCA {
			why = append(why, "not a CA")
		} else if !bytes.Equal(c.RawSubject, c.RawIssuer) || c.CheckSignatureFrom(c) != nil {
			why = append(why, "intermediate (not self-signed)")
		}
		switch {
		case !c.NotAfter.After(now):
			why = append(why, "expired "+c.NotAfter.UTC().Format(time.DateOnly))
		case !c.NotAfter.After(limit):
			why = append(why, fmt.Sprintf("expires %s, within %d years", c.NotAfter.UTC().Format(time.DateOnly), minRemainingYears))
		}
		if len(why) == 0 && seen[sha256.Sum256(c.Raw)] {
			why = append(why, "duplicate")
		}
		if len(why) > 0 {
			r.Omitted = append(r.Omitted, name+": "+strings.Join(why, "; "))
			continue
		}
		seen[sha256.Sum256(c.Raw)] = true
		_ = pem.Encode(&out, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
		r.Certs++
	}
	if r.Certs == 0 {
		return result{}, fmt.Errorf("no root certificate left of %d", r.SourceCerts)
	}
	r.pem = out.Bytes()
	sum = sha256.Sum256(r.pem)
	r.SHA256 = hex.EncodeToString(sum[:])
	return r, nil
}

// renderRecord writes record.go, the provenance the rdsca tests check the
// embedded files against.
func renderRecord(results []result) ([]byte, error) {
	var b strings.Builder
	b.WriteString("// Code generated by internal/rdsca/gen; DO NOT EDIT.\n// Refresh: see the package documentation.\n\npackage rdsca\n\n")
	b.WriteString("// records describes each embedded file: where it came from, the SHA-256\n// of the source and of the file, and what was left out.\n")
	b.WriteString("var records = []Bundle{\n")
	for _, r := range results {
		fmt.Fprintf(&b, "\t{\n\t\tFile: %q,\n\t\tSource: %q,\n\t\tPublished: %q,\n", r.File, r.Source, r.Published)
		fmt.Fprintf(&b, "\t\tSourceSHA256: %q,\n\t\tSourceCerts: %d,\n", r.SourceSHA256, r.SourceCerts)
		fmt.Fprintf(&b, "\t\tSHA256: %q,\n\t\tCerts: %d,\n", r.SHA256, r.Certs)
		if len(r.Omitted) > 0 {
			b.WriteString("\t\tOmitted: []string{\n")
			for _, o := range r.Omitted {
				fmt.Fprintf(&b, "\t\t\t%q,\n", o)
			}
			b.WriteString("\t\t},\n")
		}
		b.WriteString("\t},\n")
	}
	b.WriteString("}\n")
	return format.Source([]byte(b.String()))
}

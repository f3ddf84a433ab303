package dbmanager_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/gatewaykit/dbmanager/internal/rdsca"
)

// TestREADMEDescribesTheEmbeddedBundle: the README's table of the embedded
// RDS bundle has the record's files, dates and counts, so a refresh that
// changes them cannot leave the README behind; the prose says what was
// left out.
func TestREADMEDescribesTheEmbeddedBundle(t *testing.T) {
	d := loadReadme(t)
	var files, published, source, embedded []string
	for _, tb := range d.tables {
		if len(tb.header) > 0 && tb.header[0] == "Bundle" {
			files, published = tb.column("Bundle"), tb.column("Published")
			source, embedded = tb.column("Certificates in AWS's file"), tb.column("Embedded roots")
		}
	}
	bundles := rdsca.Bundles()
	if len(files) != len(bundles) || len(published) != len(files) || len(source) != len(files) || len(embedded) != len(files) {
		t.Fatalf("README's bundle table has %d rows with all columns; the record has %d files", len(files), len(bundles))
	}
	omitted := 0 // intermediates left out
	for i, b := range bundles {
		row := []string{files[i], published[i], source[i], embedded[i]}
		want := []string{"`" + b.File + "`", b.Published, strconv.Itoa(b.SourceCerts), strconv.Itoa(b.Certs)}
		if strings.Join(row, " | ") != strings.Join(want, " | ") {
			t.Errorf("README row %d: %q; the record says %q", i+1, row, want)
		}
		for _, o := range b.Omitted {
			if strings.Contains(o, "intermediate") {
				omitted++
			}
		}
	}
	prose := strings.Join(d.prose, " ")
	if !strings.Contains(prose, "embedded RDS bundle "+rdsca.Published()) {
		t.Errorf("README does not show the roots as \"embedded RDS bundle %s\"", rdsca.Published())
	}
	if omitted > 0 && !strings.Contains(prose, strconv.Itoa(omitted)+" intermediates") {
		t.Errorf("README does not say that %d intermediates were left out", omitted)
	}
}

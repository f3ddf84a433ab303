package dbmanager

import (
	"os"
	"strings"
	"testing"

	"github.com/gatewaykit/dbmanager/internal/telemetry"
)

// TestREADMEMetricTable keeps the README's metric table equal to the
// instruments the library creates: every one listed once, with its unit
// and kind, and nothing else.
func TestREADMEMetricTable(t *testing.T) {
	raw, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string][2]string{}
	for _, line := range strings.Split(string(raw), "\n") {
		if !strings.HasPrefix(line, "| `db.client.") && !strings.HasPrefix(line, "| `dbmanager.") {
			continue
		}
		cols := strings.Split(line, "|")
		if len(cols) < 5 {
			continue
		}
		name := strings.Trim(strings.TrimSpace(cols[1]), "`")
		unit := strings.Trim(strings.TrimSpace(cols[2]), "`")
		kind := strings.TrimSpace(cols[3])
		if _, dup := listed[name]; dup {
			t.Errorf("README lists %s twice", name)
		}
		listed[name] = [2]string{unit, kind}
	}
	for _, m := range telemetry.All {
		got, ok := listed[m.Name]
		if !ok {
			t.Errorf("README's metric table lacks %s", m.Name)
			continue
		}
		if got[0] != m.Unit || got[1] != string(m.Kind) {
			t.Errorf("README: %s is %q %q; the code says %q %q", m.Name, got[0], got[1], m.Unit, m.Kind)
		}
		delete(listed, m.Name)
	}
	for name := range listed {
		t.Errorf("README lists %s, which the library does not create", name)
	}
}

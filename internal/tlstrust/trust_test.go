package tlstrust

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatewaykit/dbmanager/internal/testcert"
)

func TestNewPlanFollowsTheTable(t *testing.T) {
	ca := testcert.NewCA(t, "plan-test-ca").File
	for _, c := range []struct {
		setting, url string
		kind         Kind
		describe     string
	}{
		{"", "", SystemAndRDS, "system and " + EmbeddedBundleName()},
		{"", "/etc/own.pem", URL, "file /etc/own.pem (sslrootcert)"},
		{"", System, URL, "system (sslrootcert=system)"},
		{System, "", SystemOnly, "system (AWS_SSLROOTCERT=system)"},
		{System, "/etc/own.pem", URL, "file /etc/own.pem (sslrootcert)"},
		{ca, "", File, "file " + ca + " (AWS_SSLROOTCERT, 1 certificate)"},
		{ca, "/etc/own.pem", File, "file " + ca + " (AWS_SSLROOTCERT, 1 certificate) and file /etc/own.pem (sslrootcert)"},
	} {
		p, err := NewPlan(c.setting, c.url)
		if err != nil {
			t.Fatalf("%q/%q: %v", c.setting, c.url, err)
		}
		if p.Kind != c.kind || !strings.HasPrefix(p.Describe(), c.describe) {
			t.Errorf("%q/%q: kind %v %q, want %v %q", c.setting, c.url, p.Kind, p.Describe(), c.kind, c.describe)
		}
	}
}

func TestLoadCAFileNamesTheSetting(t *testing.T) {
	notPEM := filepath.Join(t.TempDir(), "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		"/nonexistent/ca.pem": "no such file",
		notPEM:                "not a PEM certificate bundle",
	} {
		_, err := NewPlan(path, "")
		var se *SettingError
		if !errors.As(err, &se) || se.Var != "AWS_SSLROOTCERT" || !strings.Contains(se.Problem, want) || !strings.Contains(se.Problem, path) {
			t.Errorf("%s: %v, want a SettingError for AWS_SSLROOTCERT saying %q", path, err, want)
		}
	}
	_, err := (&Plan{Kind: URL, URLRootCert: notPEM}).Pool()
	var se *SettingError
	if !errors.As(err, &se) || se.Var != "sslrootcert" {
		t.Errorf("an unreadable sslrootcert: %v, want a SettingError for sslrootcert", err)
	}
}

func TestModeOf(t *testing.T) {
	for _, c := range []struct {
		tc   *tls.Config
		mode string
		ver  bool
	}{
		{nil, ModeOff, false},
		{&tls.Config{ServerName: "db"}, ModeVerifyFull, true},
		{&tls.Config{InsecureSkipVerify: true, VerifyPeerCertificate: func([][]byte, [][]*x509.Certificate) error { return nil }}, ModeVerifyCA, true},
		{&tls.Config{InsecureSkipVerify: true}, ModeUnverified, false},
	} {
		if ModeOf(c.tc) != c.mode || Verifies(c.tc) != c.ver {
			t.Errorf("%+v: mode %q verifies %v, want %q %v", c.tc, ModeOf(c.tc), Verifies(c.tc), c.mode, c.ver)
		}
	}
}

func TestRecorderBeforeAHandshake(t *testing.T) {
	var nilRec *Recorder
	if nilRec.Info() != (Info{}) {
		t.Error("a nil recorder has an Info")
	}
	r := &Recorder{}
	if r.Info() != (Info{}) {
		t.Error("a new recorder has an Info")
	}
	r.SetMode(ModeVerifyFull)
	if r.Info() != (Info{Mode: ModeVerifyFull}) {
		t.Errorf("before a handshake: %+v, want the mode alone", r.Info())
	}
}

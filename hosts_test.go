package dbmanager

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatewaykit/dbmanager/internal/connstr"
	"github.com/jackc/pgx/v5/pgconn"
)

func TestMultiHostTargets(t *testing.T) {
	cases := []struct {
		dsn   string
		host  string
		port  int
		hosts []string
	}{
		{"postgres://u:pw@hostA:5432,hostB:5433/db", "hostA,hostB", 0, []string{"hostA:5432", "hostB:5433"}},
		{"postgres://u:pw@hostA,hostB:5433/db", "hostA,hostB", 0, []string{"hostA:5432", "hostB:5433"}},
		{"postgres://u:pw@hostA:6000,hostB:6000/db", "hostA,hostB", 6000, []string{"hostA:6000", "hostB:6000"}},
		{"postgres://u:pw@hostA:1,hostB/db?port=7", "hostA,hostB", 7, []string{"hostA:7", "hostB:7"}},
		{"postgres://u:pw@[::1]:5432,[::2]:5433/db", "::1,::2", 0, []string{"[::1]:5432", "[::2]:5433"}},
		{"postgres:///db?host=a,b&port=1,2", "a,b", 0, []string{"a:1", "b:2"}},
		{"host=hostA,hostB port=5432,5433 dbname=db user=u", "hostA,hostB", 0, []string{"hostA:5432", "hostB:5433"}},
		{"host=hostA,hostB port=5433 dbname=db user=u", "hostA,hostB", 5433, []string{"hostA:5433", "hostB:5433"}},
		{"host=hostA,hostB dbname=db user=u", "hostA,hostB", 5432, []string{"hostA:5432", "hostB:5432"}},
		// Single hosts keep Host and Port as they were.
		{"postgres://u:pw@h:6543/db", "h", 6543, []string{"h:6543"}},
		{"postgres://u:pw@h/db", "h", 5432, []string{"h:5432"}},
		{"host=h port=6543 dbname=db", "h", 6543, []string{"h:6543"}},
		{"postgres://u:pw@[::1]:6543/db", "::1", 6543, []string{"[::1]:6543"}},
	}
	for _, c := range cases {
		dsn, err := parseDatabaseURL(c.dsn)
		if err != nil {
			t.Errorf("%s: %v", c.dsn, err)
			continue
		}
		tg := newTarget(SourceDatabaseURL, dsn)
		if tg.Host != c.host || tg.Port != c.port || !slices.Equal(tg.Hosts, c.hosts) {
			t.Errorf("%s: Host %q Port %d Hosts %q; want %q %d %q", c.dsn, tg.Host, tg.Port, tg.Hosts, c.host, c.port, c.hosts)
		}
		if tg.Database != "db" && !strings.Contains(c.dsn, "dbname") {
			t.Errorf("%s: Database %q", c.dsn, tg.Database)
		}
		if want := strings.Join(c.hosts, ","); tg.Addr() != want {
			t.Errorf("%s: Addr %q; want %q", c.dsn, tg.Addr(), want)
		}
		if _, err := pgconn.ParseConfig(dsn); err != nil {
			t.Errorf("pgx rejects the DSN of %s: %v", c.dsn, safeError(err))
		}
		if lv := tg.LogValue().String(); !strings.Contains(lv, strings.Join(c.hosts, ",")) {
			t.Errorf("%s: log value %s does not list the hosts", c.dsn, lv)
		}
	}
}

func TestMultiHostURLKeepsItsHostList(t *testing.T) {
	const pw = "S3cr3t-multi"
	in := "postgresql+psycopg2://app:" + pw + "@hostA:5432,hostB/gateway?sslmode=require&password=" + pw
	dsn, err := parseDatabaseURL(in)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(dsn, "postgres://app:"+pw+"@hostA:5432,hostB/gateway?") {
		t.Fatalf("DSN %q lost its host list", Redact(dsn))
	}
	red := Redact(dsn)
	if strings.Contains(red, pw) || !strings.Contains(red, "@hostA:5432,hostB/gateway") {
		t.Fatalf("Redact = %q", red)
	}
	set, err := connstr.SetParams(dsn, map[string]string{"sslmode": "verify-full"})
	if err != nil || !strings.Contains(set, "@hostA:5432,hostB/gateway?") || !strings.Contains(set, "sslmode=verify-full") {
		t.Fatalf("connstr.SetParams = %q, %v", Redact(set), err)
	}
	params, err := connstr.Params(dsn)
	if err != nil || params["sslmode"] != "require" {
		t.Fatalf("connstr.Params = %v, %v", params, err)
	}
	if pws := connstr.Passwords(dsn); !slices.Contains(pws, pw) {
		t.Fatal("connstr.Passwords misses the password of a multi-host URL")
	}
	cc, err := pgconn.ParseConfig(set)
	if err != nil {
		t.Fatal(safeError(err))
	}
	if cc.Host != "hostA" || cc.Port != 5432 || cc.Password != pw {
		t.Fatalf("pgx reads host %q port %d", cc.Host, cc.Port)
	}
}

func TestMultiHostURLRejects(t *testing.T) {
	for _, in := range []string{
		"postgres://u:S3cr3tZ@h1:5432,h2:99999/db",
		"postgres://u:S3cr3tZ@h1:x,h2/db",
		"postgres://u:S3cr3tZ@h1,h 2/db",
		"postgres:///db?host=a,b&port=1,2,3",
		"postgres://u:S3cr3tZ@h1:1,h2:2/db?port=1,2,3",
	} {
		_, err := parseDatabaseURL(in)
		if err == nil {
			t.Errorf("accepted %q", Redact(in))
			continue
		}
		if strings.Contains(err.Error(), "S3cr3tZ") {
			t.Errorf("error echoes the password: %v", err)
		}
	}
}

func TestInfoShowsEveryHost(t *testing.T) {
	m := New(envConfig(t, "DATABASE_URL", "postgres://u:pw-"+leakMarker+"@hostA.invalid:5432,hostB.invalid:5433/db?sslmode=disable",
		"DB_CONNECT_TIMEOUT", "0.2"), WithLogger(discardLogger()), WithRecoveryBackoff(time.Hour, time.Hour))
	defer m.Close(t.Context())
	_ = m.Init(t.Context()) // unreachable: falls back, and Info shows the target retried
	info := m.Info()
	if info.Host != "hostA.invalid,hostB.invalid" || info.Port != 0 ||
		!slices.Equal(info.Hosts, []string{"hostA.invalid:5432", "hostB.invalid:5433"}) {
		t.Fatalf("Info = host %q port %d hosts %q", info.Host, info.Port, info.Hosts)
	}
	b, _ := json.Marshal(info)
	if !strings.Contains(string(b), `"hosts":["hostA.invalid:5432","hostB.invalid:5433"]`) {
		t.Fatalf("Info JSON %s", b)
	}
	if strings.Contains(string(b), leakMarker) || strings.Contains(info.FallbackReason, leakMarker) {
		t.Fatalf("Info leaks: %s", b)
	}
	if !strings.Contains(info.FallbackReason, "hostA.invalid") || !strings.Contains(info.FallbackReason, "hostB.invalid") {
		t.Errorf("the fallback reason should name every host tried: %s", info.FallbackReason)
	}
}

// FuzzDSNHosts checks the host list shown for a DATABASE_URL against the
// hosts pgx tries, whenever both accept it.
func FuzzDSNHosts(f *testing.F) {
	for _, s := range []string{
		"postgres://u:pw@h1:5432,h2:5433/db",
		"postgres://u:pw@h1,h2:5433/db?sslmode=disable",
		"postgres://u:pw@[::1]:1,[::2]/db",
		"postgres://u:pw@h1:1,h2/db?port=7",
		"postgres:///db?host=a,b&port=1,2",
		"host=a,b port=1,2 sslmode=disable",
		"host=a,b port=5",
		"host=h port=5432 password='x'",
		"postgres://u:pw@h%2Cx:1/db",
		"postgres://u@h1:1,h2:2,h3:3/db?target_session_attrs=read-write",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		dsn, err := parseDatabaseURL(raw) // what a Target is made from
		if err != nil {
			return
		}
		ours, err := connstr.Hosts(dsn)
		if err != nil {
			return
		}
		cc, err := pgconn.ParseConfig(dsn)
		if err != nil {
			return
		}
		var theirs []string
		for _, fb := range append([]*pgconn.FallbackConfig{{Host: cc.Host, Port: cc.Port}}, cc.Fallbacks...) {
			s := connstr.DisplayHostPort(fb.Host, int(fb.Port))
			if len(theirs) == 0 || theirs[len(theirs)-1] != s { // TLS and plaintext attempts of one host
				theirs = append(theirs, s)
			}
		}
		for _, h := range ours {
			if h.Host == "" {
				return // pgx fills in its default host (a socket directory)
			}
		}
		// pgx lists a host twice for sslmode=prefer (TLS, then plaintext).
		if got := slices.Compact(connstr.HostStrings(ours)); !slices.Equal(got, theirs) {
			t.Fatalf("%q: hosts %q; pgx tries %q", Redact(dsn), got, theirs)
		}
	})
}

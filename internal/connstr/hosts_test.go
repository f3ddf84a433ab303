package connstr

import (
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// A multi-host URL keeps its host list through every helper, and pgx reads
// back what SetParams wrote.
func TestMultiHostURLThroughTheHelpers(t *testing.T) {
	const pw = "S3cr3t-multi"
	dsn := "postgres://app:" + pw + "@hostA:5432,hostB/gateway?sslmode=require&password=" + pw
	red := Redact(dsn)
	if strings.Contains(red, pw) || !strings.Contains(red, "@hostA:5432,hostB/gateway") {
		t.Fatalf("Redact = %q", red)
	}
	set, err := SetParams(dsn, map[string]string{"sslmode": "verify-full"})
	if err != nil || !strings.Contains(set, "@hostA:5432,hostB/gateway?") || !strings.Contains(set, "sslmode=verify-full") {
		t.Fatalf("SetParams = %q, %v", Redact(set), err)
	}
	params, err := Params(dsn)
	if err != nil || params["sslmode"] != "require" {
		t.Fatalf("Params = %v, %v", params, err)
	}
	if pws := Passwords(dsn); !slices.Contains(pws, pw) {
		t.Fatal("Passwords misses the password of a multi-host URL")
	}
	hosts, err := Hosts(dsn)
	if err != nil || !slices.Equal(HostStrings(hosts), []string{"hostA:5432", "hostB:5432"}) {
		t.Fatalf("Hosts = %v, %v", hosts, err)
	}
	cc, err := pgconn.ParseConfig(set)
	if err != nil {
		t.Fatal("pgx rejects what SetParams wrote")
	}
	if cc.Host != "hostA" || cc.Port != 5432 || cc.Password != pw || len(cc.Fallbacks) == 0 {
		t.Fatalf("pgx reads host %q port %d", cc.Host, cc.Port)
	}
}

// Key=value strings: values with spaces and quotes survive QuoteKV and
// ParseKV, and Scrub masks a known secret and every password= spelling.
func TestKeyValueRoundTripAndScrub(t *testing.T) {
	const pw = `S3cr3t 'q' \ x`
	kv := "host=h user=u password=" + QuoteKV(pw)
	pairs, err := ParseKV(kv)
	if err != nil || len(pairs) != 3 || pairs[2] != (Pair{Key: "password", Value: pw}) {
		t.Fatalf("ParseKV = %q, %v", pairs, err)
	}
	if got := Redact(kv); got != "host=h user=u password=xxxxx" {
		t.Errorf("Redact = %q", got)
	}
	msg := "failed: " + pw + " and password=other1 at postgres://u:zz99@h/db"
	if got := Scrub(msg, Passwords(kv)); strings.Contains(got, pw) || strings.Contains(got, "other1") || strings.Contains(got, "zz99") {
		t.Errorf("Scrub = %q", got)
	}
	if _, err := ParseKV("host=h password='unterminated"); err == nil {
		t.Error("ParseKV accepted an unterminated quote")
	}
}

func TestConfigAddrListsEveryHostOnce(t *testing.T) {
	cc, err := pgconn.ParseConfig("postgres://u@hostA:5432,hostB:5433/db") // sslmode=prefer: two attempts per host
	if err != nil {
		t.Fatal(err)
	}
	if got := ConfigAddr(cc); got != "hostA:5432,hostB:5433" {
		t.Fatalf("configAddr = %q", got)
	}
}

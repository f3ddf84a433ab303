package dbmanager

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

const urlTestPassword = "p@ss:w/rd?#%&=S3cr3tZ"

func TestParseDatabaseURLForms(t *testing.T) {
	cases := []struct{ in, want string }{
		{"postgres://u:pw@h:5432/db", "postgres://u:pw@h:5432/db"},
		{"postgresql://u:pw@h/db?sslmode=require", "postgres://u:pw@h/db?sslmode=require"},
		{"postgresql+asyncpg://u:pw@h:5432/db", "postgres://u:pw@h:5432/db"},
		{"postgresql+psycopg2://u:pw@h:5432/db?sslmode=verify-full", "postgres://u:pw@h:5432/db?sslmode=verify-full"},
		{"POSTGRESQL+ASYNCPG://u:pw@h/db?ssl=true", "postgres://u:pw@h/db?sslmode=require"},
		{"postgresql+asyncpg://u:pw@h/db?ssl=verify-full", "postgres://u:pw@h/db?sslmode=verify-full"},
		{"host=h port=5432 dbname=db user=u password='a b'", "host=h port=5432 dbname=db user=u password='a b'"},
		{"postgres://u:pw@h1:5432,h2:5433/db", "postgres://u:pw@h1:5432,h2:5433/db"},
	}
	for _, c := range cases {
		got, err := parseDatabaseURL(c.in)
		if err != nil {
			t.Errorf("%q: %v", Redact(c.in), err)
			continue
		}
		if got != c.want {
			t.Errorf("%q: got %q, want %q", Redact(c.in), Redact(got), Redact(c.want))
		}
		if _, err := pgx.ParseConfig(got); err != nil {
			t.Errorf("pgx rejects %q: %v", Redact(got), safeError(err))
		}
	}
}

func TestParseDatabaseURLRejects(t *testing.T) {
	for _, in := range []string{
		"mysql://u:" + urlTestPassword + "@h/db",
		"sqlite:///x.db",
		"http://h",
		"word",
		"postgres://u:p@ss/word@h:99999/db",
		"postgres://u:" + "p:w" + "@h:notaport/db",
		"postgres://u:%zz" + "S3cr3tZ@h/db",
		"postgresql://u:pw@h/db?sslmode=sometimes",
		"host=h password='S3cr3tZ",
		"host=h sslmode=maybe",
	} {
		_, err := parseDatabaseURL(in)
		if err == nil {
			t.Errorf("accepted %q", Redact(in))
			continue
		}
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "DATABASE_URL") {
			t.Errorf("%q: %v", Redact(in), err)
		}
		if strings.Contains(err.Error(), "S3cr3tZ") || strings.Contains(err.Error(), "zzS3") {
			t.Errorf("error echoes the password: %v", err)
		}
	}
	_, err := parseDatabaseURL("mysql://u:p@h/db")
	if err == nil || !strings.Contains(err.Error(), `"mysql"`) {
		t.Fatalf("mysql error should name the scheme: %v", err)
	}
}

func TestBuildURLSpecialPassword(t *testing.T) {
	dsn := BuildURL("us@r:x", urlTestPassword, "db.example", 5433, "my db")
	cc, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(safeError(err))
	}
	if cc.Password != urlTestPassword || cc.User != "us@r:x" || cc.Host != "db.example" || cc.Port != 5433 || cc.Database != "my db" {
		t.Fatalf("round trip: user %q host %q port %d db %q pw ok %v", cc.User, cc.Host, cc.Port, cc.Database, cc.Password == urlTestPassword)
	}
	if strings.Contains(Redact(dsn), "S3cr3tZ") {
		t.Fatal("Redact shows password")
	}
}

func TestBuildURLUnixSocket(t *testing.T) {
	cc, err := pgx.ParseConfig(BuildURL("u", "pw", "/var/run/postgresql", 5433, "db"))
	if err != nil {
		t.Fatal(safeError(err))
	}
	if cc.Host != "/var/run/postgresql" || cc.Port != 5433 || cc.Database != "db" {
		t.Fatalf("got host %q port %d db %q", cc.Host, cc.Port, cc.Database)
	}
}

func TestResolveTargetPriority(t *testing.T) {
	secret := func(context.Context) (Credentials, error) {
		return Credentials{Username: "su", Password: urlTestPassword, Host: "sh", Port: 6000, DBName: "sdb"}, nil
	}
	base := map[string]string{
		"DATABASE_URL":  "postgresql+asyncpg://uu:" + url.QueryEscape(urlTestPassword) + "@uh:5555/udb",
		"AWS_DB_SECRET": "s", "AWS_DB_HOST": "eh", "AWS_DB_USER": "eu", "AWS_DB_PASSWORD": urlTestPassword, "AWS_DB_NAME": "edb", "AWS_DB_PORT": "7000",
	}
	want := []struct {
		drop                 string
		src                  Source
		host, user, database string
		port                 int
	}{
		{"", SourceDatabaseURL, "uh", "uu", "udb", 5555},
		{"DATABASE_URL", SourceSecret, "sh", "su", "sdb", 6000},
		{"AWS_DB_SECRET", SourceAWSEnv, "eh", "eu", "edb", 7000},
		{"AWS_DB_HOST", SourceNone, "", "", "", 0},
	}
	for _, w := range want {
		delete(base, w.drop)
		cfg, err := LoadConfig(envOf(base))
		if err != nil {
			t.Fatal(err)
		}
		tg, err := resolveTarget(context.Background(), cfg, secret)
		if err != nil {
			t.Fatal(err)
		}
		if tg.Source != w.src || tg.Host != w.host || tg.User != w.user || tg.Database != w.database || tg.Port != w.port {
			t.Fatalf("without %s: got %v", w.drop, tg)
		}
		if w.src == SourceNone {
			continue
		}
		cc, err := pgx.ParseConfig(tg.DSN.Reveal())
		if err != nil {
			t.Fatal(safeError(err))
		}
		if cc.Password != urlTestPassword {
			t.Fatalf("%v: password did not survive the DSN", w.src)
		}
		for _, s := range []string{fmt.Sprintf("%v %+v %#v", tg, tg, tg), tg.Redacted} {
			if strings.Contains(s, "S3cr3tZ") {
				t.Fatalf("target print shows the password: %s", s)
			}
		}
	}
}

func TestResolveTargetRDSManagedSecret(t *testing.T) {
	cfg, err := LoadConfig(envOf(map[string]string{"AWS_DB_SECRET": "rds!db-1234", "AWS_DB_HOST": "rds.example", "AWS_DB_PORT": "5439", "AWS_DB_NAME": "app"}))
	if err != nil {
		t.Fatal(err)
	}
	tg, err := resolveTarget(context.Background(), cfg, func(context.Context) (Credentials, error) {
		return Credentials{Username: "master", Password: urlTestPassword}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if tg.Host != "rds.example" || tg.Port != 5439 || tg.Database != "app" || tg.User != "master" || tg.Source != SourceSecret {
		t.Fatalf("got %v", tg)
	}
	// Without AWS_DB_HOST it is a configuration error.
	cfg.DBHost = ""
	_, err = resolveTarget(context.Background(), cfg, func(context.Context) (Credentials, error) {
		return Credentials{Username: "master", Password: urlTestPassword}, nil
	})
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "AWS_DB_HOST") {
		t.Fatalf("got %v", err)
	}
	// No secret source at all.
	if _, err := resolveTarget(context.Background(), cfg, nil); !errors.Is(err, ErrConfig) {
		t.Fatalf("got %v", err)
	}
	// The reader's error is wrapped.
	boom := errors.New("boom")
	if _, err := resolveTarget(context.Background(), cfg, func(context.Context) (Credentials, error) { return Credentials{}, boom }); !errors.Is(err, boom) {
		t.Fatalf("got %v", err)
	}
}

func TestResolveTargetIAMHasNoPassword(t *testing.T) {
	cfg, err := LoadConfig(envOf(map[string]string{"AWS_DB_HOST": "h", "AWS_DB_USER": "iam", "AWS_DB_PASSWORD": urlTestPassword, "AWS_DB_IAM_AUTH": "true"}))
	if err != nil {
		t.Fatal(err)
	}
	tg, err := resolveTarget(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(tg.DSN.Reveal(), "S3cr3tZ") {
		t.Fatal("IAM DSN carries the static password")
	}
}

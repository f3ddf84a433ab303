package dbmanager

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// leakMarker is part of every password used in the secrecy tests.
const leakMarker = "S3cr3tZ"

func TestRedactSpellings(t *testing.T) {
	cases := []string{
		"postgres://u:" + leakMarker + "@h/db",
		"postgresql://u:" + "p%40" + leakMarker + "@h/db",
		"postgres://u@h/db?password=" + leakMarker,
		"postgres://u@h/db?PassWord=" + leakMarker + "&sslmode=require",
		"postgres://u@h/db?sslpassword=" + leakMarker,
		"host=h password=" + leakMarker,
		"host=h password = '" + leakMarker + " x'",
		"host=h password= '" + leakMarker + "'",
		"host=h PASSWORD=" + leakMarker,
		"host=h Password =" + leakMarker + " user=u",
		"host=h password='" + leakMarker + "\\' more' user=u",
		"host=h password='" + leakMarker, // unterminated
		"postgres://u:p@ss/" + leakMarker + "@h/db",
		"postgres://u:" + leakMarker + "#frag@h/db",
		"postgres://u:" + leakMarker + "@h:notaport/db",
		"garbage password:" + leakMarker + " postgres://x:" + leakMarker + "@h",
	}
	for _, in := range cases {
		got := Redact(in)
		if strings.Contains(got, leakMarker) {
			t.Errorf("Redact(%q) = %q", in, got)
		}
	}
	if got := Redact("postgres://u@h:5432/db?sslmode=require"); got != "postgres://u@h:5432/db?sslmode=require" {
		t.Errorf("URL without password changed: %q", got)
	}
	if got := Redact("host=h user=u password=x"); got != "host=h user=u password=xxxxx" {
		t.Errorf("kv: %q", got)
	}
}

// assertNothingLeaks fails when any rendering of v contains the marker.
func assertNothingLeaks(t *testing.T, what string, v any) {
	t.Helper()
	var logBuf bytes.Buffer
	for _, h := range []slog.Handler{slog.NewTextHandler(&logBuf, nil), slog.NewJSONHandler(&logBuf, nil)} {
		slog.New(h).Error("x", "v", v)
	}
	js, _ := json.Marshal(v)
	renderings := []string{
		fmt.Sprintf("%v", v), fmt.Sprintf("%+v", v), fmt.Sprintf("%#v", v), fmt.Sprintf("%s", v),
		string(js), logBuf.String(),
	}
	if err, ok := v.(error); ok {
		renderings = append(renderings, err.Error())
		for u := errors.Unwrap(err); u != nil; u = errors.Unwrap(u) {
			renderings = append(renderings, u.Error())
		}
	}
	for _, r := range renderings {
		if strings.Contains(r, leakMarker) {
			t.Errorf("%s leaks the password: %s", what, strings.ReplaceAll(r, leakMarker, "<LEAK>"))
		}
	}
}

func TestConfigPrintsNoSecret(t *testing.T) {
	cfg, err := LoadConfig(envOf(map[string]string{
		"DATABASE_URL":    "postgres://u:" + leakMarker + "@h/db?password=" + leakMarker,
		"AWS_DB_PASSWORD": leakMarker,
	}))
	if err != nil {
		t.Fatal(err)
	}
	assertNothingLeaks(t, "Config", cfg)
	assertNothingLeaks(t, "*Config", &cfg)
	type holder struct {
		cfg Config // unexported: fmt prints it by reflection
		C   Config
	}
	assertNothingLeaks(t, "struct holding Config", holder{cfg: cfg, C: cfg})
	assertNothingLeaks(t, "Secret", cfg.DBPassword)
	if cfg.DBPassword.Reveal() != leakMarker {
		t.Fatal("Reveal")
	}
}

func TestSafeErrorParseConfigError(t *testing.T) {
	inputs := []string{
		"postgres://u:" + leakMarker + "@h:badport/db",
		"host=h password = " + leakMarker + " port=notaport",
		"host=h password= '" + leakMarker + "' port=notaport",
		"host=h PASSWORD=" + leakMarker + " port=x",
		"host=h password='" + leakMarker,
		"postgres://u@h/db?password=" + leakMarker + "&pool_max_conns=x",
		"postgres://u:" + leakMarker + "@h/db?sslmode=bogus",
		"postgres://u:" + leakMarker + "@h/db?pool_max_conns=zero",
	}
	for _, in := range inputs {
		_, raw := pgxpool.ParseConfig(in)
		if raw == nil {
			t.Fatalf("pgx accepted %q", Redact(in))
		}
		err := safeError(fmt.Errorf("opening: %w", raw))
		assertNothingLeaks(t, "safeError("+Redact(in)+")", err)
		var pce *pgconn.ParseConfigError
		if errors.As(err, &pce) {
			t.Errorf("ParseConfigError still reachable")
		}
		if !errors.Is(err, ErrConfig) {
			t.Errorf("parse error should wrap ErrConfig: %v", err)
		}
	}
}

func TestSafeErrorLeavesOtherErrors(t *testing.T) {
	e := errors.New("plain")
	if safeError(e) != e || safeError(nil) != nil {
		t.Fatal("safeError must return other errors unchanged")
	}
	if !errors.Is(safeError(pgx.ErrNoRows), pgx.ErrNoRows) {
		t.Fatal("ErrNoRows")
	}
}

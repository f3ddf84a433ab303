package dbmanager

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestReadConfigDefaults(t *testing.T) {
	cfg := envConfig(t, "DATABASE_URL", "postgres://u:p@h/db")
	if cfg.HasReadReplicas() || cfg.ReadMaxLag != time.Second || DefaultConfig().ReadMaxLag != DefaultReadMaxLag {
		t.Fatalf("defaults: %+v", cfg)
	}
	targets, err := resolveReadTargets(cfg, newTarget(SourceDatabaseURL, "postgres://u:p@h/db"))
	if err != nil || targets != nil {
		t.Fatalf("no read configuration: %v, %v", targets, err)
	}
}

func TestReadConfigAccepted(t *testing.T) {
	cases := []struct {
		env  []string
		lag  time.Duration
		want []string // the replicas' addresses
	}{
		{[]string{"DATABASE_READ_URL", "postgres://r1:6432/db"}, time.Second, []string{"r1:6432"}},
		{[]string{"DATABASE_READ_URL", "postgresql+asyncpg://u:p@r1:5433,r2:5434/db?ssl=true", "DB_READ_MAX_LAG", "250ms"}, 250 * time.Millisecond, []string{"r1:5433", "r2:5434"}},
		{[]string{"DATABASE_READ_URL", "postgres://r1,r2/db", "DB_READ_MAX_LAG", "2"}, 2 * time.Second, []string{"r1:5432", "r2:5432"}},
		{[]string{"DATABASE_READ_URL", "host=r1,r2 port=5433,5434 user=ro", "DB_READ_MAX_LAG", "-1"}, 0, []string{"r1:5433", "r2:5434"}},
		{[]string{"AWS_DB_READ_HOST", "reader.cluster-ro-abc.eu-west-1.rds.amazonaws.com"}, time.Second, []string{"reader.cluster-ro-abc.eu-west-1.rds.amazonaws.com:6543"}},
		{[]string{"AWS_DB_READ_HOST", " r1 , r2:5439,[::1]:5440,::2,10.0.0.7"}, time.Second, []string{"r1:6543", "r2:5439", "[::1]:5440", "[::2]:6543", "10.0.0.7:6543"}},
		{[]string{"AWS_DB_READ_HOST", "r9", "DATABASE_READ_URL", "postgres://r1/db"}, time.Second, []string{"r1:5432"}}, // the URL wins
	}
	for _, c := range cases {
		cfg := envConfig(t, append([]string{"DATABASE_URL", "postgres://u:p@w:6543/db"}, c.env...)...)
		targets, err := resolveReadTargets(cfg, newTarget(SourceDatabaseURL, "postgres://u:p@w:6543/db"))
		if err != nil {
			t.Fatalf("%v: %v", c.env, err)
		}
		var got []string
		for _, tg := range targets {
			got = append(got, tg.Addr())
		}
		if strings.Join(got, " ") != strings.Join(c.want, " ") || cfg.ReadMaxLag != c.lag {
			t.Errorf("%v: replicas %v lag %v, want %v lag %v", c.env, got, cfg.ReadMaxLag, c.want, c.lag)
		}
	}
}

func TestReadConfigRejected(t *testing.T) {
	cases := []struct {
		env     []string
		variant string // the variable the error must name
		says    string
	}{
		{[]string{"DATABASE_READ_URL", "mysql://u:pw-" + leakMarker + "@h/db"}, "DATABASE_READ_URL", "not PostgreSQL"},
		{[]string{"DATABASE_READ_URL", "memory://"}, "DATABASE_READ_URL", "memory://"},
		{[]string{"DATABASE_READ_URL", "postgres://u:pw-" + leakMarker + "@h:99999/db"}, "DATABASE_READ_URL", "port"},
		{[]string{"DATABASE_READ_URL", "postgres://u:pw-" + leakMarker + "@/db"}, "DATABASE_READ_URL", "names no host"},
		{[]string{"DATABASE_READ_URL", "host=/var/run/postgresql password=pw-" + leakMarker}, "DATABASE_READ_URL", "Unix socket"},
		{[]string{"DATABASE_READ_URL", "host=a,b port=1,2,3"}, "DATABASE_READ_URL", "host list"},
		{[]string{"AWS_DB_READ_HOST", "r1,,r2"}, "AWS_DB_READ_HOST", "entry 2 is empty"},
		{[]string{"AWS_DB_READ_HOST", "r1:0"}, "AWS_DB_READ_HOST", "1 to 65535"},
		{[]string{"AWS_DB_READ_HOST", "r1:x"}, "AWS_DB_READ_HOST", "1 to 65535"},
		{[]string{"AWS_DB_READ_HOST", "postgres://r1"}, "AWS_DB_READ_HOST", "no scheme"},
		{[]string{"AWS_DB_READ_HOST", "u:pw-" + leakMarker + "@r1"}, "AWS_DB_READ_HOST", "no scheme, path, user"},
		{[]string{"AWS_DB_READ_HOST", "[r1]:5432"}, "AWS_DB_READ_HOST", "brackets"},
		{[]string{"AWS_DB_READ_HOST", "r1,r1:5432,r1"}, "AWS_DB_READ_HOST", "entry 3 names a replica listed before"},
		{[]string{"DB_READ_MAX_LAG", "0"}, "DB_READ_MAX_LAG", "-1 means no limit"},
		{[]string{"DB_READ_MAX_LAG", "soon"}, "DB_READ_MAX_LAG", "Go duration"},
	}
	for _, c := range cases {
		env := append([]string{"DATABASE_URL", "postgres://u:p@w/db"}, c.env...)
		m := map[string]string{}
		for i := 0; i+1 < len(env); i += 2 {
			m[env[i]] = env[i+1]
		}
		_, err := LoadConfig(envOf(m))
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Var != c.variant || !strings.Contains(err.Error(), c.says) || !errors.Is(err, ErrConfig) {
			t.Errorf("%v: got %v, want a *ConfigError naming %s saying %q", c.env, err, c.variant, c.says)
		}
		assertNothingLeaks(t, "read config error", err)
	}
	for _, env := range []map[string]string{
		{"AWS_DB_READ_HOST": "r1"},
		{"DATABASE_URL": "memory://", "DATABASE_READ_URL": "postgres://r1/db"},
	} {
		_, err := LoadConfig(envOf(env))
		var ce *ConfigError
		if !errors.As(err, &ce) || !strings.Contains(ce.Problem, "need a PostgreSQL writer") {
			t.Errorf("%v: got %v, want: read replicas need a writer", env, err)
		}
	}
}

// TestResolveReadTargets: each replica connects with the writer's
// settings and its own host and port, as pgx reads the result.
func TestResolveReadTargets(t *testing.T) {
	pw := "pw-" + leakMarker
	cases := []struct {
		name, writer string
		env          []string
		host         string
		port         uint16
		user, pass   string
		db           string
	}{
		{"URL writer, hosts only", "postgres://app:" + pw + "@w1:5432,w2:5433/gw?sslmode=disable&target_session_attrs=read-write&application_name=gw",
			[]string{"AWS_DB_READ_HOST", "r1:6000"}, "r1", 6000, "app", pw, "gw"},
		{"kv writer, default port", "host=w1,w2 port=7000 user=app password='" + pw + " x' dbname=gw sslmode=disable target_session_attrs=primary",
			[]string{"AWS_DB_READ_HOST", "r1"}, "r1", 7000, "app", pw + " x", "gw"},
		{"read URL without login", "postgres://app:" + pw + "@w1/gw?sslmode=disable",
			[]string{"DATABASE_READ_URL", "postgres://r1:6001/"}, "r1", 6001, "app", pw, "gw"},
		{"read URL with its own login", "postgres://app:" + pw + "@w1/gw?sslmode=disable",
			[]string{"DATABASE_READ_URL", "postgres://ro:ro-" + leakMarker + "@r1:6002/gwro?application_name=ro"}, "r1", 6002, "ro", "ro-" + leakMarker, "gwro"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := envConfig(t, append([]string{"DATABASE_URL", c.writer}, c.env...)...)
			writer, err := resolveTarget(t.Context(), cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			targets, err := resolveReadTargets(cfg, writer)
			if err != nil || len(targets) != 1 {
				t.Fatalf("targets %v, %v", targets, err)
			}
			tg := targets[0]
			cc, err := pgconn.ParseConfig(tg.DSN.Reveal())
			if err != nil {
				t.Fatalf("pgx cannot parse the replica's DSN: %v", safeError(err))
			}
			if cc.Host != c.host || cc.Port != c.port || cc.User != c.user || cc.Password != c.pass || cc.Database != c.db || len(cc.Fallbacks) != 0 {
				t.Errorf("pgx reads %s:%d user %s db %s fallbacks %d", cc.Host, cc.Port, cc.User, cc.Database, len(cc.Fallbacks))
			}
			if tsa := cc.RuntimeParams["target_session_attrs"]; tsa != "" || cc.ValidateConnect != nil {
				t.Errorf("the writer's target_session_attrs reached the replica (%q, validate %v)", tsa, cc.ValidateConnect != nil)
			}
			if tg.Host != c.host || tg.Port != int(c.port) || tg.User != c.user || tg.Database != c.db {
				t.Errorf("display fields %+v", tg)
			}
			assertNothingLeaks(t, "replica target", tg)
			assertNothingLeaks(t, "replica target", tg.Redacted)
		})
	}
	cfg := envConfig(t, "DATABASE_URL", "host=w hostaddr=10.0.0.1 user=u", "AWS_DB_READ_HOST", "r1")
	w, _ := resolveTarget(t.Context(), cfg, nil)
	if _, err := resolveReadTargets(cfg, w); err == nil || !strings.Contains(err.Error(), "hostaddr") {
		t.Errorf("hostaddr in the writer: %v", err)
	}
}

func TestReadConfigPrintsNoSecret(t *testing.T) {
	cfg := envConfig(t, "DATABASE_URL", "postgres://u:p@w/db", "DATABASE_READ_URL", "postgres://u:"+leakMarker+"@r1,r2/db?password="+leakMarker)
	assertNothingLeaks(t, "Config", cfg)
	assertNothingLeaks(t, "Config.LogValue", cfg.LogValue().String())
	if !strings.Contains(cfg.LogValue().String(), "read_url=") {
		t.Errorf("LogValue lacks the read URL: %s", cfg.LogValue())
	}
}

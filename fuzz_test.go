package dbmanager

import (
	"fmt"
	"strings"
	"testing"

	"github.com/gatewaykit/dbmanager/internal/connstr"
	"github.com/gatewaykit/dbmanager/internal/execmode"
	"github.com/jackc/pgx/v5/pgxpool"
)

func FuzzLoadConfig(f *testing.F) {
	f.Add("postgres://u:p@h:5432/db", "5432", "5", "true", "30", "memory", "secret", "exec")
	f.Add("postgresql+asyncpg://u:p%40ss@h/db?ssl=true", "abc", "-1", "maybe", "-1", "none", "p@ss:w/rd?#%&=", "prepared")
	f.Add("mysql://u:p@h/db", "0", "0", "yes", "1h", "sqlite", "x", "Cache_Describe")
	f.Add("host=h password='x y' port=5432", "70000", "10001", "ON", "NaN", "MEMORY", "'", " simple_protocol ")
	f.Add("memory://", "", "", "", "", "", "", "")
	f.Add("postgres://u:p@ss/word@h:99999/db", "1", "1", "0", "1e300", "none", "word", "cache statement")
	f.Add("postgres://u:p@h/db?default_query_exec_mode=exec", "5432", "5", "true", "30", "memory", "secret", "describe_exec")
	f.Add("postgres://u:p@h/db", "5432", "5", "true", "30", "memory", "secret", "cache_statement\x00")
	f.Add("postgres://u:p@h1:5432,h2:5433/db", "5432", "5", "true", "32768", "memory", "x", "")
	f.Add("host=h1,h2 port=1,2", "5432", "5", "true", "2147484", "memory", "x", "exec")
	f.Add("postgres://u:p@h/db", "5432", "5", "true", "0.001", "memory", "x", "")
	f.Fuzz(func(t *testing.T, dbURL, port, size, boolean, dur, fallback, password, mode string) {
		pw := "Qz7" + password + "7zQ"
		env := map[string]string{
			"DATABASE_URL": dbURL, "AWS_DB_PORT": port, "DB_POOL_SIZE": size, "DB_MAX_OVERFLOW": size,
			"AWS_REQUIRE_SSL": boolean, "SQL_ECHO": boolean, "DB_POOL_PRE_PING": boolean,
			"DB_POOL_RECYCLE": dur, "DB_POOL_TIMEOUT": dur, "DB_CONNECT_TIMEOUT": dur,
			"DB_TCP_KEEPALIVE": dur, "DB_TCP_USER_TIMEOUT": dur,
			"DB_FALLBACK": fallback, "AWS_DB_PASSWORD": pw, "AWS_DB_HOST": "h", "AWS_DB_USER": "u",
			"DB_QUERY_EXEC_MODE": mode,
		}
		cfg, err := LoadConfig(envOf(env))
		others := dbURL + port + size + boolean + dur + fallback + mode
		if err != nil {
			if strings.Contains(err.Error(), pw) && !strings.Contains(others, pw) {
				t.Fatalf("error echoes AWS_DB_PASSWORD: %v", err)
			}
			return
		}
		if cfg.DBPassword.Reveal() != pw {
			t.Fatal("password not kept verbatim")
		}
		if cfg.PoolSize < 1 || cfg.MaxOverflow < 0 || cfg.PoolTimeout <= 0 || cfg.ConnectTimeout <= 0 || cfg.PoolRecycle < 0 ||
			cfg.TCPKeepAlive < 0 || cfg.TCPKeepAlive > maxTCPKeepAlive || cfg.TCPUserTimeout < 0 || cfg.TCPUserTimeout > maxTCPUserTimeout {
			t.Fatalf("accepted an invalid setting: %+v", cfg)
		}
		if set := strings.TrimSpace(mode) != ""; set != cfg.explicit.QueryExecMode || set != (execmode.Name(cfg.QueryExecMode) != "") {
			t.Fatalf("DB_QUERY_EXEC_MODE=%q accepted as %v (explicit %v)", mode, cfg.QueryExecMode, cfg.explicit.QueryExecMode)
		}
		for _, s := range []string{cfg.LogValue().String(), sprintAll(cfg)} {
			if strings.Contains(s, pw) && !strings.Contains(others, pw) {
				t.Fatalf("Config print shows the password: %s", s)
			}
		}
	})
}

func FuzzParseDatabaseURL(f *testing.F) {
	for _, s := range []string{
		"postgres://u:pw@h:5432/db",
		"postgresql+asyncpg://u:pw@h/db?ssl=require",
		"postgresql+psycopg2://u:pw@h/db?sslmode=verify-full&password=pw2",
		"host=h port=5432 user=u password='a b\\' c' sslmode=require",
		"host=h PASSWORD = x",
		"mysql://u:pw@h/db",
		"postgres://u:p@ss/word@h:99999/db",
		"postgres://u:%zz@h/db",
		"postgres://[::1]:5432/db",
		"postgres://u:pw@h1:5432,h2:5433/db?target_session_attrs=read-write",
		"postgres://u:pw@h1:5432,h2/db?password=pw2",
		"postgres://u:pw@[::1]:5432,[::2]:5433/db",
		"postgres://u:p#w@h1,h2/db",
		"host=a,b port=5432,5433 password='x y' sslmode=disable",
		"postgres://u:pw@h/db?pool_max_conns=2&pool_max_conn_lifetime=1m",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		dsn, err := parseDatabaseURL(raw)
		pws := connstr.Passwords(raw)
		leaks := func(s string) string {
			for _, p := range pws {
				if len(p) >= 6 && strings.Count(raw, p) == 1 && strings.Contains(s, p) {
					return p
				}
			}
			return ""
		}
		if err != nil {
			if p := leaks(err.Error()); p != "" {
				t.Fatalf("parseDatabaseURL error echoes password %q: %v", p, err)
			}
		}
		if p := leaks(Redact(raw)); p != "" {
			t.Fatalf("Redact shows password %q: %s", p, Redact(raw))
		}
		if err == nil {
			if p := leaks(Redact(dsn)); p != "" {
				t.Fatalf("Redact of the DSN shows password %q", p)
			}
			if _, perr := pgxpool.ParseConfig(dsn); perr != nil {
				if p := leaks(safeError(perr).Error()); p != "" {
					t.Fatalf("safeError shows password %q: %v", p, safeError(perr))
				}
			}
		}
		if _, perr := pgxpool.ParseConfig(raw); perr != nil {
			if p := leaks(safeError(perr).Error()); p != "" {
				t.Fatalf("safeError(pgx parse of raw) shows password %q: %v", p, safeError(perr))
			}
		}
		_, _ = connstr.Params(raw)
	})
}

func sprintAll(v any) string {
	return strings.Join([]string{fmt.Sprintf("%v", v), fmt.Sprintf("%+v", v), fmt.Sprintf("%#v", v)}, "\n")
}

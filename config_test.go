package dbmanager

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestLoadConfigDefaults(t *testing.T) {
	cfg, err := LoadConfig(envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultConfig()
	if cfg.PoolSize != 5 || cfg.MaxOverflow != 10 || !cfg.PoolPrePing || cfg.PoolRecycle != time.Hour ||
		cfg.PoolTimeout != 30*time.Second || cfg.ConnectTimeout != 5*time.Second || cfg.Fallback != FallbackMemory ||
		cfg.DBPort != 5432 || cfg.SecretCacheTTL != time.Hour || cfg.RotationBudget != time.Minute ||
		cfg.TCPKeepAlive != 5*time.Second || cfg.TCPUserTimeout != 8*time.Second {
		t.Fatalf("defaults: got %+v", cfg)
	}
	if cfg.Source() != SourceNone || cfg.MemoryOnly || cfg.explicit != (explicitSettings{}) {
		t.Fatalf("nothing configured: got source %v", cfg.Source())
	}
	if cfg.MaxConns() != 15 || want.MaxConns() != 15 {
		t.Fatal("MaxConns")
	}
}

func TestLoadConfigEveryVariable(t *testing.T) {
	env := map[string]string{
		"DATABASE_URL":        "postgresql+asyncpg://u:pw@db.example:6543/app",
		"AWS_DB_SECRET":       "prod/db",
		"AWS_SECRET_NAME":     "ignored",
		"AWS_REGION":          "eu-west-1",
		"AWS_DB_HOST":         "rds.example",
		"AWS_DB_NAME":         "gw",
		"AWS_DB_USER":         "gwuser",
		"AWS_DB_PASSWORD":     " sp ace ",
		"AWS_DB_PORT":         "5433",
		"AWS_REQUIRE_SSL":     "TRUE",
		"AWS_SSLROOTCERT":     "/etc/rds.pem",
		"AWS_DB_IAM_AUTH":     "yes",
		"SQL_ECHO":            "1",
		"SQL_ECHO_ARGS":       "on",
		"DB_POOL_SIZE":        "7",
		"DB_MAX_OVERFLOW":     "0",
		"DB_POOL_PRE_PING":    "false",
		"DB_POOL_RECYCLE":     "-1",
		"DB_POOL_TIMEOUT":     "2.5",
		"DB_CONNECT_TIMEOUT":  "750ms",
		"DB_FALLBACK":         "NONE",
		"DB_SECRET_CACHE_TTL": "10m",
		"DB_ROTATION_BUDGET":  "90",
		"DB_TCP_KEEPALIVE":    "-1",
		"DB_TCP_USER_TIMEOUT": "2.5",
	}
	cfg, err := LoadConfig(envOf(env))
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name string
		ok   bool
	}{
		{"DATABASE_URL", cfg.DatabaseURL.Reveal() == env["DATABASE_URL"]},
		{"AWS_DB_SECRET wins over AWS_SECRET_NAME", cfg.SecretID == "prod/db"},
		{"AWS_REGION", cfg.Region == "eu-west-1"},
		{"AWS_DB_HOST", cfg.DBHost == "rds.example"},
		{"AWS_DB_NAME", cfg.DBName == "gw"},
		{"AWS_DB_USER", cfg.DBUser == "gwuser"},
		{"AWS_DB_PASSWORD kept verbatim", cfg.DBPassword.Reveal() == " sp ace "},
		{"AWS_DB_PORT", cfg.DBPort == 5433},
		{"AWS_REQUIRE_SSL", cfg.RequireSSL},
		{"AWS_SSLROOTCERT", cfg.SSLRootCert == "/etc/rds.pem"},
		{"AWS_DB_IAM_AUTH", cfg.IAMAuth && cfg.RequiresTLS()},
		{"SQL_ECHO", cfg.SQLEcho},
		{"SQL_ECHO_ARGS", cfg.SQLEchoArgs},
		{"DB_POOL_SIZE", cfg.PoolSize == 7 && cfg.explicit.PoolSize},
		{"DB_MAX_OVERFLOW", cfg.MaxOverflow == 0 && cfg.explicit.MaxOverflow},
		{"DB_POOL_PRE_PING", !cfg.PoolPrePing && cfg.explicit.PoolPrePing},
		{"DB_POOL_RECYCLE -1 = never", cfg.PoolRecycle == 0 && cfg.explicit.PoolRecycle},
		{"DB_POOL_TIMEOUT", cfg.PoolTimeout == 2500*time.Millisecond},
		{"DB_CONNECT_TIMEOUT", cfg.ConnectTimeout == 750*time.Millisecond && cfg.explicit.ConnectTimeout},
		{"DB_FALLBACK", cfg.Fallback == FallbackNone},
		{"DB_SECRET_CACHE_TTL", cfg.SecretCacheTTL == 10*time.Minute},
		{"DB_ROTATION_BUDGET", cfg.RotationBudget == 90*time.Second},
		{"DB_TCP_KEEPALIVE -1 = off", cfg.TCPKeepAlive == 0},
		{"DB_TCP_USER_TIMEOUT", cfg.TCPUserTimeout == 2500*time.Millisecond},
		{"source", cfg.Source() == SourceDatabaseURL},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("%s not loaded", c.name)
		}
	}
}

func TestLoadConfigWrongValuesNameTheVariable(t *testing.T) {
	cases := []struct{ name, value string }{
		{"AWS_DB_PORT", "abc"},
		{"AWS_DB_PORT", "0"},
		{"AWS_DB_PORT", "70000"},
		{"DB_POOL_SIZE", "-1"},
		{"DB_POOL_SIZE", "0"},
		{"DB_POOL_SIZE", "five"},
		{"DB_MAX_OVERFLOW", "-1"},
		{"DB_MAX_OVERFLOW", "1e3"},
		{"AWS_REQUIRE_SSL", "maybe"},
		{"AWS_DB_IAM_AUTH", "2"},
		{"SQL_ECHO", "verbose"},
		{"SQL_ECHO_ARGS", "x"},
		{"DB_POOL_PRE_PING", "sometimes"},
		{"DB_POOL_RECYCLE", "0"},
		{"DB_POOL_RECYCLE", "-5"},
		{"DB_POOL_RECYCLE", "soon"},
		{"DB_POOL_TIMEOUT", "-1"},
		{"DB_POOL_TIMEOUT", "NaN"},
		{"DB_CONNECT_TIMEOUT", "0s"},
		{"DB_CONNECT_TIMEOUT", "Inf"},
		{"DB_SECRET_CACHE_TTL", "forever"},
		{"DB_ROTATION_BUDGET", "-1"},
		{"DB_TCP_KEEPALIVE", "0"},
		{"DB_TCP_KEEPALIVE", "40000"},
		{"DB_TCP_KEEPALIVE", "often"},
		{"DB_TCP_USER_TIMEOUT", "0"},
		{"DB_TCP_USER_TIMEOUT", "-2"},
		{"DB_TCP_USER_TIMEOUT", "3000000"},
		{"DB_FALLBACK", "sqlite"},
		{"DATABASE_URL", "mysql://u:p@h/db"},
		{"DATABASE_URL", "sqlite:///tmp/x.db"},
		{"DATABASE_URL", "just-a-word"},
		{"DATABASE_URL", "postgres://u:p@h:port/db"},
		{"DATABASE_URL", "host=h password='unterminated"},
		{"AWS_DB_HOST", "http://rds.example/db"},
		{"AWS_DB_HOST", "rds.example:5432"},
	}
	for _, c := range cases {
		t.Run(c.name+"="+c.value, func(t *testing.T) {
			cfg, err := LoadConfig(envOf(map[string]string{c.name: c.value}))
			if err == nil {
				t.Fatalf("accepted %s=%q as %+v", c.name, c.value, cfg)
			}
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("error does not wrap ErrConfig: %v", err)
			}
			if !strings.Contains(err.Error(), c.name) {
				t.Fatalf("error does not name %s: %v", c.name, err)
			}
			if !strings.Contains(err.Error(), "want") && c.name != "DATABASE_URL" {
				t.Fatalf("error does not say what is expected: %v", err)
			}
		})
	}
}

func TestLoadConfigCollectsAllProblems(t *testing.T) {
	_, err := LoadConfig(envOf(map[string]string{"AWS_DB_PORT": "x", "DB_POOL_SIZE": "-1", "DB_FALLBACK": "?"}))
	for _, v := range []string{"AWS_DB_PORT", "DB_POOL_SIZE", "DB_FALLBACK"} {
		if err == nil || !strings.Contains(err.Error(), v) {
			t.Errorf("joined error misses %s: %v", v, err)
		}
	}
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatal("not a *ConfigError")
	}
}

func TestLoadConfigAWSEnvNeedsUserAndPassword(t *testing.T) {
	_, err := LoadConfig(envOf(map[string]string{"AWS_DB_HOST": "h"}))
	if err == nil || !strings.Contains(err.Error(), "AWS_DB_USER") || !strings.Contains(err.Error(), "AWS_DB_PASSWORD") {
		t.Fatalf("got %v", err)
	}
	cfg, err := LoadConfig(envOf(map[string]string{"AWS_DB_HOST": "h", "AWS_DB_USER": "u", "AWS_DB_IAM_AUTH": "true"}))
	if err != nil || cfg.Source() != SourceAWSEnv {
		t.Fatalf("IAM needs no password: %v", err)
	}
	// A secret needs no AWS_DB_USER.
	if _, err := LoadConfig(envOf(map[string]string{"AWS_SECRET_NAME": "s", "AWS_DB_HOST": "h"})); err != nil {
		t.Fatal(err)
	}
}

func TestLoadConfigMemoryURL(t *testing.T) {
	for _, v := range []string{"memory://", "MEMORY://", " memory:// "} {
		cfg, err := LoadConfig(envOf(map[string]string{"DATABASE_URL": v, "AWS_DB_HOST": "ignored", "AWS_DB_USER": "u", "AWS_DB_PASSWORD": "p"}))
		if err != nil || !cfg.MemoryOnly || cfg.Source() != SourceMemory {
			t.Fatalf("%q: %v %v", v, cfg.Source(), err)
		}
	}
}

func TestSourcePriority(t *testing.T) {
	full := map[string]string{
		"DATABASE_URL": "postgres://u:p@h/db", "AWS_DB_SECRET": "s",
		"AWS_DB_HOST": "h", "AWS_DB_USER": "u", "AWS_DB_PASSWORD": "p",
	}
	steps := []struct {
		drop string
		want Source
	}{
		{"", SourceDatabaseURL},
		{"DATABASE_URL", SourceSecret},
		{"AWS_DB_SECRET", SourceAWSEnv},
		{"AWS_DB_HOST", SourceNone},
	}
	for _, s := range steps {
		delete(full, s.drop)
		cfg, err := LoadConfig(envOf(full))
		if err != nil {
			t.Fatal(err)
		}
		if got := cfg.Source(); got != s.want {
			t.Fatalf("without %s: source %v, want %v", s.drop, got, s.want)
		}
	}
}

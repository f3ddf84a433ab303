package dbmanager

import (
	"encoding/json"
	"errors"
	"log/slog"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gatewaykit/dbmanager/internal/execmode"
)

func TestLoadConfigQueryExecMode(t *testing.T) {
	if cfg := envConfig(t); cfg.QueryExecMode != 0 || cfg.explicit.QueryExecMode {
		t.Fatalf("unset DB_QUERY_EXEC_MODE: %v (explicit %v), want the zero value", cfg.QueryExecMode, cfg.explicit.QueryExecMode)
	}
	for name, mode := range execmode.Names {
		for _, v := range []string{name, strings.ToUpper(name), " " + name + " "} {
			cfg := envConfig(t, "DB_QUERY_EXEC_MODE", v)
			if cfg.QueryExecMode != mode || !cfg.explicit.QueryExecMode {
				t.Errorf("DB_QUERY_EXEC_MODE=%q: %v (explicit %v), want %v", v, cfg.QueryExecMode, cfg.explicit.QueryExecMode, mode)
			}
			if got := cfg.LogValue().String(); !strings.Contains(got, "query_exec_mode="+name) {
				t.Errorf("LogValue does not show the mode: %s", got)
			}
		}
	}
	for _, v := range []string{"prepared", "cache statement", "exec;", "1", "simple"} {
		_, err := LoadConfig(envOf(map[string]string{"DB_QUERY_EXEC_MODE": v}))
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Var != "DB_QUERY_EXEC_MODE" || !errors.Is(err, ErrConfig) ||
			!strings.Contains(ce.Problem, "want cache_statement, cache_describe, describe_exec, exec or simple_protocol") {
			t.Errorf("DB_QUERY_EXEC_MODE=%q: %v, want a *ConfigError naming the variable and the values", v, err)
		}
	}
}

func TestPoolQueryExecMode(t *testing.T) {
	plain := "postgres://u:pw@db.example/app"
	inURL := plain + "?default_query_exec_mode=simple_protocol"
	cases := []struct {
		name string
		cfg  Config
		dsn  string
		want pgx.QueryExecMode
	}{
		{"pgx's default", envConfig(t), plain, pgx.QueryExecModeCacheStatement},
		{"the URL's", envConfig(t), inURL, pgx.QueryExecModeSimpleProtocol},
		{"the variable's", envConfig(t, "DB_QUERY_EXEC_MODE", "exec"), plain, pgx.QueryExecModeExec},
		{"the variable wins over the URL", envConfig(t, "DB_QUERY_EXEC_MODE", "cache_describe"), inURL, pgx.QueryExecModeCacheDescribe},
		{"a Config built in code loses to the URL", Config{QueryExecMode: pgx.QueryExecModeExec}, inURL, pgx.QueryExecModeSimpleProtocol},
		{"unless Explicit says so", Config{QueryExecMode: pgx.QueryExecModeExec, explicit: explicitSettings{QueryExecMode: true}}, inURL, pgx.QueryExecModeExec},
		{"a Config built in code without a URL value", Config{QueryExecMode: pgx.QueryExecModeDescribeExec}, plain, pgx.QueryExecModeDescribeExec},
	}
	for _, c := range cases {
		pc, err := newPoolConfig(c.cfg, targetFor(t, c.dsn))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := pc.ConnConfig.DefaultQueryExecMode; got != c.want {
			t.Errorf("%s: DefaultQueryExecMode %v, want %v", c.name, got, c.want)
		}
	}
	_, err := newPoolConfig(Config{QueryExecMode: 42}, targetFor(t, plain))
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Var != "DB_QUERY_EXEC_MODE" {
		t.Fatalf("unknown mode in a Config: %v, want a *ConfigError", err)
	}
}

// TestManagerPoolQueryExecMode: DB_QUERY_EXEC_MODE reaches the pool the
// Manager opens, and callers' SQL on it runs in that mode.
func TestManagerPoolQueryExecMode(t *testing.T) {
	m, _ := newTestManager(t, envConfig(t, "DATABASE_URL", pgtestURL(t), "DB_QUERY_EXEC_MODE", "exec"))
	if err := m.Init(t.Context()); err != nil {
		t.Fatal(err)
	}
	pool, ok := m.Pool()
	if !ok {
		t.Fatal("no pool")
	}
	if got := pool.Config().ConnConfig.DefaultQueryExecMode; got != pgx.QueryExecModeExec {
		t.Fatalf("pool's DefaultQueryExecMode %v, want exec", got)
	}
	// In exec mode pgx prepares nothing for the caller's SQL.
	conn, err := pool.Acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	const callers = "SELECT $1::int + 41"
	var n int
	if err := conn.QueryRow(t.Context(), callers, 1).Scan(&n); err != nil || n != 42 {
		t.Fatalf("caller's SQL: %d, %v", n, err)
	}
	if err := conn.QueryRow(t.Context(), "SELECT count(*) FROM pg_prepared_statements WHERE statement = $1", callers).Scan(&n); err != nil || n != 0 {
		t.Fatalf("the caller's SQL was prepared in exec mode: %d, %v", n, err)
	}
}

// TestPGStoreDirectKeepsStatementCache: on a direct connection the store
// finds no proxy and runs its statements as prepared statements, the
// fastest mode, whatever the pool's own default is.
func TestPGStoreDirectKeepsStatementCache(t *testing.T) {
	ctx := t.Context()
	s, pool := storeOnOneSession(t, pgx.QueryExecModeSimpleProtocol) // the callers' choice
	if s.proxied() || s.pg.execMode() != pgx.QueryExecModeCacheStatement {
		t.Fatalf("direct connection: proxied %v, mode %v, want cache_statement", s.proxied(), s.pg.execMode())
	}
	if _, err := s.Put(ctx, "c", "k", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'stmtcache_%'").Scan(&n); err != nil || n == 0 {
		t.Fatalf("the store's statement is not prepared on the session: %d, %v", n, err)
	}
}

// TestPGStoreLeavesStatementCacheWhenRefused: a statement refused with
// 26000 (its prepared statement is gone from the session, as behind a
// transaction pooler) is run again without prepared statements, and the
// store stays in that mode. The caller sees no error.
func TestPGStoreLeavesStatementCacheWhenRefused(t *testing.T) {
	ctx := t.Context()
	s, pool := storeOnOneSession(t, pgx.QueryExecModeCacheStatement) // one session: the one whose statements go away
	if _, err := s.Put(ctx, "c", "k", []byte(`{"v":1}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "c", "k"); err != nil { // prepares the Get
		t.Fatal(err)
	}
	// Drop the session's prepared statements behind pgx's back.
	if _, err := pool.Exec(ctx, "DEALLOCATE ALL"); err != nil {
		t.Fatal(err)
	}
	r, err := s.Get(ctx, "c", "k")
	if err != nil || string(r.Value) != `{"v":1}` {
		t.Fatalf("Get after its prepared statement vanished: %+v, %v", r, err)
	}
	if !s.proxied() || s.pg.execMode() != pgx.QueryExecModeCacheDescribe {
		t.Fatalf("after a 26000: mode %v, want cache_describe", s.pg.execMode())
	}
	if _, err := s.Put(ctx, "c", "k", []byte(`{"v":2}`), IfVersion(1)); err != nil {
		t.Fatalf("Put in the new mode: %v", err)
	}
}

// storeOnOneSession returns a PGStore on a fresh database and its pool of
// one connection, whose DefaultQueryExecMode is poolMode.
func storeOnOneSession(t *testing.T, poolMode pgx.QueryExecMode) (*PGStore, *pgxpool.Pool) {
	t.Helper()
	pc, err := pgxpool.ParseConfig(pgtestURL(t))
	if err != nil {
		t.Fatal(err)
	}
	pc.ConnConfig.DefaultQueryExecMode = poolMode
	pc.MaxConns = 1
	pool, err := pgxpool.NewWithConfig(t.Context(), pc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s, err := newPGStore(t.Context(), pool)
	if err != nil {
		t.Fatal(err)
	}
	return s, pool
}

// TestNoStatementPinsRDSProxy: everything the library sends through the
// Manager's pool, from start-up through every kind of Store call, the
// health check and a Close, is a plain statement: nothing RDS Proxy pins a
// session for (SET, SQL-level PREPARE/EXECUTE/DEALLOCATE/DISCARD,
// temporary tables, LISTEN, cursors, session advisory locks).
func TestNoStatementPinsRDSProxy(t *testing.T) {
	var logs logBuffer
	cfg := envConfig(t, "DATABASE_URL", pgtestURL(t), "SQL_ECHO", "true")
	m := New(cfg, WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
	if err := m.Init(t.Context()); err != nil {
		t.Fatal(err)
	}
	storeLoad(t.Context(), m.Store(), 2, 3).check(t, "load")
	if h := m.Health(t.Context()); h.Status != StatusHealthy {
		t.Fatalf("health %+v", h)
	}
	if err := m.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	pins := regexp.MustCompile(`(?is)^\s*(SET|RESET|PREPARE|EXECUTE|DEALLOCATE|DISCARD|LISTEN|NOTIFY|DECLARE|LOAD)\b|` +
		`\bCREATE\s+(TEMP|TEMPORARY)\b|\bpg_(try_)?advisory_lock(_shared)?\s*\(|\bset_config\s*\(`)
	for sql, pinning := range map[string]bool{
		"SET search_path = x": true, " set_config('a', 'b', false)": true, "select pg_advisory_lock(1)": true,
		"CREATE TEMP TABLE t ()": true, "LISTEN c": true, "PREPARE p AS SELECT 1": true,
		"UPDATE t SET v = 1": false, "SELECT pg_advisory_xact_lock(1)": false, "-- ping": false,
	} {
		if pins.MatchString(sql) != pinning {
			t.Fatalf("the pattern misjudges %q", sql)
		}
	}
	seen := 0
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var rec struct{ Msg, SQL string }
		if err := json.Unmarshal([]byte(line), &rec); err != nil || rec.Msg != "sql" {
			continue
		}
		seen++
		if stmt := pins.FindString(rec.SQL); stmt != "" {
			t.Errorf("the library sent %q, which pins an RDS Proxy session: %s", stmt, rec.SQL)
		}
	}
	if seen < 10 {
		t.Fatalf("only %d statements seen in the SQL_ECHO log", seen)
	}
}

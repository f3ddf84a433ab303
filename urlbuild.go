package dbmanager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/gatewaykit/dbmanager/internal/connstr"
	"github.com/gatewaykit/dbmanager/internal/credentials"
)

// Source names where the connection settings came from.
type Source string

// Connection sources, in priority order (first configured wins).
const (
	SourceDatabaseURL Source = "DATABASE_URL" // DATABASE_URL
	SourceSecret      Source = "secret"       // AWS_DB_SECRET / AWS_SECRET_NAME in Secrets Manager
	SourceAWSEnv      Source = "AWS_DB_*"     // AWS_DB_HOST, AWS_DB_USER, ...
	SourceMemory      Source = "memory"       // DATABASE_URL=memory:// (memory on purpose)
	SourceNone        Source = "none"         // nothing configured
)

// credentialsFunc returns the current credentials of the configured secret
// (the Manager's secret cache, in practice).
type credentialsFunc func(ctx context.Context) (credentials.Credentials, error)

// connTarget is a resolved connection: where it came from, the DSN to connect
// with and the redacted parts to show. Printing a connTarget never shows a
// password (DSN is a Secret).
//
// A connection string may list several hosts (postgres://u@hostA:5432,hostB:5433/db,
// or host=hostA,hostB port=5432,5433): Hosts then lists each one with its
// own port, in the order pgx tries them; Host holds the host names joined
// by commas and Port the port they share (0 when their ports differ). For a
// single host, Host and Port are that host and its port, and Hosts has one
// element.
type connTarget struct {
	Source Source
	DSN    Secret // the connection string for pgx; may carry a password
	Host   string // as shown in Info (may be "" for libpq defaults); "a,b" for several hosts
	Port   int    // 0 when not known, or when several hosts have different ports
	// Hosts lists every host as "host:port" (IPv6 in brackets, a Unix
	// socket directory as is), in the order pgx tries them.
	Hosts    []string
	Database string
	User     string
	// Redacted is Redact(DSN): safe to log and show.
	Redacted string
}

// Addr is the redacted address to show in messages: "host:port", or
// "hostA:5432,hostB:5433" for several hosts ("" if unknown).
func (t connTarget) Addr() string {
	if len(t.Hosts) > 0 {
		return connstr.JoinHosts(t.Hosts)
	}
	return connstr.DisplayHostPort(t.Host, t.Port)
}

// LogValue describes the target for slog without secrets.
func (t connTarget) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("source", string(t.Source)),
		slog.String("host", t.Host),
		slog.Int("port", t.Port),
		slog.String("hosts", connstr.JoinHosts(t.Hosts)),
		slog.String("database", t.Database),
		slog.String("user", t.User),
	)
}

// pythonSchemes are the URL schemes DATABASE_URL may use.
var pythonSchemes = map[string]bool{
	"postgres":                true,
	"postgresql":              true,
	"postgresql+asyncpg":      true,
	"postgresql+psycopg2":     true,
	"postgresql+psycopg":      true,
	"postgresql+pg8000":       true,
	"postgres+asyncpg":        true,
	"postgres+psycopg2":       true,
	"postgresql+psycopg2cffi": true,
}

// parseDatabaseURL checks a DATABASE_URL value and returns the DSN pgx
// should use. It accepts postgres:// and postgresql:// URLs, the Python
// forms postgresql+asyncpg:// and postgresql+psycopg2:// (rewritten to
// postgres://, asyncpg's ?ssl= turned into sslmode=), and libpq key=value
// strings (returned unchanged). Anything else (mysql://, sqlite:///, a bare
// word) is a *ConfigError naming DATABASE_URL. Errors never contain the
// string or any part of it.
func parseDatabaseURL(raw string) (string, error) {
	raw = strings.TrimSpace(raw)
	bad := func(problem string) (string, error) {
		return "", &ConfigError{Var: "DATABASE_URL", Problem: problem}
	}
	if raw == "" {
		return bad("empty")
	}
	i := strings.Index(raw, "://")
	if i < 0 {
		if !strings.Contains(raw, "=") {
			return bad("not a URL or key=value connection string; want postgresql://user:password@host:5432/dbname or host=... dbname=...")
		}
		pairs, err := connstr.ParseKV(raw)
		if err != nil {
			return bad("malformed key=value connection string (quote values with spaces as key='value')")
		}
		for _, p := range pairs {
			if strings.EqualFold(p.Key, "sslmode") && !validSSLMode(p.Value) {
				return bad("sslmode must be disable, allow, prefer, require, verify-ca or verify-full")
			}
		}
		return raw, nil
	}
	scheme := strings.ToLower(raw[:i])
	if !pythonSchemes[scheme] {
		if len(scheme) > 32 || strings.ContainsAny(scheme, "@:/ ") {
			return bad("unsupported URL scheme; want postgres://, postgresql://, postgresql+asyncpg:// or postgresql+psycopg2://")
		}
		return bad(fmt.Sprintf("scheme %q is not PostgreSQL; want postgres://, postgresql://, postgresql+asyncpg:// or postgresql+psycopg2://", scheme))
	}
	u, err := connstr.ParseURL("postgres" + raw[i:])
	if errors.Is(err, connstr.ErrHostList) {
		return bad("malformed host list: want host1:port1,host2:port2 (each port from 1 to 65535)")
	}
	if err != nil {
		return bad("malformed URL: " + connstr.URLProblem(err) + " (percent-encode special characters in the password, e.g. @ as %40)")
	}
	if strings.Contains(u.Path, "@") || strings.Contains(u.RawQuery, "@") {
		return bad("malformed URL: '@' after the host (percent-encode special characters in the password, e.g. @ as %40, / as %2F)")
	}
	if u.Opaque != "" {
		return bad("malformed URL: want postgresql://user:password@host:5432/dbname")
	}
	q, err := u.Query()
	if err != nil {
		return bad("malformed query string (percent-encode special characters)")
	}
	if v, ok := q["ssl"]; ok && q.Get("sslmode") == "" { // asyncpg's spelling
		mode := strings.ToLower(v[len(v)-1])
		switch mode {
		case "true", "1":
			mode = "require"
		case "false", "0":
			mode = "disable"
		}
		q.Del("ssl")
		q.Set("sslmode", mode)
	}
	if m := q.Get("sslmode"); m != "" && !validSSLMode(m) {
		return bad("sslmode must be disable, allow, prefer, require, verify-ca or verify-full")
	}
	if u.HostList == "" && connstr.UnbracketedColon(u.URL) {
		return bad("malformed URL: write an IPv6 address in brackets, e.g. [::1]:5432")
	}
	if p := u.Port(); p != "" && u.HostList == "" { // connstr.ParseURL checked a list's ports
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return bad("port is not a number from 1 to 65535")
		}
	}
	if _, err := connstr.SplitHostPortLists(u.HostPortLists()); err != nil {
		return bad("the host and port lists do not match: give one port for all hosts or one per host")
	}
	u.SetQuery(q)
	return u.String(), nil
}

func validSSLMode(m string) bool {
	switch m {
	case "disable", "allow", "prefer", "require", "verify-ca", "verify-full":
		return true
	}
	return false
}

// BuildURL returns a postgres:// URL for the given login and address, built
// with net/url so any character in the user or password (":@/?#%&=") is
// encoded correctly. An empty password leaves it out; port 0 means 5432.
// A host starting with "/" is a Unix socket directory.
func BuildURL(user, password, host string, port int, database string) string {
	if port == 0 {
		port = DefaultDBPort
	}
	u := &url.URL{Scheme: "postgres", Host: net.JoinHostPort(host, strconv.Itoa(port))}
	if strings.HasPrefix(host, "/") { // a Unix socket directory goes in the query
		u.Host = ""
		u.RawQuery = url.Values{"host": {host}, "port": {strconv.Itoa(port)}}.Encode()
	}
	if database != "" {
		u.Path = "/" + database
	}
	switch {
	case password != "":
		u.User = url.UserPassword(user, password)
	case user != "":
		u.User = url.User(user)
	}
	return u.String()
}

// resolveTarget decides where to connect, by DESIGN.md's priority:
// DATABASE_URL, then the secret (read through secret, which must not be
// nil when cfg.SecretID is set), then AWS_DB_*. A secret without a host
// (RDS-managed "rds!..." secrets carry only username and password) takes
// host, port and database from AWS_DB_*. With IAM authentication the DSN
// carries no password (the pool's BeforeConnect adds a token).
//
// Errors: a *ConfigError (wrapping ErrConfig) for a misconfiguration;
// the secret reader's error, wrapped, when the secret cannot be read. For
// SourceMemory and SourceNone it returns a Target with only Source set.
func resolveTarget(ctx context.Context, cfg Config, secret credentialsFunc) (connTarget, error) {
	switch src := cfg.Source(); src {
	case SourceMemory, SourceNone:
		return connTarget{Source: src}, nil
	case SourceDatabaseURL:
		dsn, err := parseDatabaseURL(cfg.DatabaseURL.Reveal())
		if err != nil {
			return connTarget{}, err
		}
		return newTarget(SourceDatabaseURL, dsn), nil
	case SourceSecret:
		if secret == nil {
			return connTarget{}, &ConfigError{Var: "AWS_DB_SECRET", Problem: "a secret is configured but no secret source was given"}
		}
		c, err := secret(ctx)
		if err != nil {
			return connTarget{}, fmt.Errorf("dbmanager: reading secret %q: %w", cfg.SecretID, safeError(err))
		}
		host, port, db := c.Host, c.Port, c.DBName
		if host == "" {
			host = cfg.DBHost
			if port == 0 {
				port = cfg.DBPort
			}
		}
		if port == 0 {
			port = cfg.DBPort
		}
		if db == "" {
			db = cfg.DBName
		}
		if host == "" {
			return connTarget{}, &ConfigError{Var: "AWS_DB_HOST", Problem: "the secret has no host (RDS-managed secrets carry only username and password); set AWS_DB_HOST"}
		}
		if c.Username == "" {
			return connTarget{}, &ConfigError{Var: "AWS_DB_SECRET", Problem: "the secret has no username"}
		}
		pw := c.Password
		if cfg.IAMAuth {
			pw = ""
		}
		return newTarget(SourceSecret, BuildURL(c.Username, pw, host, port, db)), nil
	case SourceAWSEnv:
		pw := cfg.DBPassword.Reveal()
		if cfg.IAMAuth {
			pw = ""
		}
		return newTarget(SourceAWSEnv, BuildURL(cfg.DBUser, pw, cfg.DBHost, cfg.DBPort, cfg.DBName)), nil
	default:
		return connTarget{}, &ConfigError{Var: "source", Problem: "unknown source " + string(src)}
	}
}

// newTarget fills the display fields of a target from its DSN.
func newTarget(src Source, dsn string) connTarget {
	t := connTarget{Source: src, DSN: NewSecret(dsn), Redacted: Redact(dsn)}
	if connstr.IsURL(dsn) {
		if u, err := connstr.ParseURL(dsn); err == nil {
			t.Database = strings.TrimPrefix(u.Path, "/")
			t.User = u.User.Username()
			if q, err := u.Query(); err == nil {
				if v := q.Get("dbname"); v != "" {
					t.Database = v
				}
				if v := q.Get("user"); v != "" {
					t.User = v
				}
			}
		}
	} else if pairs, err := connstr.ParseKV(dsn); err == nil {
		for _, p := range pairs {
			switch p.Key {
			case "dbname":
				t.Database = p.Value
			case "user":
				t.User = p.Value
			}
		}
	}
	hosts, err := connstr.Hosts(dsn)
	if err != nil || len(hosts) == 0 {
		return t
	}
	t.Hosts = connstr.HostStrings(hosts)
	names := make([]string, len(hosts))
	t.Port = hosts[0].Port
	for i, h := range hosts {
		names[i] = h.Host
		if h.Port != t.Port {
			t.Port = 0
		}
	}
	t.Host = strings.Join(names, ",")
	return t
}

// Redact returns dsn (a URL or key=value connection string) fit to show a
// person: the userinfo password, ?password= and ?sslpassword= query values
// and password = '...' pairs, in any spelling or case, are replaced by
// "xxxxx". A string it cannot parse is masked generously rather than shown.
func Redact(dsn string) string { return connstr.Redact(dsn) }

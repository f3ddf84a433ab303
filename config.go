package dbmanager

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gatewaykit/dbmanager/internal/credentials"
	"github.com/gatewaykit/dbmanager/internal/execmode"
)

// ErrConfig is wrapped by every error that reports a misconfiguration: a
// variable that is set but wrong, a DATABASE_URL that is not PostgreSQL, a
// CA file that cannot be read, a TLS mode weaker than required. The Manager
// fails on it whatever DB_FALLBACK says; only unreachability
// (ErrUnavailable) falls back to memory.
var ErrConfig = errors.New("dbmanager: invalid configuration")

// ConfigError is one misconfigured setting. Its message names the variable
// and the expected form; it never contains a secret (a value is shown only
// for variables that cannot hold one).
type ConfigError struct {
	Var     string // the environment variable (or setting), e.g. "AWS_DB_PORT"
	Problem string // what is wrong and what is expected
}

// Error names the variable and the problem.
func (e *ConfigError) Error() string {
	return "dbmanager: invalid configuration: " + e.Var + ": " + e.Problem
}

// Unwrap returns ErrConfig so errors.Is(err, ErrConfig) holds.
func (e *ConfigError) Unwrap() error { return ErrConfig }

// Fallback says what the Manager does when a configured primary cannot be
// reached at start-up.
type Fallback string

// Fallback modes (DB_FALLBACK).
const (
	FallbackMemory Fallback = "memory" // serve from memory and keep retrying the primary (default)
	FallbackNone   Fallback = "none"   // Init returns the connection error
)

// Defaults used by LoadConfig when a variable is unset.
const (
	DefaultDBPort         = 5432
	DefaultPoolSize       = 5
	DefaultMaxOverflow    = 10
	DefaultPoolPrePing    = true
	DefaultPoolRecycle    = time.Hour
	DefaultPoolTimeout    = 30 * time.Second
	DefaultConnectTimeout = 5 * time.Second
	DefaultTCPKeepAlive   = 5 * time.Second
	DefaultTCPUserTimeout = 8 * time.Second
	DefaultFallback       = FallbackMemory
)

// Limits on pool sizes accepted from the environment.
const maxPoolConns = 10000

// Limits of the kernel's socket options: TCP_KEEPIDLE in seconds,
// TCP_USER_TIMEOUT in milliseconds (a C int).
const (
	maxTCPKeepAlive   = 32767 * time.Second
	maxTCPUserTimeout = math.MaxInt32 * time.Millisecond
)

// minLeakDetectionMS is the shortest DB_LEAK_DETECTION_MS accepted (as
// HikariCP's leakDetectionThreshold): shorter ones flag ordinary work.
const minLeakDetectionMS = 2000

// maxThresholdMS bounds DB_SLOW_QUERY_MS and DB_LEAK_DETECTION_MS (a day).
const maxThresholdMS = 24 * 60 * 60 * 1000

// explicitSettings records which settings the environment set explicitly.
// A pool_* (or connect_timeout, default_query_exec_mode) parameter in
// DATABASE_URL is honoured unless the matching field here is true. A
// Config built in code has all false, so parameters in its URL win over
// its pool fields; set the flag to make the Config field win.
type explicitSettings struct {
	PoolSize       bool // DB_POOL_SIZE  (vs pool_max_conns in the URL, with MaxOverflow)
	MaxOverflow    bool // DB_MAX_OVERFLOW (vs pool_max_conns)
	PoolPrePing    bool // DB_POOL_PRE_PING (vs pool_ping_timeout)
	PoolRecycle    bool // DB_POOL_RECYCLE (vs pool_max_conn_lifetime[_jitter])
	ConnectTimeout bool // DB_CONNECT_TIMEOUT (vs connect_timeout)
	QueryExecMode  bool // DB_QUERY_EXEC_MODE (vs default_query_exec_mode)
}

// Config is everything that decides where and how the library connects.
// LoadConfig fills it from the environment; a Config built in code should
// start from DefaultConfig. Printing a Config (any fmt verb, slog, JSON)
// never shows a password: DatabaseURL and DBPassword are Secrets.
type Config struct {
	// DatabaseURL is DATABASE_URL, highest priority. It may carry a
	// password, so it is held as a Secret; show it with Redact.
	DatabaseURL Secret
	// MemoryOnly is true when DATABASE_URL=memory:// : memory chosen on
	// purpose (tests, demos). The Manager then serves from memory with
	// health "healthy" and never tries PostgreSQL.
	MemoryOnly bool

	// SecretID is AWS_DB_SECRET, else AWS_SECRET_NAME: the Secrets Manager
	// secret (name or ARN) holding the credentials, second priority.
	SecretID string
	// Region is AWS_REGION, used for Secrets Manager and IAM tokens.
	Region string

	// The AWS_DB_* variables, third priority (and the address of an
	// RDS-managed secret, which carries only username and password).
	DBHost     string // AWS_DB_HOST
	DBName     string // AWS_DB_NAME ("" means libpq's default: the user name)
	DBUser     string // AWS_DB_USER
	DBPassword Secret // AWS_DB_PASSWORD
	DBPort     int    // AWS_DB_PORT, default 5432

	// RequireSSL is AWS_REQUIRE_SSL: TLS with verify-full (chain and host
	// name). A weaker sslmode in the URL is an error.
	RequireSSL bool
	// SSLRootCert is AWS_SSLROOTCERT: which roots verified TLS trusts.
	// Empty (the default): the system roots plus the Amazon RDS roots
	// built into the library, which is all RDS, Aurora and RDS Proxy
	// need. A path: that PEM CA file and nothing else (it becomes the
	// sslrootcert). SSLRootCertSystem ("system"): the system roots only.
	SSLRootCert string
	// IAMAuth is AWS_DB_IAM_AUTH: log in with RDS IAM tokens instead of a
	// password. It implies RequireSSL.
	IAMAuth bool

	// SQLEcho is SQL_ECHO: log each statement and its duration via slog.
	SQLEcho bool
	// SQLEchoArgs is SQL_ECHO_ARGS: also log argument values (off by
	// default: they may be personal data or secrets).
	SQLEchoArgs bool

	// Pool settings, named as in the seed's SQLAlchemy engine.
	PoolSize    int           // DB_POOL_SIZE (5): connections kept open
	MaxOverflow int           // DB_MAX_OVERFLOW (10): extra connections under load
	PoolPrePing bool          // DB_POOL_PRE_PING (true): ping connections idle > 1 s before use
	PoolRecycle time.Duration // DB_POOL_RECYCLE (3600 s): maximum connection age; 0 = never
	PoolTimeout time.Duration // DB_POOL_TIMEOUT (30 s): longest wait for a free connection
	// ConnectTimeout is DB_CONNECT_TIMEOUT (5 s): the bound on one
	// connection attempt (dial, TLS, authentication) and on start-up.
	ConnectTimeout time.Duration

	// TCPKeepAlive is DB_TCP_KEEPALIVE (5 s): how long a pool connection
	// may be silent before TCP keepalive probes start (then one a
	// second), so that a peer that vanished is noticed while the
	// connection is idle. 0 turns keepalives off (-1 in the variable).
	TCPKeepAlive time.Duration
	// TCPUserTimeout is DB_TCP_USER_TIMEOUT (8 s, Linux only): how long
	// data sent on a pool connection (a statement, a keepalive probe) may
	// stay unacknowledged before the kernel closes the connection, so
	// that a statement in flight on a node that went silent fails instead
	// of waiting for its deadline. 0 leaves the kernel's default (about 15
	// minutes; -1 in the variable).
	TCPUserTimeout time.Duration
	// QueryExecMode is DB_QUERY_EXEC_MODE: the pool's DefaultQueryExecMode,
	// how pgx runs SQL on Manager.Pool() (the Store's own statements choose
	// their mode themselves). The zero value keeps the connection string's
	// default_query_exec_mode, else pgx's default, cache_statement. Behind
	// a transaction pooler (PgBouncer in transaction mode, RDS Proxy) use
	// pgx.QueryExecModeExec or pgx.QueryExecModeCacheDescribe.
	QueryExecMode pgx.QueryExecMode

	// Fallback is DB_FALLBACK (memory): what to do when the primary is
	// unreachable at start-up.
	Fallback Fallback

	// SecretCacheTTL is DB_SECRET_CACHE_TTL (1 h): how long a fetched
	// secret is reused before Secrets Manager is asked again.
	SecretCacheTTL time.Duration
	// RotationBudget is DB_ROTATION_BUDGET (60 s): how long new
	// connections keep re-fetching the secret and retrying after an
	// authentication failure (RDS's rotation window).
	RotationBudget time.Duration

	// SlowQueryThreshold is DB_SLOW_QUERY_MS (0, off): a statement that
	// takes longer is logged once at WARN (never its arguments) and
	// counted in dbmanager.slow_queries.
	SlowQueryThreshold time.Duration
	// LeakDetectionThreshold is DB_LEAK_DETECTION_MS (0, off; at least
	// 2000 ms when set): a connection taken from Manager.Pool and held
	// longer is logged at WARN with the stack that took it, and at INFO
	// when it comes back.
	LeakDetectionThreshold time.Duration
	// TraceSQL is DB_TRACE_SQL: the spans of your own SQL on Pool() also
	// record its text and argument values (off by default: they may be
	// personal data or secrets). The Store's keys and values are never
	// recorded.
	TraceSQL bool
	// ReadURL is DATABASE_READ_URL: the read replicas, one per host it
	// lists (see resolveReadTargets); it may carry a password.
	ReadURL Secret
	// ReadHosts is AWS_DB_READ_HOST split at commas: host[:port] entries,
	// one read replica each (used when ReadURL is not set).
	ReadHosts []string
	// ReadMaxLag is DB_READ_MAX_LAG (1 s): a replica further behind the
	// writer than this serves no reads. 0 means no limit (-1 in the
	// variable).
	ReadMaxLag time.Duration

	// explicit records which settings came from the environment, so that
	// pool_* parameters in DATABASE_URL are honoured otherwise.
	explicit explicitSettings
}

// DefaultConfig returns a Config with every default and nothing configured
// (no URL, secret or host): the Manager would serve from memory.
func DefaultConfig() Config {
	return Config{
		DBPort:         DefaultDBPort,
		PoolSize:       DefaultPoolSize,
		MaxOverflow:    DefaultMaxOverflow,
		PoolPrePing:    DefaultPoolPrePing,
		PoolRecycle:    DefaultPoolRecycle,
		PoolTimeout:    DefaultPoolTimeout,
		ConnectTimeout: DefaultConnectTimeout,
		TCPKeepAlive:   DefaultTCPKeepAlive,
		TCPUserTimeout: DefaultTCPUserTimeout,
		Fallback:       DefaultFallback,
		SecretCacheTTL: credentials.DefaultTTL,
		RotationBudget: credentials.DefaultRotationBudget,
		ReadMaxLag:     DefaultReadMaxLag,
	}
}

// ConfigFromEnv is LoadConfig(os.Getenv).
func ConfigFromEnv() (Config, error) { return LoadConfig(os.Getenv) }

// LoadConfig reads the configuration through getenv (os.Getenv in a
// service, a map in tests). Unset or empty variables take their defaults.
// A variable that is set but wrong is an error naming the variable and the
// expected form, never replaced by a default; all problems are reported
// together (errors.Join of *ConfigError, each wrapping ErrConfig).
func LoadConfig(getenv func(string) string) (Config, error) {
	cfg := DefaultConfig()
	var errs []error
	bad := func(name, problem string) { errs = append(errs, &ConfigError{Var: name, Problem: problem}) }
	get := func(name string) string { return strings.TrimSpace(getenv(name)) }

	if raw := get("DATABASE_URL"); raw != "" {
		if isMemoryURL(raw) {
			cfg.MemoryOnly = true
		} else if _, err := parseDatabaseURL(raw); err != nil {
			errs = append(errs, err)
		} else {
			cfg.DatabaseURL = NewSecret(raw)
		}
	}

	cfg.SecretID = get("AWS_DB_SECRET")
	if cfg.SecretID == "" {
		cfg.SecretID = get("AWS_SECRET_NAME")
	}
	cfg.Region = get("AWS_REGION")
	cfg.DBHost = get("AWS_DB_HOST")
	cfg.DBName = get("AWS_DB_NAME")
	cfg.DBUser = get("AWS_DB_USER")
	cfg.DBPassword = NewSecret(getenv("AWS_DB_PASSWORD")) // not trimmed: spaces may be part of it
	if strings.ContainsAny(cfg.DBHost, "/?#@ \t") && !strings.HasPrefix(cfg.DBHost, "/") {
		bad("AWS_DB_HOST", "want a host name or IP address (no scheme, path or port)")
	} else if strings.Contains(cfg.DBHost, ":") && net.ParseIP(cfg.DBHost) == nil {
		bad("AWS_DB_HOST", "want a host name or IP address without a port (set the port in AWS_DB_PORT)")
	}
	if v := get("AWS_DB_PORT"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 65535 {
			bad("AWS_DB_PORT", fmt.Sprintf("%q is not a port; want an integer from 1 to 65535", v))
		} else {
			cfg.DBPort = n
		}
	}

	boolVar := func(name string, dst *bool) bool {
		v := get(name)
		if v == "" {
			return false
		}
		b, ok := parseBool(v)
		if !ok {
			bad(name, fmt.Sprintf("%q is not a boolean; want true or false (also 1/0, yes/no, on/off)", v))
			return false
		}
		*dst = b
		return true
	}
	boolVar("AWS_REQUIRE_SSL", &cfg.RequireSSL)
	boolVar("AWS_DB_IAM_AUTH", &cfg.IAMAuth)
	boolVar("SQL_ECHO", &cfg.SQLEcho)
	boolVar("SQL_ECHO_ARGS", &cfg.SQLEchoArgs)
	boolVar("DB_TRACE_SQL", &cfg.TraceSQL)
	cfg.explicit.PoolPrePing = boolVar("DB_POOL_PRE_PING", &cfg.PoolPrePing)
	cfg.SSLRootCert = get("AWS_SSLROOTCERT")

	intVar := func(name string, lo int, dst *int) bool {
		v := get(name)
		if v == "" {
			return false
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < lo || n > maxPoolConns {
			bad(name, fmt.Sprintf("%q is not valid; want an integer from %d to %d", v, lo, maxPoolConns))
			return false
		}
		*dst = n
		return true
	}
	cfg.explicit.PoolSize = intVar("DB_POOL_SIZE", 1, &cfg.PoolSize)
	cfg.explicit.MaxOverflow = intVar("DB_MAX_OVERFLOW", 0, &cfg.MaxOverflow)

	durVar := func(name string, allowNever bool, dst *time.Duration) bool {
		v := get(name)
		if v == "" {
			return false
		}
		d, never, ok := parseSeconds(v)
		switch {
		case ok && never && allowNever:
			*dst = 0
			return true
		case ok && !never && d > 0:
			*dst = d
			return true
		}
		want := "want a positive number of seconds (e.g. 30 or 2.5) or a Go duration (e.g. 30s, 1m)"
		if allowNever {
			want += "; -1 means never"
		}
		bad(name, fmt.Sprintf("%q is not valid; %s", v, want))
		return false
	}
	cfg.explicit.PoolRecycle = durVar("DB_POOL_RECYCLE", true, &cfg.PoolRecycle)
	durVar("DB_POOL_TIMEOUT", false, &cfg.PoolTimeout)
	cfg.explicit.ConnectTimeout = durVar("DB_CONNECT_TIMEOUT", false, &cfg.ConnectTimeout)
	if durVar("DB_TCP_KEEPALIVE", true, &cfg.TCPKeepAlive) && cfg.TCPKeepAlive > maxTCPKeepAlive {
		bad("DB_TCP_KEEPALIVE", fmt.Sprintf("want at most %d seconds (the kernel's limit); -1 turns keepalives off", int(maxTCPKeepAlive/time.Second)))
	}
	if durVar("DB_TCP_USER_TIMEOUT", true, &cfg.TCPUserTimeout) && cfg.TCPUserTimeout > maxTCPUserTimeout {
		bad("DB_TCP_USER_TIMEOUT", fmt.Sprintf("want at most %d seconds; -1 leaves the kernel's default", int(maxTCPUserTimeout/time.Second)))
	}
	durVar("DB_SECRET_CACHE_TTL", false, &cfg.SecretCacheTTL)
	durVar("DB_ROTATION_BUDGET", false, &cfg.RotationBudget)

	msVar := func(name string, least int, dst *time.Duration) {
		v := get(name)
		if v == "" {
			return
		}
		n, err := strconv.Atoi(v)
		switch {
		case err != nil || n < 0 || n > maxThresholdMS:
			bad(name, fmt.Sprintf("%q is not valid; want a whole number of milliseconds up to %d (0 turns it off)", v, maxThresholdMS))
		case n > 0 && n < least:
			bad(name, fmt.Sprintf("%d ms is too short; want at least %d ms, or 0 to turn it off", n, least))
		default:
			*dst = time.Duration(n) * time.Millisecond
		}
	}
	msVar("DB_SLOW_QUERY_MS", 1, &cfg.SlowQueryThreshold)
	msVar("DB_LEAK_DETECTION_MS", minLeakDetectionMS, &cfg.LeakDetectionThreshold)

	if v := get("DB_QUERY_EXEC_MODE"); v != "" {
		if mode, ok := execmode.Names[strings.ToLower(v)]; ok {
			cfg.QueryExecMode, cfg.explicit.QueryExecMode = mode, true
		} else {
			bad("DB_QUERY_EXEC_MODE", fmt.Sprintf("%q is not valid; want cache_statement, cache_describe, describe_exec, exec or simple_protocol", v))
		}
	}

	if v := get("DB_FALLBACK"); v != "" {
		switch Fallback(strings.ToLower(v)) {
		case FallbackMemory:
			cfg.Fallback = FallbackMemory
		case FallbackNone:
			cfg.Fallback = FallbackNone
		default:
			bad("DB_FALLBACK", fmt.Sprintf("%q is not valid; want memory or none", v))
		}
	}

	loadReadConfig(&cfg, get("DATABASE_READ_URL"), get("AWS_DB_READ_HOST"), get("DB_READ_MAX_LAG"), bad, &errs)

	errs = append(errs, cfg.checkSources()...)
	errs = append(errs, cfg.checkReadSources()...)
	if len(errs) > 0 {
		return Config{}, errors.Join(errs...)
	}
	return cfg, nil
}

// checkSources reports settings that cannot work together for the source
// that would be used.
func (c Config) checkSources() []error {
	var errs []error
	if c.IAMAuth && c.DBUser == "" && c.Source() == SourceAWSEnv {
		errs = append(errs, &ConfigError{Var: "AWS_DB_USER", Problem: "required with AWS_DB_IAM_AUTH=true"})
	}
	if c.Source() == SourceAWSEnv {
		if c.DBUser == "" {
			errs = append(errs, &ConfigError{Var: "AWS_DB_USER", Problem: "required when AWS_DB_HOST is set"})
		}
		if !c.DBPassword.IsSet() && !c.IAMAuth {
			errs = append(errs, &ConfigError{Var: "AWS_DB_PASSWORD", Problem: "required when AWS_DB_HOST is set (or set AWS_DB_IAM_AUTH=true)"})
		}
	}
	if c.PoolSize+c.MaxOverflow > math.MaxInt32 {
		errs = append(errs, &ConfigError{Var: "DB_MAX_OVERFLOW", Problem: "pool too large"})
	}
	return errs
}

// Source reports which source the connection would come from, by the
// priority order: DATABASE_URL, then a secret, then AWS_DB_HOST. It is
// SourceMemory for DATABASE_URL=memory:// and SourceNone when nothing is
// configured.
func (c Config) Source() Source {
	switch {
	case c.MemoryOnly:
		return SourceMemory
	case c.DatabaseURL.IsSet():
		return SourceDatabaseURL
	case c.SecretID != "":
		return SourceSecret
	case c.DBHost != "":
		return SourceAWSEnv
	default:
		return SourceNone
	}
}

// RequiresTLS reports whether connections must use verified TLS
// (AWS_REQUIRE_SSL=true, or IAM authentication, which sends a token).
func (c Config) RequiresTLS() bool { return c.RequireSSL || c.IAMAuth }

// MaxConns is the largest number of open connections: PoolSize+MaxOverflow.
func (c Config) MaxConns() int { return c.PoolSize + c.MaxOverflow }

// LogValue describes the configuration for slog without secrets.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("source", string(c.Source())),
		slog.String("database_url", Redact(c.DatabaseURL.Reveal())),
		slog.String("secret_id", c.SecretID),
		slog.String("region", c.Region),
		slog.String("host", c.DBHost),
		slog.Int("port", c.DBPort),
		slog.String("database", c.DBName),
		slog.String("user", c.DBUser),
		slog.Bool("require_ssl", c.RequireSSL),
		slog.String("sslrootcert", c.SSLRootCert),
		slog.Bool("iam_auth", c.IAMAuth),
		slog.Int("pool_size", c.PoolSize),
		slog.Int("max_overflow", c.MaxOverflow),
		slog.Bool("pre_ping", c.PoolPrePing),
		slog.Duration("recycle", c.PoolRecycle),
		slog.Duration("pool_timeout", c.PoolTimeout),
		slog.Duration("connect_timeout", c.ConnectTimeout),
		slog.Duration("tcp_keepalive", c.TCPKeepAlive),
		slog.Duration("tcp_user_timeout", c.TCPUserTimeout),
		slog.String("query_exec_mode", execmode.Name(c.QueryExecMode)),
		slog.String("fallback", string(c.Fallback)),
		slog.Duration("slow_query", c.SlowQueryThreshold),
		slog.Duration("leak_detection", c.LeakDetectionThreshold),
		slog.String("read_url", Redact(c.ReadURL.Reveal())),
		slog.String("read_hosts", strings.Join(c.ReadHosts, ",")),
		slog.Duration("read_max_lag", c.ReadMaxLag),
	)
}

func isMemoryURL(raw string) bool {
	l := strings.ToLower(strings.TrimSpace(raw))
	return l == "memory://" || l == "memory:" || l == "memory"
}

func parseBool(v string) (bool, bool) {
	switch strings.ToLower(v) {
	case "true", "1", "yes", "on", "t", "y":
		return true, true
	case "false", "0", "no", "off", "f", "n":
		return false, true
	}
	return false, false
}

// parseSeconds reads a number of seconds ("30", "2.5") or a Go duration
// ("30s"). never is true for "-1" (SQLAlchemy's "no limit").
func parseSeconds(v string) (d time.Duration, never, ok bool) {
	if v == "-1" {
		return 0, true, true
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		if math.IsNaN(f) || math.IsInf(f, 0) || f <= 0 || f > float64(math.MaxInt64)/float64(time.Second) {
			return 0, false, false
		}
		return time.Duration(f * float64(time.Second)), false, true
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, false, false
	}
	return d, false, true
}

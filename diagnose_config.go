package dbmanager

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"strings"

	"github.com/gatewaykit/dbmanager/internal/connstr"
	"github.com/gatewaykit/dbmanager/internal/credentials"
	"github.com/gatewaykit/dbmanager/internal/tlstrust"
)

// The config step: which variables are set, which source wins and why,
// every problem at once; for a source other than a secret, the target and
// the pool configuration the Manager would build (TLS policy included).

// envRecord is the environment as LoadConfig read it: every variable it
// asked for, in order, and the values of those that are set.
type envRecord struct {
	getenv func(string) string
	names  []string
	set    map[string]string
	err    error // LoadConfig's error
}

func (e *envRecord) get(name string) string {
	v := e.getenv(name)
	if !slices.Contains(e.names, name) {
		e.names = append(e.names, name)
	}
	if strings.TrimSpace(v) != "" {
		e.set[name] = v
	}
	return v
}

// listing shows the variables that are set: values, except the password
// (hidden), DATABASE_URL and DATABASE_READ_URL (redacted) and variables LoadConfig rejected
// (its message says what is wrong without repeating what may be a secret).
func (e *envRecord) listing(rejected map[string]bool) string {
	var parts []string
	for _, name := range e.names {
		v, ok := e.set[name]
		if !ok {
			continue
		}
		if name == "AWS_DB_PASSWORD" {
			parts = append(parts, name+" (set, hidden)") // no "=": nothing that reads like password=value
			continue
		}
		switch {
		case rejected[name]:
			v = "(invalid, see below)"
		case name == "DATABASE_URL" || name == "DATABASE_READ_URL":
			if isMemoryURL(v) {
				v = strings.TrimSpace(v)
			} else if _, err := parseDatabaseURL(v); err == nil {
				v = Redact(strings.TrimSpace(v))
			} else {
				v = "(invalid, see below)"
			}
		default:
			v = strings.TrimSpace(v)
		}
		parts = append(parts, name+"="+v)
	}
	if len(parts) == 0 {
		return "no variable is set"
	}
	return "set: " + strings.Join(parts, ", ")
}

// configProblems returns the messages of a LoadConfig error, one per
// problem, and the variables they name.
func configProblems(err error) (msgs []string, vars map[string]bool) {
	vars = map[string]bool{}
	var walk func(error)
	walk = func(err error) {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		var ce *ConfigError
		if errors.As(err, &ce) {
			vars[ce.Var] = true
			msgs = append(msgs, ce.Var+": "+ce.Problem)
			return
		}
		msgs = append(msgs, errorText(err))
	}
	walk(err)
	return msgs, vars
}

// checkConfig is the config step. env is nil for Diagnose (a Config in
// hand), the recorded environment for DiagnoseEnv.
func (d *diagnosis) checkConfig(ctx context.Context, s *Step, env *envRecord) {
	var parts []string
	var problems []string
	if env != nil {
		rejected := map[string]bool{}
		if env.err != nil {
			problems, rejected = configProblems(env.err)
		}
		parts = append(parts, env.listing(rejected))
	} else {
		for _, err := range append(d.cfg.checkSources(), readConfigProblems(d.cfg)...) {
			msgs, _ := configProblems(err)
			problems = append(problems, msgs...)
		}
	}
	if len(problems) > 0 {
		s.fail(strings.Join(parts, "; ")+"; "+plural(len(problems), "problem")+": "+strings.Join(problems, "; "),
			"correct each variable named above as its message says (the README's Configuration table lists every variable and its form)")
		return
	}

	src := d.cfg.Source()
	parts = append(parts, "source "+string(src)+": "+d.sourceReason())
	switch src {
	case SourceNone:
		s.fail(strings.Join(parts, "; "),
			"set DATABASE_URL, or AWS_DB_SECRET (with AWS_REGION), or AWS_DB_HOST with AWS_DB_USER and AWS_DB_PASSWORD; DATABASE_URL=memory:// chooses memory on purpose")
		return
	case SourceMemory:
		s.found(strings.Join(parts, "; "))
		return
	}
	if _, _, err := trustedRoots(d.cfg); err != nil {
		s.fail(strings.Join(parts, "; ")+"; "+errorText(err), fixForConfigError(err))
		return
	}
	if src != SourceSecret {
		t, err := resolveTarget(ctx, d.cfg, nil)
		if err == nil {
			err = d.setWriter(t)
		}
		if err != nil {
			s.fail(strings.Join(parts, "; ")+"; "+errorText(err), fixForConfigError(err))
			return
		}
		parts = append(parts, "target "+t.Redacted)
	}
	parts = append(parts, d.policySummary(), d.readSummary())
	s.found(strings.Join(parts, "; "))
}

// sourceReason says why the configuration's source wins and what it
// leaves unused.
func (d *diagnosis) sourceReason() string {
	c := d.cfg
	var unused []string
	switch c.Source() {
	case SourceMemory:
		return "in-memory storage on purpose (health healthy); nothing to connect to"
	case SourceNone:
		return "neither DATABASE_URL, AWS_DB_SECRET/AWS_SECRET_NAME nor AWS_DB_HOST is set: the Manager serves from memory (health degraded) and logs No database URL configured"
	case SourceDatabaseURL:
		if c.SecretID != "" {
			unused = append(unused, "AWS_DB_SECRET/AWS_SECRET_NAME")
		}
		if c.DBHost != "" {
			unused = append(unused, "AWS_DB_HOST")
		}
		why := "DATABASE_URL is set, the first source"
		if len(unused) > 0 {
			why += " (" + strings.Join(unused, " and ") + " set too, not used)"
		}
		return why
	case SourceSecret:
		why := "a secret is named (" + strconv.Quote(c.SecretID) + ") and DATABASE_URL is not set"
		if credentials.IsRDSManagedSecret(c.SecretID) {
			why += "; an RDS-managed secret holds only username and password, so host, port and database come from AWS_DB_*"
		} else if c.DBHost != "" {
			why += "; AWS_DB_HOST fills in only what the secret lacks"
		}
		return why
	default:
		return "AWS_DB_HOST is set and neither DATABASE_URL nor a secret is"
	}
}

// policySummary describes TLS, authentication and the pool as the Manager
// would use them.
func (d *diagnosis) policySummary() string {
	c := d.cfg
	var tlsText string
	switch {
	case c.RequireSSL:
		tlsText = "TLS verify-full required (AWS_REQUIRE_SSL)"
	case c.IAMAuth:
		tlsText = "TLS verify-full required (AWS_DB_IAM_AUTH)"
	default:
		tlsText = "TLS as the connection string says (sslmode, default prefer: not verified)"
	}
	if d.writer != nil {
		if mode := dsnSSLMode(d.writer.pool.ConnString()); mode != "" && !c.RequiresTLS() {
			tlsText = "TLS sslmode=" + mode
		}
	}
	if c.RequiresTLS() || (d.writer != nil && tlstrust.Verifies(d.writer.pool.ConnConfig.TLSConfig)) {
		if _, roots, err := trustedRoots(c); err == nil {
			tlsText += ", trusting " + roots
		}
	}
	auth := "password"
	if c.IAMAuth {
		auth = "IAM token (AWS_DB_IAM_AUTH)"
	}
	return tlsText + "; login by " + auth + "; pool max " + strconv.Itoa(c.MaxConns()) +
		" (DB_POOL_SIZE " + strconv.Itoa(c.PoolSize) + " + DB_MAX_OVERFLOW " + strconv.Itoa(c.MaxOverflow) + ")" +
		"; connect timeout " + c.ConnectTimeout.String() + "; fallback " + string(c.Fallback)
}

// dsnSSLMode returns the sslmode a connection string asks for ("" if none).
func dsnSSLMode(dsn string) string {
	params, err := connstr.Params(dsn)
	if err != nil {
		return ""
	}
	return params["sslmode"]
}

// fixForConfigError turns a configuration error into its fix.
func fixForConfigError(err error) string {
	var ce *ConfigError
	if errors.As(err, &ce) {
		switch ce.Var {
		case "sslmode":
			return "remove sslmode from DATABASE_URL or set sslmode=verify-full; TLS that is required is always verified"
		case "AWS_SSLROOTCERT":
			return "point AWS_SSLROOTCERT at a readable PEM CA bundle, set it to system, or unset it (the system roots and the embedded Amazon RDS roots are trusted by default)"
		case "AWS_DB_HOST":
			return "set AWS_DB_HOST to the database's endpoint"
		case "DATABASE_READ_URL", "AWS_DB_READ_HOST":
			return "correct " + ce.Var + " as the message says (DATABASE_READ_URL: postgresql://replica1:5432,replica2:5432/dbname; AWS_DB_READ_HOST: replica1[:port],replica2[:port]; Aurora: the cluster's reader endpoint), or unset it to read from the writer"
		}
		return "correct " + ce.Var + " as the message says"
	}
	return "correct the connection settings as the message says"
}

// setWriter records the writer target, and its read replicas, with the
// pool configuration the Manager would build for each.
func (d *diagnosis) setWriter(t connTarget) error {
	w, err := d.newTarget(roleWriter, t)
	if err != nil {
		return err
	}
	d.writer = w
	return d.setReplicas(t)
}

// newTarget is target t in role with the pool configuration the Manager
// would build for it; t's passwords are scrubbed from the report.
func (d *diagnosis) newTarget(role string, t connTarget) (*diagTarget, error) {
	for _, pw := range connstr.Passwords(t.DSN.Reveal()) {
		d.addSecret(pw)
	}
	rec := &tlstrust.Recorder{}
	pc, err := newPoolConfig(d.cfg, t, withPoolLogger(slog.New(slog.DiscardHandler)), withTLSRecorder(rec))
	if err != nil {
		return nil, err
	}
	return &diagTarget{role: role, target: t, pool: pc, tls: rec}, nil
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return strconv.Itoa(n) + " " + word + "s"
}

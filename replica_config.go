package dbmanager

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gatewaykit/dbmanager/internal/connstr"
)

// Read replica configuration.
//
//	DATABASE_READ_URL   one connection string; every host it lists is one
//	                    replica (postgres://h1:5432,h2:5433/db, host=h1,h2)
//	AWS_DB_READ_HOST    h1[:port],h2[:port]: one replica each (port: the writer's)
//	DB_READ_MAX_LAG     1s: a replica further behind serves no reads; -1: no limit
//
// DATABASE_READ_URL wins over AWS_DB_READ_HOST, as DATABASE_URL wins over
// AWS_DB_HOST. A replica connects with the writer's settings (user,
// password, secret or IAM token, database, sslmode and every other
// parameter) with only its host and port changed; a user, password,
// database or parameter that DATABASE_READ_URL names itself wins over the
// writer's. The writer's target_session_attrs is never passed on: a
// replica is read-only by definition.

// DefaultReadMaxLag is DB_READ_MAX_LAG's default.
const DefaultReadMaxLag = time.Second

// loadReadConfig sets the values of DATABASE_READ_URL, AWS_DB_READ_HOST
// and DB_READ_MAX_LAG ("" when unset) in cfg, reporting problems through
// bad and errs.
func loadReadConfig(cfg *Config, readURL, readHosts, maxLag string, bad func(name, problem string), errs *[]error) {
	if raw := readURL; raw != "" {
		if err := checkReadURL(raw); err != nil {
			*errs = append(*errs, err)
		} else {
			cfg.ReadURL = NewSecret(raw)
		}
	}
	if raw := readHosts; raw != "" {
		if _, err := parseReadHosts(raw); err != nil {
			bad("AWS_DB_READ_HOST", err.Error())
		} else {
			cfg.ReadHosts = splitList(raw)
		}
	}
	if v := maxLag; v != "" {
		d, never, ok := parseSeconds(v)
		switch {
		case ok && never:
			cfg.ReadMaxLag = 0
		case ok && d > 0:
			cfg.ReadMaxLag = d
		default:
			bad("DB_READ_MAX_LAG", fmt.Sprintf("%q is not valid; want a positive number of seconds (e.g. 1 or 0.5) or a Go duration (e.g. 1s, 250ms); -1 means no limit", v))
		}
	}
}

// checkReadSources reports read replica settings that cannot work with
// the writer's source.
func (c Config) checkReadSources() []error {
	if !c.HasReadReplicas() {
		return nil
	}
	name := "DATABASE_READ_URL"
	if !c.ReadURL.IsSet() {
		name = "AWS_DB_READ_HOST"
	}
	switch c.Source() {
	case SourceMemory:
		return []error{&ConfigError{Var: name, Problem: "read replicas need a PostgreSQL writer, but DATABASE_URL=memory:// chooses memory"}}
	case SourceNone:
		return []error{&ConfigError{Var: name, Problem: "read replicas need a PostgreSQL writer: set DATABASE_URL, AWS_DB_SECRET or AWS_DB_HOST"}}
	}
	return nil
}

// HasReadReplicas reports whether read replicas are configured
// (DATABASE_READ_URL or AWS_DB_READ_HOST).
func (c Config) HasReadReplicas() bool { return c.ReadURL.IsSet() || len(c.ReadHosts) > 0 }

// checkReadURL checks a DATABASE_READ_URL value as DATABASE_URL is
// checked, with errors naming DATABASE_READ_URL, and that it names at
// least one host.
func checkReadURL(raw string) error {
	bad := func(problem string) error { return &ConfigError{Var: "DATABASE_READ_URL", Problem: problem} }
	if isMemoryURL(raw) {
		return bad("memory:// cannot be a read replica; want postgresql://host:5432/dbname (user and password default to the writer's)")
	}
	dsn, err := parseDatabaseURL(raw)
	if err != nil {
		var ce *ConfigError
		if errors.As(err, &ce) {
			return bad(ce.Problem)
		}
		return bad("cannot parse")
	}
	s, err := parseConnSettings(dsn)
	if err != nil {
		return bad("malformed host list: want host1:port1,host2:port2 (each port from 1 to 65535)")
	}
	if len(s.hosts) == 0 {
		return bad("names no host; want postgresql://host:5432/dbname or host=... (one replica per host)")
	}
	for _, h := range s.hosts {
		if h.Host == "" || strings.HasPrefix(h.Host, "/") {
			return bad("every replica needs a TCP host name or IP address (no empty host, no Unix socket)")
		}
	}
	return nil
}

// parseReadHosts parses AWS_DB_READ_HOST: a comma-separated list of
// host[:port] ([v6]:port for IPv6 with a port). Its errors say what is
// wrong without quoting the value.
func parseReadHosts(v string) ([]connstr.HostPort, error) {
	var out []connstr.HostPort
	seen := map[connstr.HostPort]bool{}
	for i, elem := range splitList(v) {
		n := i + 1
		if elem == "" {
			return nil, fmt.Errorf("entry %d is empty; want host[:port],host[:port]", n)
		}
		h, err := parseReadHost(elem)
		if err != nil {
			return nil, fmt.Errorf("entry %d: %w", n, err)
		}
		if seen[h] {
			return nil, fmt.Errorf("entry %d names a replica listed before", n)
		}
		seen[h] = true
		out = append(out, h)
	}
	return out, nil
}

func parseReadHost(elem string) (connstr.HostPort, error) {
	if strings.ContainsAny(elem, "/?#@ \t\\'\"") {
		return connstr.HostPort{}, errors.New("want a host name or IP address with an optional :port (no scheme, path, user or spaces)")
	}
	if ip := net.ParseIP(elem); ip != nil && strings.Contains(elem, ":") {
		return connstr.HostPort{Host: elem}, nil // a bare IPv6 address, no port
	}
	host, portText := elem, ""
	if strings.HasPrefix(elem, "[") || strings.Contains(elem, ":") {
		var err error
		host, portText, err = net.SplitHostPort(elem)
		if err != nil && strings.HasPrefix(elem, "[") && strings.HasSuffix(elem, "]") {
			host, err = elem[1:len(elem)-1], nil
		}
		if err != nil {
			return connstr.HostPort{}, errors.New("want host:port, or [IPv6]:port for an IPv6 address with a port")
		}
		if strings.HasPrefix(elem, "[") && net.ParseIP(host) == nil {
			return connstr.HostPort{}, errors.New("only an IPv6 address goes in brackets")
		}
	}
	if host == "" {
		return connstr.HostPort{}, errors.New("no host name")
	}
	h := connstr.HostPort{Host: host}
	if portText != "" || strings.HasSuffix(elem, ":") {
		p, err := strconv.Atoi(portText)
		if err != nil || p < 1 || p > 65535 {
			return connstr.HostPort{}, errors.New("the port is not a number from 1 to 65535")
		}
		h.Port = p
	}
	return h, nil
}

// splitList splits a comma-separated list, trimming each element.
func splitList(v string) []string {
	parts := strings.Split(v, ",")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	return parts
}

// resolveReadTargets returns one Target per configured read replica (none
// when there is no read configuration): the writer's connection string
// (writer is its resolved target, from resolveTarget) with host, port and
// target_session_attrs=any set, which pgx lets win over the writer's own
// (later key=value pairs, or URL query parameters over the host list), and
// with every user, password, database or parameter DATABASE_READ_URL names
// set the same way. Each Target's Host, Port and Hosts name its one
// replica. Errors are *ConfigError values that never quote a password.
//
// dbdoctor uses it to check each replica as the Manager connects to it.
func resolveReadTargets(cfg Config, writer connTarget) ([]connTarget, error) {
	if !cfg.HasReadReplicas() {
		return nil, nil
	}
	writerDSN := writer.DSN.Reveal()
	params, err := connstr.Params(writerDSN)
	if err != nil {
		return nil, &ConfigError{Var: "connection string", Problem: "cannot read the writer's parameters for the read replicas"}
	}
	if params["hostaddr"] != "" {
		return nil, &ConfigError{Var: "connection string", Problem: "the writer's connection string sets hostaddr, which would send the read replicas' connections to the writer; use host"}
	}
	var hosts []connstr.HostPort
	var own connSettings // what DATABASE_READ_URL names itself
	if cfg.ReadURL.IsSet() {
		dsn, err := parseDatabaseURL(cfg.ReadURL.Reveal())
		if err == nil {
			own, err = parseConnSettings(dsn)
		}
		if err != nil {
			return nil, &ConfigError{Var: "DATABASE_READ_URL", Problem: "malformed connection string"}
		}
		hosts = own.hosts
		own.drop("hostaddr", "host", "port")
	} else {
		rh, err := parseReadHosts(strings.Join(cfg.ReadHosts, ","))
		if err != nil {
			return nil, &ConfigError{Var: "AWS_DB_READ_HOST", Problem: err.Error()}
		}
		hosts = rh
	}
	out := make([]connTarget, 0, len(hosts))
	for _, h := range hosts {
		if h.Port == 0 {
			h.Port = writerPort(writer)
		}
		set := map[string]string{"host": h.Host, "port": strconv.Itoa(h.Port), "target_session_attrs": "any"}
		for _, p := range own.pairs {
			set[p.Key] = p.Value
		}
		dsn, err := connstr.SetParams(writerDSN, set)
		if err != nil {
			return nil, &ConfigError{Var: "connection string", Problem: "cannot set a read replica's host in the writer's connection string"}
		}
		t := connTarget{Source: writer.Source, DSN: NewSecret(dsn), Redacted: Redact(dsn),
			Host: h.Host, Port: h.Port, Hosts: []string{h.String()}, Database: writer.Database, User: writer.User}
		if v, ok := own.lookup("dbname"); ok {
			t.Database = v
		}
		if v, ok := own.lookup("user"); ok {
			t.User = v
		}
		out = append(out, t)
	}
	return out, nil
}

// writerPort is the port a replica without one uses: the writer's (its
// first host's), else 5432.
func writerPort(writer connTarget) int {
	if writer.Port != 0 {
		return writer.Port
	}
	if hosts, err := connstr.Hosts(writer.DSN.Reveal()); err == nil && len(hosts) > 0 && hosts[0].Port != 0 {
		return hosts[0].Port
	}
	return DefaultDBPort
}

// connSettings is what a connection string names: its hosts, each with
// its port (connstr.Hosts), and every other setting (user, password, dbname
// and the parameters), in order, as libpq keywords.
type connSettings struct {
	hosts []connstr.HostPort
	pairs []connstr.Pair // everything but host and port
}

// parseConnSettings reads a URL (postgres://, possibly several hosts) or
// a key=value string.
func parseConnSettings(dsn string) (connSettings, error) {
	var s connSettings
	hosts, err := connstr.Hosts(dsn)
	if err != nil {
		return s, err
	}
	if connstr.IsURL(dsn) {
		u, err := connstr.ParseURL(dsn)
		if err != nil {
			return s, err
		}
		if u.User != nil {
			s.pairs = append(s.pairs, connstr.Pair{Key: "user", Value: u.User.Username()})
			if pw, ok := u.User.Password(); ok {
				s.pairs = append(s.pairs, connstr.Pair{Key: "password", Value: pw})
			}
		}
		if db := strings.TrimPrefix(u.Path, "/"); db != "" {
			s.pairs = append(s.pairs, connstr.Pair{Key: "dbname", Value: db})
		}
		q, err := u.Query()
		if err != nil {
			return s, err
		}
		for _, k := range slices.Sorted(maps.Keys(lastValues(q))) {
			s.pairs = append(s.pairs, connstr.Pair{Key: k, Value: q.Get(k)})
		}
	} else if s.pairs, err = connstr.ParseKV(dsn); err != nil {
		return s, err
	}
	s.drop("host", "port")
	if len(hosts) == 1 && hosts[0] == (connstr.HostPort{}) {
		return s, nil // no host named at all
	}
	s.hosts = hosts
	return s, nil
}

// lastValues keeps the last value of each key, as pgx does.
func lastValues(q url.Values) map[string]string {
	m := make(map[string]string, len(q))
	for k, vs := range q {
		m[k] = vs[len(vs)-1]
	}
	return m
}

func (s *connSettings) lookup(key string) (string, bool) {
	v, ok := "", false
	for _, p := range s.pairs {
		if p.Key == key {
			v, ok = p.Value, true
		}
	}
	return v, ok
}

func (s *connSettings) get(key string) string { v, _ := s.lookup(key); return v }

func (s *connSettings) drop(keys ...string) {
	out := s.pairs[:0]
	for _, p := range s.pairs {
		drop := false
		for _, k := range keys {
			drop = drop || p.Key == k
		}
		if !drop {
			out = append(out, p)
		}
	}
	s.pairs = out
}

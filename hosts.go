package dbmanager

import (
	"errors"
	"net/url"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// Multi-host connection strings, as pgx (and libpq) accept them:
//
//	postgres://u:pw@hostA:5432,hostB:5433/db    URL: each host with its own port
//	host=hostA,hostB port=5432,5433 dbname=db   key=value: positional lists
//	host=hostA,hostB port=5432                  key=value: one port for all
//
// pgx tries the hosts in order. net/url cannot parse the URL form (its
// host:port check sees "5432,hostB:5433" as the port), so these helpers take
// the host list out before handing the rest of the URL to net/url, and put
// it back when printing.

var errHostList = errors.New("malformed host list")

// hostPort is one host of a connection string and the port pgx would use
// for it (0 when the port is not known).
type hostPort struct {
	host string
	port int
}

// String is "host:port" ("[::1]:5432" for IPv6; a Unix socket directory as
// is).
func (h hostPort) String() string { return displayHostPort(h.host, h.port) }

// multiHostPlaceholder stands in for a host list while net/url parses the
// rest of a URL. It is a valid host name that never resolves.
const multiHostPlaceholder = "dbmanager-host-list.invalid"

// pgURL is a postgres:// URL whose authority may list several hosts.
type pgURL struct {
	*url.URL
	// hostList is the raw host list ("h1:5432,h2:5433") when the URL names
	// several hosts; URL.Host then holds multiHostPlaceholder. It is ""
	// for a single host, which URL.Host holds as net/url parsed it.
	hostList string
}

// parsePGURL parses a URL-form connection string, accepting a
// comma-separated host list in the authority. Each host of a list must be
// a valid URL host with an optional port from 1 to 65535 (empty elements
// mean pgx's default host, as in libpq).
//
// A '#' is an ordinary character, as in libpq and pgx (which know no
// fragments): it is read as "%23".
func parsePGURL(raw string) (*pgURL, error) {
	raw = strings.ReplaceAll(raw, "#", "%23")
	i := strings.Index(raw, "://")
	if i < 0 {
		return nil, errors.New("not a URL")
	}
	rest := raw[i+3:]
	end := strings.IndexAny(rest, "/?")
	if end < 0 {
		end = len(rest)
	}
	authority := rest[:end]
	hostStart := strings.LastIndex(authority, "@") + 1
	hosts := authority[hostStart:]
	if !strings.Contains(hosts, ",") {
		u, err := url.Parse(raw)
		if err != nil {
			return nil, err
		}
		return &pgURL{URL: u}, nil
	}
	for _, h := range strings.Split(hosts, ",") {
		if _, err := parseHostElement(h); err != nil {
			return nil, err
		}
	}
	at := i + 3 + hostStart
	u, err := url.Parse(raw[:at] + multiHostPlaceholder + raw[at+len(hosts):])
	if err != nil {
		return nil, err
	}
	return &pgURL{URL: u, hostList: hosts}, nil
}

// parseHostElement checks one element of a URL host list ("h", "h:5432",
// "[::1]:5432", or "" for the default host) and returns its host and port
// (0 when it has none).
func parseHostElement(h string) (hostPort, error) {
	if h == "" {
		return hostPort{}, nil
	}
	u, err := url.Parse("postgres://" + h)
	if err != nil || u.Host != h || u.User != nil || unbracketedColon(u) {
		return hostPort{}, errHostList
	}
	hp := hostPort{host: u.Hostname()}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return hostPort{}, errHostList
		}
		hp.port = n
	}
	return hp, nil
}

// unbracketedColon reports a host with a ':' outside brackets (an IPv6
// address must be written [::1]): net/url and pgx would split it
// differently.
func unbracketedColon(u *url.URL) bool {
	return strings.Contains(u.Hostname(), ":") && !strings.HasPrefix(u.Host, "[")
}

// String prints the URL with its host list back in place.
func (u *pgURL) String() string {
	s := u.URL.String()
	if u.hostList == "" {
		return s
	}
	prefix := u.Scheme + "://"
	if u.User != nil {
		prefix += u.User.String() + "@"
	}
	if !strings.HasPrefix(s, prefix+multiHostPlaceholder) {
		return s // cannot happen: URL.String writes scheme, userinfo, host
	}
	return prefix + u.hostList + s[len(prefix)+len(multiHostPlaceholder):]
}

// hostPortLists returns the host and port lists of a URL as pgx builds
// them: positionally aligned, comma-separated, from the authority, unless
// the query names host or port (which then replaces the list).
func (u *pgURL) hostPortLists() (hosts, ports string) {
	var hb, pb strings.Builder
	elems := []string{u.Host}
	if u.hostList != "" {
		elems = strings.Split(u.hostList, ",")
	}
	for i, e := range elems {
		if i > 0 {
			hb.WriteByte(',')
			pb.WriteByte(',')
		}
		hp, _ := parseHostElement(e) // checked by parsePGURL
		if u.hostList == "" {
			hp = hostPort{host: u.Hostname()}
			hp.port, _ = strconv.Atoi(u.Port())
		}
		hb.WriteString(hp.host)
		if hp.port != 0 {
			pb.WriteString(strconv.Itoa(hp.port))
		}
	}
	hosts, ports = hb.String(), pb.String()
	q, _ := u.query()
	if v, ok := q["host"]; ok {
		hosts = v[len(v)-1]
	}
	if v, ok := q["port"]; ok {
		ports = v[len(v)-1]
	}
	return hosts, ports
}

// dsnHosts lists the hosts of a connection string (URL or key=value) in
// the order pgx tries them, each with its port: one port applies to every
// host, otherwise there is one port per host; a missing port is 5432. A
// missing host ("" for libpq's default) has port 0 unless one was given.
func dsnHosts(dsn string) ([]hostPort, error) {
	var hosts, ports string
	if isURLForm(dsn) {
		u, err := parsePGURL(dsn)
		if err != nil {
			return nil, err
		}
		hosts, ports = u.hostPortLists()
	} else {
		pairs, err := parseKV(dsn)
		if err != nil {
			return nil, err
		}
		for _, p := range pairs {
			switch p.key {
			case "host":
				hosts = p.value
			case "port":
				ports = p.value
			}
		}
	}
	return splitHostPortLists(hosts, ports)
}

// splitHostPortLists pairs a host list with its port list by pgx's rule:
// exactly one port applies to all hosts; otherwise one port per host.
func splitHostPortLists(hosts, ports string) ([]hostPort, error) {
	hs := strings.Split(hosts, ",")
	ps := strings.Split(ports, ",")
	if len(ps) > 1 && len(ps) != len(hs) {
		return nil, errHostList
	}
	out := make([]hostPort, len(hs))
	for i, h := range hs {
		p := ps[0]
		if len(ps) > 1 {
			p = ps[i]
		}
		hp := hostPort{host: strings.TrimSpace(h)}
		if p = strings.TrimSpace(p); p != "" {
			n, err := strconv.Atoi(p)
			if err != nil || n < 1 || n > 65535 {
				return nil, errHostList
			}
			hp.port = n
		} else if hp.host != "" {
			hp.port = DefaultDBPort
		}
		out[i] = hp
	}
	return out, nil
}

// configAddr shows the hosts pgx tries for c, "h1:p1,h2:p2" (a host
// listed twice in a row, for sslmode=prefer's TLS and plaintext
// attempts, once).
func configAddr(c *pgconn.Config) string {
	hosts := []string{displayHostPort(c.Host, int(c.Port))}
	for _, fb := range c.Fallbacks {
		if s := displayHostPort(fb.Host, int(fb.Port)); s != hosts[len(hosts)-1] {
			hosts = append(hosts, s)
		}
	}
	return joinHosts(hosts)
}

// joinHosts shows a host list as "h1:p1,h2:p2".
func joinHosts(hs []string) string { return strings.Join(hs, ",") }

// hostStrings returns each host as "host:port".
func hostStrings(hps []hostPort) []string {
	out := make([]string, 0, len(hps))
	for _, h := range hps {
		if s := h.String(); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// query parses the URL's query as libpq and pgx do: '&'-separated
// key=value pairs, each half percent-decoded, and '+' an ordinary
// character (net/url's ParseQuery would read it as a space).
func (u *pgURL) query() (url.Values, error) {
	q := url.Values{}
	for pair := range strings.SplitSeq(u.RawQuery, "&") {
		if pair == "" {
			continue
		}
		rawKey, rawValue, _ := strings.Cut(pair, "=")
		k, err := url.PathUnescape(rawKey)
		if err != nil {
			return nil, err
		}
		v, err := url.PathUnescape(rawValue)
		if err != nil {
			return nil, err
		}
		q[k] = append(q[k], v)
	}
	return q, nil
}

// setQuery replaces the URL's query with q, encoded so that pgx reads
// back exactly q (spaces as %20, never '+').
func (u *pgURL) setQuery(q url.Values) {
	u.RawQuery = strings.ReplaceAll(q.Encode(), "+", "%20")
}

package connstr

import (
	"errors"
	"net"
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

// ErrHostList reports a host list that pgx would not read as written: an
// element that is not a host with an optional port from 1 to 65535, or a
// port list that neither has one port nor one port per host.
var ErrHostList = errors.New("malformed host list")

// HostPort is one host of a connection string and the port pgx would use
// for it (0 when the port is not known).
type HostPort struct {
	Host string
	Port int
}

// String is "host:port" ("[::1]:5432" for IPv6; a Unix socket directory as
// is).
func (h HostPort) String() string { return DisplayHostPort(h.Host, h.Port) }

// defaultPort is the port pgx uses for a host given without one.
const defaultPort = 5432

// DisplayHostPort shows one host as "host:port" ("[::1]:5432" for IPv6), a
// Unix socket directory as is, a host without a port (0) as the bare host,
// and no host ("") as "".
func DisplayHostPort(host string, port int) string {
	if host == "" {
		return ""
	}
	if strings.HasPrefix(host, "/") {
		return host
	}
	if port == 0 {
		return host
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// multiHostPlaceholder stands in for a host list while net/url parses the
// rest of a URL. It is a valid host name that never resolves.
const multiHostPlaceholder = "dbmanager-host-list.invalid"

// URL is a postgres:// URL whose authority may list several hosts.
type URL struct {
	*url.URL
	// HostList is the raw host list ("h1:5432,h2:5433") when the URL names
	// several hosts; URL.Host then holds multiHostPlaceholder. It is ""
	// for a single host, which URL.Host holds as net/url parsed it.
	HostList string
}

// ParseURL parses a URL-form connection string, accepting a
// comma-separated host list in the authority. Each host of a list must be
// a valid URL host with an optional port from 1 to 65535 (empty elements
// mean pgx's default host, as in libpq).
//
// A '#' is an ordinary character, as in libpq and pgx (which know no
// fragments): it is read as "%23".
func ParseURL(raw string) (*URL, error) {
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
		return &URL{URL: u}, nil
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
	return &URL{URL: u, HostList: hosts}, nil
}

// parseHostElement checks one element of a URL host list ("h", "h:5432",
// "[::1]:5432", or "" for the default host) and returns its host and port
// (0 when it has none).
func parseHostElement(h string) (HostPort, error) {
	if h == "" {
		return HostPort{}, nil
	}
	u, err := url.Parse("postgres://" + h)
	if err != nil || u.Host != h || u.User != nil || UnbracketedColon(u) {
		return HostPort{}, ErrHostList
	}
	hp := HostPort{Host: u.Hostname()}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return HostPort{}, ErrHostList
		}
		hp.Port = n
	}
	return hp, nil
}

// UnbracketedColon reports a host with a ':' outside brackets (an IPv6
// address must be written [::1]): net/url and pgx would split it
// differently.
func UnbracketedColon(u *url.URL) bool {
	return strings.Contains(u.Hostname(), ":") && !strings.HasPrefix(u.Host, "[")
}

// String prints the URL with its host list back in place.
func (u *URL) String() string {
	s := u.URL.String()
	if u.HostList == "" {
		return s
	}
	prefix := u.Scheme + "://"
	if u.User != nil {
		prefix += u.User.String() + "@"
	}
	if !strings.HasPrefix(s, prefix+multiHostPlaceholder) {
		return s // cannot happen: URL.String writes scheme, userinfo, host
	}
	return prefix + u.HostList + s[len(prefix)+len(multiHostPlaceholder):]
}

// HostPortLists returns the host and port lists of a URL as pgx builds
// them: positionally aligned, comma-separated, from the authority, unless
// the query names host or port (which then replaces the list).
func (u *URL) HostPortLists() (hosts, ports string) {
	var hb, pb strings.Builder
	elems := []string{u.Host}
	if u.HostList != "" {
		elems = strings.Split(u.HostList, ",")
	}
	for i, e := range elems {
		if i > 0 {
			hb.WriteByte(',')
			pb.WriteByte(',')
		}
		hp, _ := parseHostElement(e) // checked by ParseURL
		if u.HostList == "" {
			hp = HostPort{Host: u.Hostname()}
			hp.Port, _ = strconv.Atoi(u.Port())
		}
		hb.WriteString(hp.Host)
		if hp.Port != 0 {
			pb.WriteString(strconv.Itoa(hp.Port))
		}
	}
	hosts, ports = hb.String(), pb.String()
	q, _ := u.Query()
	if v, ok := q["host"]; ok {
		hosts = v[len(v)-1]
	}
	if v, ok := q["port"]; ok {
		ports = v[len(v)-1]
	}
	return hosts, ports
}

// Hosts lists the hosts of a connection string (URL or key=value) in
// the order pgx tries them, each with its port: one port applies to every
// host, otherwise there is one port per host; a missing port is 5432. A
// missing host ("" for libpq's default) has port 0 unless one was given.
func Hosts(dsn string) ([]HostPort, error) {
	var hosts, ports string
	if IsURL(dsn) {
		u, err := ParseURL(dsn)
		if err != nil {
			return nil, err
		}
		hosts, ports = u.HostPortLists()
	} else {
		pairs, err := ParseKV(dsn)
		if err != nil {
			return nil, err
		}
		for _, p := range pairs {
			switch p.Key {
			case "host":
				hosts = p.Value
			case "port":
				ports = p.Value
			}
		}
	}
	return SplitHostPortLists(hosts, ports)
}

// SplitHostPortLists pairs a host list with its port list by pgx's rule:
// exactly one port applies to all hosts; otherwise one port per host.
func SplitHostPortLists(hosts, ports string) ([]HostPort, error) {
	hs := strings.Split(hosts, ",")
	ps := strings.Split(ports, ",")
	if len(ps) > 1 && len(ps) != len(hs) {
		return nil, ErrHostList
	}
	out := make([]HostPort, len(hs))
	for i, h := range hs {
		p := ps[0]
		if len(ps) > 1 {
			p = ps[i]
		}
		hp := HostPort{Host: strings.TrimSpace(h)}
		if p = strings.TrimSpace(p); p != "" {
			n, err := strconv.Atoi(p)
			if err != nil || n < 1 || n > 65535 {
				return nil, ErrHostList
			}
			hp.Port = n
		} else if hp.Host != "" {
			hp.Port = defaultPort
		}
		out[i] = hp
	}
	return out, nil
}

// ConfigAddr shows the hosts pgx tries for c, "h1:p1,h2:p2" (a host
// listed twice in a row, for sslmode=prefer's TLS and plaintext
// attempts, once).
func ConfigAddr(c *pgconn.Config) string {
	hosts := []string{DisplayHostPort(c.Host, int(c.Port))}
	for _, fb := range c.Fallbacks {
		if s := DisplayHostPort(fb.Host, int(fb.Port)); s != hosts[len(hosts)-1] {
			hosts = append(hosts, s)
		}
	}
	return JoinHosts(hosts)
}

// JoinHosts shows a host list as "h1:p1,h2:p2".
func JoinHosts(hs []string) string { return strings.Join(hs, ",") }

// HostStrings returns each host as "host:port".
func HostStrings(hps []HostPort) []string {
	out := make([]string, 0, len(hps))
	for _, h := range hps {
		if s := h.String(); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// Query parses the URL's query as libpq and pgx do: '&'-separated
// key=value pairs, each half percent-decoded, and '+' an ordinary
// character (net/url's ParseQuery would read it as a space).
func (u *URL) Query() (url.Values, error) {
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

// SetQuery replaces the URL's query with q, encoded so that pgx reads
// back exactly q (spaces as %20, never '+').
func (u *URL) SetQuery(q url.Values) {
	u.RawQuery = strings.ReplaceAll(q.Encode(), "+", "%20")
}

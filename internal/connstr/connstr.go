// Package connstr reads and writes PostgreSQL connection strings in both
// their shapes (a postgres:// URL, possibly listing several hosts, and
// libpq's key=value list) without echoing what they hold, and redacts the
// passwords they carry from anything shown to a person.
package connstr

import (
	"errors"
	"net/url"
	"strings"
)

// The two shapes of a PostgreSQL connection string: a URL and libpq's
// key=value list. These helpers read them without echoing what they read.

var errDSNSyntax = errors.New("malformed key=value connection string")

// IsURL reports whether dsn is URL-shaped (has a scheme).
func IsURL(dsn string) bool { return strings.Contains(dsn, "://") }

// Pair is one key=value setting, its value unquoted.
type Pair struct {
	Key, Value string
}

// ParseKV splits a libpq key=value string: keys separated from values by
// '=' (spaces allowed around it), values either single-quoted (with
// backslash escapes) or bare up to the next space (backslash escapes too).
func ParseKV(s string) ([]Pair, error) {
	var out []Pair
	i := 0
	skipSpace := func() {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
	}
	for {
		skipSpace()
		if i >= len(s) {
			return out, nil
		}
		start := i
		for i < len(s) && s[i] != '=' && !isSpace(s[i]) {
			i++
		}
		key := s[start:i]
		skipSpace()
		if key == "" || i >= len(s) || s[i] != '=' {
			return nil, errDSNSyntax
		}
		i++ // '='
		skipSpace()
		var b strings.Builder
		if i < len(s) && s[i] == '\'' {
			i++
			closed := false
			for i < len(s) {
				c := s[i]
				if c == '\\' && i+1 < len(s) {
					b.WriteByte(s[i+1])
					i += 2
					continue
				}
				if c == '\'' {
					closed = true
					i++
					break
				}
				b.WriteByte(c)
				i++
			}
			if !closed {
				return nil, errDSNSyntax
			}
		} else {
			for i < len(s) && !isSpace(s[i]) {
				if s[i] == '\\' { // a trailing backslash is dropped, as in libpq
					if i+1 < len(s) {
						b.WriteByte(s[i+1])
					}
					i += 2
					continue
				}
				b.WriteByte(s[i])
				i++
			}
		}
		out = append(out, Pair{Key: key, Value: b.String()})
	}
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

// QuoteKV quotes a value for a key=value string.
func QuoteKV(v string) string {
	r := strings.NewReplacer(`\`, `\\`, `'`, `\'`)
	return "'" + r.Replace(v) + "'"
}

// Params returns the settings of a connection string that are given as
// parameters: the query of a URL or every pair of a key=value string. Later
// values win, as in pgx. Keys are as written.
func Params(dsn string) (map[string]string, error) {
	params := map[string]string{}
	if IsURL(dsn) {
		u, err := ParseURL(dsn)
		if err != nil {
			return nil, err
		}
		q, err := u.Query()
		if err != nil {
			return nil, err
		}
		for k, vs := range q {
			if len(vs) > 0 {
				params[k] = vs[len(vs)-1]
			}
		}
		return params, nil
	}
	pairs, err := ParseKV(dsn)
	if err != nil {
		return nil, err
	}
	for _, p := range pairs {
		params[p.Key] = p.Value
	}
	return params, nil
}

// SetParams returns dsn with the given parameters set (replacing any
// existing value).
func SetParams(dsn string, set map[string]string) (string, error) {
	if len(set) == 0 {
		return dsn, nil
	}
	if IsURL(dsn) {
		u, err := ParseURL(dsn)
		if err != nil {
			return "", err
		}
		q, err := u.Query()
		if err != nil {
			return "", err
		}
		for k, v := range set {
			q.Set(k, v)
		}
		u.SetQuery(q)
		return u.String(), nil
	}
	if _, err := ParseKV(dsn); err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString(strings.TrimSpace(dsn))
	for _, k := range sortedKeys(set) {
		b.WriteString(" " + k + "=" + QuoteKV(set[k]))
	}
	return strings.TrimSpace(b.String()), nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}

// Passwords returns the passwords a connection string carries (the URL
// userinfo password and password/sslpassword parameters in any case), best
// effort, for scrubbing them out of messages.
func Passwords(dsn string) []string {
	var out []string
	if IsURL(dsn) {
		if u, err := ParseURL(dsn); err == nil && !strings.Contains(u.Path+u.RawQuery+u.Fragment, "@") {
			if pw, ok := u.User.Password(); ok {
				out = append(out, pw)
			}
			if q, err := u.Query(); err == nil {
				for k, vs := range q {
					if isPasswordKey(k) {
						out = append(out, vs...)
					}
				}
			}
		} else {
			// Unparseable: take everything between "://" and the last '@'
			// as userinfo, and its part after the first ':' as password.
			rest := dsn[strings.Index(dsn, "://")+3:]
			if at := strings.LastIndex(rest, "@"); at >= 0 {
				ui := rest[:at]
				if c := strings.Index(ui, ":"); c >= 0 {
					out = append(out, ui[c+1:])
					if d, err := url.PathUnescape(ui[c+1:]); err == nil {
						out = append(out, d)
					}
				}
			}
		}
		return out
	}
	if pairs, err := ParseKV(dsn); err == nil {
		for _, p := range pairs {
			if isPasswordKey(p.Key) {
				out = append(out, p.Value)
			}
		}
	}
	return out
}

func isPasswordKey(k string) bool {
	k = strings.ToLower(strings.TrimSpace(k))
	return k == "password" || k == "sslpassword"
}

// URLProblem names what net/url disliked without quoting the input.
func URLProblem(err error) string {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "invalid port"):
		return "invalid port"
	case strings.Contains(msg, "invalid URL escape"):
		return "invalid percent-escape"
	case strings.Contains(msg, "invalid userinfo"):
		return "invalid user:password part"
	case strings.Contains(msg, "invalid character") && strings.Contains(msg, "host"):
		return "invalid character in host name"
	case strings.Contains(msg, "control character"):
		return "control character in URL"
	}
	return "cannot parse"
}

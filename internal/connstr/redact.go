package connstr

import (
	"net/url"
	"regexp"
	"strings"
)

const redactedMark = "xxxxx"

// minScrubbedSecret is the shortest secret Scrub looks for in free text.
const minScrubbedSecret = 4

var (
	// password=... in key=value strings and queries, any case, with or
	// without spaces around '=', quoted or bare.
	kvPasswordRe = regexp.MustCompile(`(?i)((?:ssl)?password)(\s*[=:]\s*)('(?:[^'\\]|\\.)*'?|[^\s&'"]*)`)
	// scheme://user:password@ in free text.
	userinfoRe = regexp.MustCompile(`(?i)([a-z][a-z0-9+.\-]*://[^\s:/@]*:)[^\s]*@`)
)

// Redact returns dsn (a URL or key=value connection string) fit to show a
// person: the userinfo password, ?password= and ?sslpassword= query values
// and password = '...' pairs, in any spelling or case, are replaced by
// "xxxxx". A string it cannot parse is masked generously rather than shown.
func Redact(dsn string) string {
	if dsn == "" {
		return ""
	}
	if IsURL(dsn) {
		return redactURL(dsn)
	}
	if pairs, err := ParseKV(dsn); err == nil {
		var b strings.Builder
		for i, p := range pairs {
			if i > 0 {
				b.WriteByte(' ')
			}
			v := p.Value
			if isPasswordKey(p.Key) {
				v = redactedMark
			}
			b.WriteString(p.Key + "=" + quoteKVIfNeeded(v))
		}
		return b.String()
	}
	return Scrub(dsn, nil)
}

func quoteKVIfNeeded(v string) string {
	if v == "" || strings.ContainsAny(v, " \t\n\r\f\v'\\") {
		return QuoteKV(v)
	}
	return v
}

func redactURL(dsn string) string {
	u, err := ParseURL(dsn)
	if err != nil || strings.Contains(u.Path, "@") || strings.Contains(u.RawQuery, "@") || strings.Contains(u.Fragment, "@") {
		// Mask the whole authority up to the last '@' and any password
		// parameter.
		i := strings.Index(dsn, "://") + 3
		rest := dsn[i:]
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			rest = redactedMark + rest[at:]
		}
		return kvPasswordRe.ReplaceAllString(dsn[:i]+rest, "${1}${2}"+redactedMark)
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), redactedMark)
	}
	if u.RawQuery != "" {
		q, err := u.Query()
		if err != nil {
			u.RawQuery = kvPasswordRe.ReplaceAllString(u.RawQuery, "${1}${2}"+redactedMark)
		} else {
			changed := false
			for k := range q {
				if isPasswordKey(k) {
					q[k] = []string{redactedMark}
					changed = true
				}
			}
			if changed {
				u.SetQuery(q)
			}
		}
	}
	if u.Fragment != "" {
		u.Fragment = redactedMark
	}
	return u.String()
}

// Scrub masks secrets in free text (an error message): each given
// secret in its plain and percent-encoded forms, then every password=...
// and scheme://user:password@ spelling. Secrets shorter than
// minScrubbedSecret are left to the spelling rules: replacing every "p" of
// a message would garble it and hide nothing.
func Scrub(s string, secrets []string) string {
	for _, sec := range secrets {
		if len(sec) < minScrubbedSecret {
			continue
		}
		for _, form := range []string{sec, url.QueryEscape(sec), url.PathEscape(sec), url.UserPassword("u", sec).String()[2:]} {
			if form != "" {
				s = strings.ReplaceAll(s, form, redactedMark)
			}
		}
	}
	s = userinfoRe.ReplaceAllString(s, "${1}"+redactedMark+"@")
	return kvPasswordRe.ReplaceAllString(s, "${1}${2}"+redactedMark)
}

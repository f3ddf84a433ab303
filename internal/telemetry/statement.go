package telemetry

import (
	"strings"
	"sync"
	"sync/atomic"
	"unicode"
	"unicode/utf8"
)

// Statement is the static summary of one SQL statement: what names its
// span and labels its metrics. It never holds a literal or an argument
// of the statement, only its first keyword and the table it works on.
type Statement struct {
	Operation string // first keyword, upper case ("SELECT"); "" if none
	Table     string // the table after FROM / INTO / UPDATE / TABLE, unquoted ("dbmanager.records"); "" if unknown
	Summary   string // "SELECT dbmanager.records", or "SELECT", or "SQL"
}

// maxTableLen bounds a table name taken from a statement: a schema and a
// table, each at most PostgreSQL's 63 bytes.
const maxTableLen = 127

// Summarize returns the summary of sql. It reads at most the first few
// tokens: the first keyword, and for SELECT, INSERT, UPDATE, DELETE and
// COPY the first table name, accepted only if it is plain or quoted
// identifiers joined by dots (anything else, such as a subquery, a
// function or a literal, leaves Table empty).
func Summarize(sql string) Statement {
	word, rest := keyword(strings.TrimLeft(skipSpaceAndComments(sql), "( \t\r\n"))
	if word == "" {
		return Statement{Summary: "SQL"}
	}
	st := Statement{Operation: word, Summary: word}
	var after string // the keyword the table follows
	switch word {
	case "SELECT", "DELETE":
		after = "FROM"
	case "INSERT":
		after = "INTO"
	case "UPDATE", "COPY", "TRUNCATE":
		after = ""
	default:
		return st
	}
	if after != "" {
		rest = findKeyword(rest, after)
		if rest == "" {
			return st
		}
	}
	rest = skipSpaceAndComments(rest)
	if word == "UPDATE" || word == "TRUNCATE" || word == "DELETE" {
		// UPDATE ONLY t, TRUNCATE TABLE t, DELETE FROM ONLY t
		for _, noise := range []string{"ONLY", "TABLE"} {
			if w, r := keyword(rest); w == noise {
				rest = skipSpaceAndComments(r)
			}
		}
	}
	if table, ok := identifierChain(rest); ok {
		st.Table = table
		st.Summary = word + " " + table
	}
	return st
}

// skipSpaceAndComments skips white space, -- comments and /* */ comments.
func skipSpaceAndComments(s string) string {
	for {
		s = strings.TrimLeft(s, " \t\r\n\f")
		switch {
		case strings.HasPrefix(s, "--"):
			i := strings.IndexByte(s, '\n')
			if i < 0 {
				return ""
			}
			s = s[i+1:]
		case strings.HasPrefix(s, "/*"):
			i := strings.Index(s, "*/")
			if i < 0 {
				return ""
			}
			s = s[i+2:]
		default:
			return s
		}
	}
}

// keyword returns the leading run of ASCII letters, upper-cased, and what
// follows it.
func keyword(s string) (string, string) {
	i := 0
	for i < len(s) && isLetter(s[i]) {
		i++
	}
	if i == 0 || i > 32 {
		return "", s
	}
	return strings.ToUpper(s[:i]), s[i:]
}

// findKeyword returns what follows the first occurrence of kw as a whole
// word outside quotes, or "" if there is none. It stops at the first
// quote or dollar quote it does not understand, so a literal is never
// scanned past.
func findKeyword(s, kw string) string {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '$' && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9':
			// a parameter ($1): not a quote
		case c == '\'' || c == '$' || c == ';':
			return "" // a literal, a dollar quote or another statement: give up
		case c == '"':
			j := strings.IndexByte(s[i+1:], '"')
			if j < 0 {
				return ""
			}
			i += j + 1
		case isLetter(c) && (i == 0 || !isIdentChar(s[i-1])):
			j := i
			for j < len(s) && isIdentChar(s[j]) {
				j++
			}
			if strings.EqualFold(s[i:j], kw) {
				return s[j:]
			}
			i = j - 1
		}
	}
	return ""
}

// identifierChain reads ident(.ident)* where each ident is plain or
// double-quoted, and returns it unquoted.
func identifierChain(s string) (string, bool) {
	var b strings.Builder
	for {
		var part string
		if strings.HasPrefix(s, `"`) {
			j := strings.IndexByte(s[1:], '"')
			if j < 0 || strings.HasPrefix(s[j+2:], `"`) { // unterminated, or an escaped quote: keep it simple
				return "", false
			}
			part, s = s[1:j+1], s[j+2:]
		} else {
			j := 0
			for j < len(s) && isIdentChar(s[j]) {
				j++
			}
			if j == 0 || !isLetter(s[0]) && s[0] != '_' {
				return "", false
			}
			part, s = strings.ToLower(s[:j]), s[j:]
		}
		if part == "" || !printable(part) {
			return "", false
		}
		b.WriteString(part)
		if b.Len() > maxTableLen {
			return "", false
		}
		if !strings.HasPrefix(s, ".") {
			break
		}
		b.WriteByte('.')
		s = s[1:]
	}
	if s != "" && isIdentChar(s[0]) || strings.HasPrefix(strings.TrimLeft(s, " \t\r\n"), "(") {
		return "", false // not the end of a name, or a function call
	}
	return b.String(), true
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

func isIdentChar(c byte) bool { return isLetter(c) || c >= '0' && c <= '9' || c == '_' || c == '$' }

// printable reports whether s is valid UTF-8 without control characters.
func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	return strings.IndexFunc(s, unicode.IsControl) < 0
}

// StatementCache remembers the summaries of statements seen before, so
// the statements a service runs again and again are summarised once. It
// holds at most maxCached statements; others are summarised on every
// call. Safe for concurrent use.
type StatementCache[T any] struct {
	m     sync.Map // sql -> *T
	n     atomic.Int64
	build func(Statement) *T
}

const maxCached = 512

// NewStatementCache returns a cache whose entries build makes from a
// statement's summary (attribute sets, say).
func NewStatementCache[T any](build func(Statement) *T) *StatementCache[T] {
	return &StatementCache[T]{build: build}
}

// Get returns the entry for sql.
func (c *StatementCache[T]) Get(sql string) *T {
	if v, ok := c.m.Load(sql); ok {
		return v.(*T)
	}
	e := c.build(Summarize(sql))
	if c.n.Load() < maxCached {
		if v, loaded := c.m.LoadOrStore(sql, e); loaded {
			return v.(*T)
		}
		c.n.Add(1)
	}
	return e
}

package pgsql

import (
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestListQueryShapes pins which statement serves which page and that the
// key range it gets is exact.
func TestListQueryShapes(t *testing.T) {
	const mode = pgx.QueryExecModeExec
	q := NewStatements("s")
	for _, c := range []struct {
		prefix, after string
		sql           string
		args          []any
	}{
		{"", "", q.ListAfter, []any{"c", "", 101}},
		{"", "k", q.ListAfter, []any{"c", "k", 101}},
		{"ab", "", q.ListRange, []any{"c", "ab", "ac", 101}},
		{"ab", "a", q.ListRange, []any{"c", "ab", "ac", 101}},
		{"ab", "ab", q.ListRangeAfter, []any{"c", "ab", "ac", 101}},
		{"ab", "abz", q.ListRangeAfter, []any{"c", "abz", "ac", 101}},
		{"%_\\", "", q.ListRange, []any{"c", "%_\\", "%_]", 101}},
		{"\U0010FFFF", "", q.ListFrom, []any{"c", "\U0010FFFF", 101}},
		{"\U0010FFFF", "\U0010FFFFx", q.ListAfter, []any{"c", "\U0010FFFFx", 101}},
	} {
		sql, args := q.ListQuery(mode, "c", c.prefix, c.after, 101)
		if args[0] != mode {
			t.Errorf("ListQuery(%q, %q): the exec mode is not the first argument: %v", c.prefix, c.after, args)
		}
		args = args[1:]
		if sql != c.sql || fmt.Sprint(args) != fmt.Sprint(c.args) {
			t.Errorf("ListQuery(%q, %q) = %s %q; want %s %q", c.prefix, c.after, sql, args, c.sql, c.args)
		}
	}
	// Each is the collection and one key range, nothing more.
	for sql, ands := range map[string]int{q.ListAfter: 1, q.ListFrom: 1, q.ListRange: 2, q.ListRangeAfter: 2} {
		if strings.Count(sql, " AND ") != ands || strings.Contains(sql, "starts_with") || strings.Contains(sql, "LIKE") {
			t.Errorf("List statement with redundant predicates: %s", sql)
		}
	}
}

func TestPrefixUpperBound(t *testing.T) {
	for prefix, want := range map[string]string{
		"":                      "",
		"a":                     "b",
		"a%":                    "a&",
		"z\x7f":                 "z\u0080",
		"é":                     "ê",
		"\uD7FF":                "\uE000",
		"a\U0010FFFF":           "b",
		"\U0010FFFF":            "",
		"\U0010FFFF\U0010FFFF":  "",
		"x\U0010FFFF\U0010FFFF": "y",
	} {
		got, ok := PrefixUpperBound(prefix)
		if got != want || ok != (want != "") {
			t.Errorf("PrefixUpperBound(%q) = %q, %v; want %q", prefix, got, ok, want)
		}
	}
}

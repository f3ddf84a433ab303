package telemetry

import (
	"strings"
	"testing"
	"unicode"
)

func TestSummarize(t *testing.T) {
	for _, c := range []struct{ sql, op, table, summary string }{
		{`SELECT value, version, created_at, updated_at FROM "dbmanager"."records"
			WHERE collection = $1 AND key = $2`, "SELECT", "dbmanager.records", "SELECT dbmanager.records"},
		{`INSERT INTO "my schema"."records" AS t (collection) VALUES ($1)`, "INSERT", "my schema.records", "INSERT my schema.records"},
		{`UPDATE "dbmanager"."records" AS t SET value = $3`, "UPDATE", "dbmanager.records", "UPDATE dbmanager.records"},
		{`DELETE FROM "dbmanager"."records" WHERE collection = $1`, "DELETE", "dbmanager.records", "DELETE dbmanager.records"},
		{`delete from only Orders where id = 1`, "DELETE", "orders", "DELETE orders"},
		{`select count(*) from pg_catalog.pg_class where relname = $1`, "SELECT", "pg_catalog.pg_class", "SELECT pg_catalog.pg_class"},
		{`  -- a comment
		/* another */ (select 1)`, "SELECT", "", "SELECT"},
		{`SELECT $1::text FROM t`, "SELECT", "t", "SELECT t"},
		{`SELECT 'FROM secret' FROM t`, "SELECT", "", "SELECT"},         // a literal stops the scan
		{`SELECT $$ FROM secret $$ FROM t`, "SELECT", "", "SELECT"},     // so does a dollar quote
		{`SELECT * FROM (SELECT 1) AS x`, "SELECT", "", "SELECT"},       // a subquery has no table
		{`SELECT * FROM generate_series(1, 3)`, "SELECT", "", "SELECT"}, // nor has a function
		{`SELECT "FROM" FROM "a""b"`, "SELECT", "", "SELECT"},           // an escaped quote: not attempted
		{`ALTER ROLE app PASSWORD 'hunter2'`, "ALTER", "", "ALTER"},     // only the keyword
		{`SET search_path = secret`, "SET", "", "SET"},
		{`WITH x AS (SELECT 1) SELECT * FROM x`, "WITH", "", "WITH"},
		{`TRUNCATE TABLE logs`, "TRUNCATE", "logs", "TRUNCATE logs"},
		{`COPY items FROM STDIN`, "COPY", "items", "COPY items"},
		{``, "", "", "SQL"},
		{`   `, "", "", "SQL"},
		{`123`, "", "", "SQL"},
	} {
		got := Summarize(c.sql)
		if got.Operation != c.op || got.Table != c.table || got.Summary != c.summary {
			t.Errorf("Summarize(%q) = %+v; want %q %q %q", c.sql, got, c.op, c.table, c.summary)
		}
	}
}

func TestStatementCacheIsBounded(t *testing.T) {
	built := 0
	c := NewStatementCache(func(s Statement) *Statement { built++; return &s })
	for range 3 {
		if got := c.Get("SELECT 1 FROM t"); got.Summary != "SELECT t" {
			t.Fatal(got)
		}
	}
	if built != 1 {
		t.Errorf("a repeated statement was summarised %d times; want once", built)
	}
	for i := range maxCached * 2 {
		c.Get("SELECT " + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + " FROM t" + strings.Repeat("y", i))
	}
	if n := c.n.Load(); n > maxCached {
		t.Errorf("cache holds %d statements; want at most %d", n, maxCached)
	}
}

// FuzzSummarize: any input gives a summary that is a keyword, optionally
// followed by a table made of identifier characters from the input.
func FuzzSummarize(f *testing.F) {
	for _, s := range []string{`SELECT a FROM "s"."t"`, `insert into x.y values (1)`, `SELECT 'x' FROM t`, `UPDATE ONLY "a"`, `/* c */ -- d`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		st := Summarize(sql)
		if len(st.Operation) > 32 || strings.IndexFunc(st.Operation, func(r rune) bool { return r < 'A' || r > 'Z' }) >= 0 {
			t.Fatalf("operation %q", st.Operation)
		}
		if len(st.Table) > maxTableLen || strings.IndexFunc(st.Table, func(r rune) bool { return unicode.IsControl(r) }) >= 0 {
			t.Fatalf("table %q", st.Table)
		}
		want := st.Operation
		if st.Table != "" {
			want += " " + st.Table
		}
		if want == "" {
			want = "SQL"
		}
		if st.Summary != want {
			t.Fatalf("summary %q; want %q", st.Summary, want)
		}
		if st.Table != "" && !strings.Contains(strings.ToLower(sql), strings.ToLower(lastPart(st.Table))) {
			t.Fatalf("table %q not from the statement %q", st.Table, sql)
		}
	})
}

func lastPart(table string) string {
	if i := strings.LastIndexByte(table, '.'); i >= 0 {
		return table[i+1:]
	}
	return table
}

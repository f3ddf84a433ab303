// Package pgsql holds the PostgreSQL store's SQL: the statements it runs,
// built once per schema, the choice of List statement for a page, and the
// table layout with its migration.
package pgsql

import (
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
)

// Statements are the store's SQL, built once per store with the schema
// name quoted as an identifier. Each is a single statement: one round trip.
// The store passes its exec mode first (pgx reads a QueryExecMode there and
// runs without one too), then the arguments named below.
type Statements struct {
	// Get reads a record: collection, key.
	Get string
	// Upsert is Put: collection, key, value; it inserts, or replaces and
	// counts the version up.
	Upsert string
	// Insert is Put IfAbsent: collection, key, value; no row returned
	// means the key exists.
	Insert string
	// Update is Put IfVersion: collection, key, value, version; no row
	// returned means another version or no key.
	Update string
	// Delete removes a record: collection, key.
	Delete string
	// DeleteVersion removes a record at a version: collection, key,
	// version.
	DeleteVersion string
	// ListAfter, ListFrom, ListRange and ListRangeAfter are List, one
	// statement per shape of page; ListQuery picks one and its arguments.
	ListAfter, ListFrom, ListRange, ListRangeAfter string
	// Analyze refreshes the planner's statistics of the table.
	Analyze string
}

// NewStatements returns the statements for the records table of schema.
func NewStatements(schema string) Statements {
	t := pgx.Identifier{schema, "records"}.Sanitize()
	r := strings.NewReplacer("$T", t)
	const returning = ` RETURNING version, created_at, updated_at`
	// updated_at never moves backwards, even if the server clock does.
	const bump = `version = t.version + 1, updated_at = greatest(now(), t.updated_at)`
	const page = `SELECT key, value, version, created_at, updated_at FROM $T WHERE `
	const pageOrder = ` ORDER BY collection, key LIMIT `
	return Statements{
		Get: r.Replace(`SELECT value, version, created_at, updated_at FROM $T
			WHERE collection = $1 AND key = $2`),
		// Put: insert, or replace and count the version up.
		Upsert: r.Replace(`INSERT INTO $T AS t (collection, key, value, version, created_at, updated_at)
			VALUES ($1, $2, $3, 1, now(), now())
			ON CONFLICT (collection, key) DO UPDATE SET value = excluded.value, ` + bump + returning),
		// Put IfAbsent: no row returned means the key exists.
		Insert: r.Replace(`INSERT INTO $T AS t (collection, key, value, version, created_at, updated_at)
			VALUES ($1, $2, $3, 1, now(), now())
			ON CONFLICT (collection, key) DO NOTHING` + returning),
		// Put IfVersion: no row returned means another version or no key.
		Update: r.Replace(`UPDATE $T AS t SET value = $3, ` + bump + `
			WHERE collection = $1 AND key = $2 AND version = $4` + returning),
		Delete: r.Replace(`DELETE FROM $T WHERE collection = $1 AND key = $2`),
		DeleteVersion: r.Replace(`DELETE FROM $T
			WHERE collection = $1 AND key = $2 AND version = $3`),
		// List: keyset pagination over the primary key, one key range per
		// statement; see ListQuery for why each has the form it has.
		ListAfter:      r.Replace(page + `(collection, key) > ($1, $2) AND collection <= $1` + pageOrder + `$3`),
		ListFrom:       r.Replace(page + `(collection, key) >= ($1, $2) AND collection <= $1` + pageOrder + `$3`),
		ListRange:      r.Replace(page + `collection = (SELECT $1::text) AND key >= (SELECT $2::text) AND key < (SELECT $3::text) ORDER BY key LIMIT (SELECT $4::bigint)`),
		ListRangeAfter: r.Replace(page + `collection = (SELECT $1::text) AND key > (SELECT $2::text) AND key < (SELECT $3::text) ORDER BY key LIMIT (SELECT $4::bigint)`),
		Analyze:        r.Replace(`ANALYZE $T`),
	}
}

// ListQuery returns the statement and arguments for one List page of
// collection, the keys starting with prefix and greater than after, the
// arguments led by the exec mode; limit is the page size plus one, to
// learn whether more follow.
//
// Every statement reads one range of the primary key (collection, key),
// both COLLATE "C", so bytewise, with nothing else in the WHERE clause,
// and is planned as an ordered scan of the primary key index that stops
// after limit rows or at the end of the range, O(log n + limit), with or
// without statistics and as a generic plan (the root's pglist_test.go checks the
// plans, and the pages each page reads, on a never analysed table). The
// form is chosen for the planner's estimates. With no statistics it
// counts collection = c as 0.5 % of the table and a pair key >= lo AND
// key < hi as another 0.5 %: on a freshly filled table it expects a
// handful of rows where there are thousands, no longer expects the LIMIT
// to cut the scan short, and prefers a bitmap scan of the whole range
// plus a sort, O(n) per page until ANALYZE. So:
//
//   - From a cursor to the end of the collection (no prefix, or a prefix
//     without an upper bound), the range is bounded by a row comparison,
//     (collection, key) > (c, after), and ends with collection <= c. A
//     row comparison is estimated from its first column alone, a third of
//     the table without statistics, and is never paired into a range, so
//     the estimate stays above the limit and the LIMIT makes the ordered
//     scan the cheapest; with statistics the estimate follows the data.
//     collection <= c on the index's first column ends the scan at the
//     end of the collection.
//   - A prefix range [lo, hi) needs plain bounds: an index scan stops at a
//     bound on its second column only after an equality on the first, and
//     not at a row comparison decided by the second column, so a row
//     comparison would read on to the end of the collection whenever the
//     range holds fewer rows than the limit. Its values are passed through
//     scalar subqueries, (SELECT $1::text), which the planner cannot look
//     into: it plans as it would for unknown values (a range is 0.5 % of
//     the rows, and of a LIMIT it assumes a tenth of them are wanted), the
//     same plan with or without statistics, in which the ordered index
//     scan wins by a wide margin even on a table much larger than the
//     cache. The subqueries run once per statement.
//
// A prefix is the range [prefix, PrefixUpperBound(prefix)): literal, as
// LIKE (whose %, _ and \ are special) would not be, and exact for valid
// UTF-8 keys, which are the only keys stored: a key in that range starts
// with the prefix. A prefix without an upper bound (only U+10FFFF runes)
// is the range [prefix, end of the collection): no valid UTF-8 string at
// or above it fails to start with it. The cursor after only raises the
// lower bound.
func (q *Statements) ListQuery(mode pgx.QueryExecMode, collection, prefix, after string, limit int) (string, []any) {
	upper, bounded := PrefixUpperBound(prefix)
	switch {
	case prefix == "" || (!bounded && after >= prefix):
		return q.ListAfter, []any{mode, collection, after, limit}
	case !bounded:
		return q.ListFrom, []any{mode, collection, prefix, limit}
	case after >= prefix:
		return q.ListRangeAfter, []any{mode, collection, after, upper, limit}
	default:
		return q.ListRange, []any{mode, collection, prefix, upper, limit}
	}
}

// PrefixUpperBound returns the smallest string greater than every string
// that starts with prefix: prefix with its last rune incremented (dropping
// trailing runes that cannot be incremented). ok is false when there is no
// such bound (empty prefix, or only U+10FFFF runes).
func PrefixUpperBound(prefix string) (upper string, ok bool) {
	for prefix != "" {
		r, size := utf8.DecodeLastRuneInString(prefix)
		prefix = prefix[:len(prefix)-size]
		next := r + 1
		if next == 0xD800 { // skip the surrogates, which UTF-8 cannot hold
			next = 0xE000
		}
		if next <= utf8.MaxRune {
			return prefix + string(next), true
		}
	}
	return "", false
}

package dbmanager

import (
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
)

// pgStatements are the store's SQL, built once per store with the schema
// name quoted as an identifier. Each is a single statement: one round trip.
type pgStatements struct {
	get, upsert, insert, update string
	delete, deleteVersion       string
	// List, one statement per shape of page (see listQuery).
	listAfter, listFrom, listRange, listRangeAfter string
	// analyze refreshes the planner's statistics of the table.
	analyze string
}

func newPGStatements(schema string) pgStatements {
	t := pgx.Identifier{schema, "records"}.Sanitize()
	r := strings.NewReplacer("$T", t)
	const returning = ` RETURNING version, created_at, updated_at`
	// updated_at never moves backwards, even if the server clock does.
	const bump = `version = t.version + 1, updated_at = greatest(now(), t.updated_at)`
	const page = `SELECT key, value, version, created_at, updated_at FROM $T WHERE `
	const pageOrder = ` ORDER BY collection, key LIMIT `
	return pgStatements{
		get: r.Replace(`SELECT value, version, created_at, updated_at FROM $T
			WHERE collection = $1 AND key = $2`),
		// Put: insert, or replace and count the version up.
		upsert: r.Replace(`INSERT INTO $T AS t (collection, key, value, version, created_at, updated_at)
			VALUES ($1, $2, $3, 1, now(), now())
			ON CONFLICT (collection, key) DO UPDATE SET value = excluded.value, ` + bump + returning),
		// Put IfAbsent: no row returned means the key exists.
		insert: r.Replace(`INSERT INTO $T AS t (collection, key, value, version, created_at, updated_at)
			VALUES ($1, $2, $3, 1, now(), now())
			ON CONFLICT (collection, key) DO NOTHING` + returning),
		// Put IfVersion: no row returned means another version or no key.
		update: r.Replace(`UPDATE $T AS t SET value = $3, ` + bump + `
			WHERE collection = $1 AND key = $2 AND version = $4` + returning),
		delete: r.Replace(`DELETE FROM $T WHERE collection = $1 AND key = $2`),
		deleteVersion: r.Replace(`DELETE FROM $T
			WHERE collection = $1 AND key = $2 AND version = $3`),
		// List: keyset pagination over the primary key, one key range per
		// statement; see listQuery for why each has the form it has.
		listAfter:      r.Replace(page + `(collection, key) > ($1, $2) AND collection <= $1` + pageOrder + `$3`),
		listFrom:       r.Replace(page + `(collection, key) >= ($1, $2) AND collection <= $1` + pageOrder + `$3`),
		listRange:      r.Replace(page + `collection = (SELECT $1::text) AND key >= (SELECT $2::text) AND key < (SELECT $3::text) ORDER BY key LIMIT (SELECT $4::bigint)`),
		listRangeAfter: r.Replace(page + `collection = (SELECT $1::text) AND key > (SELECT $2::text) AND key < (SELECT $3::text) ORDER BY key LIMIT (SELECT $4::bigint)`),
		analyze:        r.Replace(`ANALYZE $T`),
	}
}

// listQuery returns the statement and arguments for one List page of
// collection, the arguments led by the exec mode (see pgexecmode.go);
// limit is the page size plus one, to learn whether more follow.
//
// Every statement reads one range of the primary key (collection, key),
// both COLLATE "C", so bytewise, with nothing else in the WHERE clause,
// and is planned as an ordered scan of the primary key index that stops
// after limit rows or at the end of the range, O(log n + limit), with or
// without statistics and as a generic plan (pglist_test.go checks the
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
// A prefix is the range [prefix, prefixUpperBound(prefix)): literal, as
// LIKE (whose %, _ and \ are special) would not be, and exact for valid
// UTF-8 keys, which are the only keys stored: a key in that range starts
// with the prefix. A prefix without an upper bound (only U+10FFFF runes)
// is the range [prefix, end of the collection): no valid UTF-8 string at
// or above it fails to start with it. The cursor After only raises the
// lower bound.
func (q *pgStatements) listQuery(mode pgx.QueryExecMode, collection string, opts ListOptions, limit int) (string, []any) {
	upper, bounded := prefixUpperBound(opts.Prefix)
	switch {
	case opts.Prefix == "" || (!bounded && opts.After >= opts.Prefix):
		return q.listAfter, []any{mode, collection, opts.After, limit}
	case !bounded:
		return q.listFrom, []any{mode, collection, opts.Prefix, limit}
	case opts.After >= opts.Prefix:
		return q.listRangeAfter, []any{mode, collection, opts.After, upper, limit}
	default:
		return q.listRange, []any{mode, collection, opts.Prefix, upper, limit}
	}
}

// prefixUpperBound returns the smallest string greater than every string
// that starts with prefix: prefix with its last rune incremented (dropping
// trailing runes that cannot be incremented). ok is false when there is no
// such bound (empty prefix, or only U+10FFFF runes).
func prefixUpperBound(prefix string) (upper string, ok bool) {
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

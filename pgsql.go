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
	list, listBounded           string
}

func newPGStatements(schema string) pgStatements {
	t := pgx.Identifier{schema, "records"}.Sanitize()
	r := strings.NewReplacer("$T", t)
	const returning = ` RETURNING version, created_at, updated_at`
	// updated_at never moves backwards, even if the server clock does.
	const bump = `version = t.version + 1, updated_at = greatest(now(), t.updated_at)`
	const pageCols = `SELECT key, value, version, created_at, updated_at FROM $T
		WHERE collection = $1 AND key > $2 AND key >= $3 AND starts_with(key, $3)`
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
		// List: keyset pagination. The prefix is a key range (index scan)
		// plus a literal starts_with check; never LIKE, whose %, _ and \
		// are special. $4 is the page size plus one, to learn whether more
		// follow.
		list:        r.Replace(pageCols + ` ORDER BY key LIMIT $4`),
		listBounded: r.Replace(pageCols + ` AND key < $5 ORDER BY key LIMIT $4`),
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

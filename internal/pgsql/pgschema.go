package pgsql

import (
	"context"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// LayoutVersion is the layout this code reads and writes. A later release
// that changes the table adds a migration step from the version it finds in
// the schema_version table and raises this number.
const LayoutVersion = 1

// pgMaxIdentifierLen is PostgreSQL's NAMEDATALEN-1: longer names are
// silently truncated by the server, so they are refused instead.
const pgMaxIdentifierLen = 63

// The table design:
//
//   - collection and key are text COLLATE "C", so ORDER BY and range
//     comparisons are bytewise (Go string order) whatever the database's
//     default collation, and the primary key index (collection, key) serves
//     every Get, conditional write and List page as a range scan.
//   - value is bytea, not jsonb and not json. jsonb reorders keys, drops
//     duplicate keys, rewrites numbers and whitespace and rejects \u0000.
//     json keeps the text as written on a UTF8 database (checked with lone
//     surrogates, \u0000, huge numbers, duplicate keys), but it is text: on
//     a database whose encoding is not UTF8 the server converts or rejects
//     characters, its recursive parser fails on deep nesting that Go
//     accepts once max_stack_depth is small, and it parses every document
//     again on the server. bytea stores the bytes the caller gave, always;
//     checkedStore (the root's checked layer) has already proved they are
//     valid UTF-8 JSON.
//   - version counts writes (1 on insert); created_at/updated_at are
//     timestamptz, which has the microsecond precision the contract names.
const pgCreateTable = `CREATE TABLE IF NOT EXISTS %[1]s (
	collection text COLLATE "C" NOT NULL,
	key        text COLLATE "C" NOT NULL,
	value      bytea NOT NULL,
	version    bigint NOT NULL,
	created_at timestamptz NOT NULL,
	updated_at timestamptz NOT NULL,
	PRIMARY KEY (collection, key)
)`

// pgCreateVersionTable holds exactly one row: the schema version.
const pgCreateVersionTable = `CREATE TABLE IF NOT EXISTS %[1]s (
	singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
	version   integer NOT NULL
)`

// ValidateSchemaName checks a schema name, saying what is wrong with it
// (the caller wraps its sentinel around the error). The name is always
// quoted as an identifier when used, so any other character is fine.
func ValidateSchemaName(name string) error {
	switch {
	case name == "":
		return errors.New("empty schema name")
	case len(name) > pgMaxIdentifierLen:
		return fmt.Errorf("schema name is %d bytes, over PostgreSQL's limit of %d", len(name), pgMaxIdentifierLen)
	case !utf8.ValidString(name):
		return errors.New("schema name is not valid UTF-8")
	}
	for i := 0; i < len(name); i++ {
		if name[i] == 0 {
			return errors.New("schema name contains a NUL byte")
		}
	}
	return nil
}

// Migrate creates the schema, the table and the version row if they are
// missing, in one transaction under a transaction-scoped advisory lock
// keyed on the schema name, so that processes starting together queue up
// instead of racing on CREATE ... IF NOT EXISTS (which is not safe against
// a concurrent creator). It fails if the database holds a newer layout than
// this code knows. Every statement runs in mode (the store's exec mode), so
// none leaves a named prepared statement behind on a server connection
// that a transaction pooler hands to another client.
func Migrate(ctx context.Context, conn *pgxpool.Conn, schema string, mode pgx.QueryExecMode) error {
	quoted := pgx.Identifier{schema}.Sanitize()
	if current, err := layoutIsCurrent(ctx, conn, schema, mode); err != nil || current {
		return err
	}
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		steps := []string{
			`SELECT pg_advisory_xact_lock(hashtext('github.com/gatewaykit/dbmanager schema ' || $1))`,
			`CREATE SCHEMA IF NOT EXISTS ` + quoted,
			fmt.Sprintf(pgCreateTable, pgx.Identifier{schema, "records"}.Sanitize()),
			fmt.Sprintf(pgCreateVersionTable, pgx.Identifier{schema, "schema_version"}.Sanitize()),
		}
		for i, sql := range steps {
			args := []any{mode}
			if i == 0 {
				args = append(args, schema)
			}
			if _, err := tx.Exec(ctx, sql, args...); err != nil {
				return err
			}
		}
		var version int
		err := tx.QueryRow(ctx, fmt.Sprintf(
			`WITH ins AS (INSERT INTO %[1]s (version) VALUES ($1) ON CONFLICT DO NOTHING RETURNING version)
			 SELECT version FROM ins UNION ALL SELECT version FROM %[1]s LIMIT 1`,
			pgx.Identifier{schema, "schema_version"}.Sanitize()), mode, LayoutVersion).Scan(&version)
		if err != nil {
			return err
		}
		if version > LayoutVersion {
			return fmt.Errorf("schema %s has layout version %d; this release knows only up to %d", quoted, version, LayoutVersion)
		}
		// version < LayoutVersion: future migrations go here.
		return nil
	})
}

// layoutIsCurrent reports whether the schema already holds this release's
// layout, read in one statement that needs no privilege beyond reading the
// version table. Then Migrate creates nothing and takes no lock, so a
// least-privilege user (USAGE on the schema and rights on the table, no
// CREATE) can start on a schema its owner made; CREATE ... IF NOT EXISTS
// would need CREATE even when the object exists. A newer layout is an
// error here already. Anything else (no schema yet, an older layout, the
// version table unreadable) leaves the decision to the migration.
func layoutIsCurrent(ctx context.Context, conn *pgxpool.Conn, schema string, mode pgx.QueryExecMode) (bool, error) {
	versionTable := pgx.Identifier{schema, "schema_version"}.Sanitize()
	var exists bool
	err := conn.QueryRow(ctx,
		`SELECT CASE WHEN to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL
		 THEN has_table_privilege(to_regclass($2), 'SELECT') ELSE false END`,
		mode, pgx.Identifier{schema, "records"}.Sanitize(), versionTable).Scan(&exists)
	if err != nil || !exists {
		return false, err
	}
	var version int
	err = conn.QueryRow(ctx, `SELECT version FROM `+versionTable+` LIMIT 1`, mode).Scan(&version)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if version > LayoutVersion {
		return false, fmt.Errorf("schema %s has layout version %d; this release knows only up to %d", pgx.Identifier{schema}.Sanitize(), version, LayoutVersion)
	}
	return version == LayoutVersion, nil
}

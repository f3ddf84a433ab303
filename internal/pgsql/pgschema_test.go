package pgsql

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/gatewaykit/dbmanager/internal/pgtest"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// TestMain runs the package's tests with one shared PostgreSQL server (see
// internal/pgtest), stopped when they end.
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func TestValidateSchemaName(t *testing.T) {
	for name, want := range map[string]string{
		"dbmanager":               "",
		`we"ird; DROP TABLE x --`: "",
		strings.Repeat("s", 63):   "",
		"":                        "empty schema name",
		strings.Repeat("s", 64):   "schema name is 64 bytes, over PostgreSQL's limit of 63",
		"bad\xff":                 "schema name is not valid UTF-8",
		"nul\x00":                 "schema name contains a NUL byte",
	} {
		err := ValidateSchemaName(name)
		if got := ""; err != nil {
			got = err.Error()
			if got != want {
				t.Errorf("ValidateSchemaName(%q) = %q; want %q", name, got, want)
			}
		} else if want != "" {
			t.Errorf("ValidateSchemaName(%q) accepted it; want %q", name, want)
		}
	}
}

// Migrate creates the layout once, is a no-op (no lock, no CREATE) on a
// current layout, and refuses a newer one; the statements then work on the
// table it made.
func TestMigrateOnARealServer(t *testing.T) {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	const schema, mode = `s "quoted"`, pgx.QueryExecModeExec
	if current, err := layoutIsCurrent(ctx, conn, schema, mode); err != nil || current {
		t.Fatalf("layoutIsCurrent on an empty database = %v, %v", current, err)
	}
	for range 2 {
		if err := Migrate(ctx, conn, schema, mode); err != nil {
			t.Fatal(err)
		}
	}
	if current, err := layoutIsCurrent(ctx, conn, schema, mode); err != nil || !current {
		t.Fatalf("layoutIsCurrent after Migrate = %v, %v", current, err)
	}

	q := NewStatements(schema)
	var version int64
	if err := conn.QueryRow(ctx, q.Upsert, mode, "c", "ab1", []byte(`{}`)).Scan(&version, new(any), new(any)); err != nil || version != 1 {
		t.Fatalf("Upsert = %d, %v", version, err)
	}
	sql, args := q.ListQuery(mode, "c", "ab", "", 11)
	rows, err := conn.Query(ctx, sql, args...)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		var k string
		return k, r.Scan(&k, new([]byte), new(int64), new(any), new(any))
	})
	if err != nil || len(keys) != 1 || keys[0] != "ab1" {
		t.Fatalf("ListQuery page = %q, %v", keys, err)
	}

	versionTable := pgx.Identifier{schema, "schema_version"}.Sanitize()
	if _, err := conn.Exec(ctx, `UPDATE `+versionTable+` SET version = $1`, LayoutVersion+1); err != nil {
		t.Fatal(err)
	}
	want := `schema "s ""quoted""" has layout version 2; this release knows only up to 1`
	if err := Migrate(ctx, conn, schema, mode); err == nil || err.Error() != want {
		t.Fatalf("Migrate on a newer layout = %v; want %q", err, want)
	}
}

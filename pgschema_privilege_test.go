package dbmanager

import (
	"context"
	"net/url"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
)

// A least-privilege user (USAGE on the schema, rights on the table, no
// CREATE anywhere) starts on a schema its owner created: NewPGStore
// creates nothing when the layout is already there.
func TestPGStoreStartsWithoutCreatePrivilegeOnAnExistingSchema(t *testing.T) {
	ctx := context.Background()
	ownerURL := pgtestURL(t)
	owner, err := pgxpool.New(ctx, ownerURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(owner.Close)
	if _, err := newPGStore(ctx, owner); err != nil {
		t.Fatal(err)
	}

	const password = "app-Pa55-word"
	role := roleWithPassword(t, ownerURL, password)
	t.Cleanup(func() { execURL(t, ownerURL, "DROP OWNED BY "+role) })
	execURL(t, ownerURL, "REVOKE ALL ON DATABASE "+databaseOf(t, ownerURL)+" FROM PUBLIC")
	execURL(t, ownerURL, "REVOKE CREATE ON SCHEMA public FROM PUBLIC")
	execURL(t, ownerURL, "GRANT CONNECT ON DATABASE "+databaseOf(t, ownerURL)+" TO "+role)
	execURL(t, ownerURL, "GRANT USAGE ON SCHEMA dbmanager TO "+role)
	execURL(t, ownerURL, "GRANT SELECT, INSERT, UPDATE, DELETE ON dbmanager.records TO "+role)
	execURL(t, ownerURL, "GRANT SELECT ON dbmanager.schema_version TO "+role)

	u, _ := url.Parse(ownerURL)
	u.User = url.UserPassword(role, password)
	app, err := pgxpool.New(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(app.Close)
	var canCreate bool
	if err := app.QueryRow(ctx, `SELECT has_database_privilege(current_database(), 'CREATE') OR has_schema_privilege('dbmanager', 'CREATE')`).Scan(&canCreate); err != nil {
		t.Fatal(err)
	}
	if canCreate {
		t.Fatal("test setup: the role may still CREATE")
	}
	s, err := newPGStore(ctx, app)
	if err != nil {
		t.Fatalf("NewPGStore as a user without CREATE on an existing schema: %v", err)
	}
	if _, err := s.Put(ctx, "apis", "k", []byte(`{"ok":true}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "apis", "k"); err != nil {
		t.Fatal(err)
	}
}

// databaseOf is the database name of a pgtest URL, quoted as an identifier.
func databaseOf(t *testing.T, dsn string) string {
	t.Helper()
	_, _, db := serverParts(t, dsn)
	return `"` + db + `"`
}

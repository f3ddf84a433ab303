package dbmanager

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gatewaykit/dbmanager/internal/pgsql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The store step, on a pool built from the writer's pool configuration
// exactly as the Manager builds it: the Store's schema and its layout
// version, and the privileges the Store needs, read from the catalog
// without writing anything. On a schema that already holds this
// release's layout (and whose version the user can read), NewPGStore
// creates nothing: USAGE on the schema and read/write on its table are
// enough. Otherwise it runs CREATE SCHEMA IF NOT EXISTS and CREATE TABLE
// IF NOT EXISTS, and PostgreSQL checks CREATE on the database and on the
// schema before it looks whether they exist, so both are needed then.
// With the write test, a scratch key is written, read back and deleted
// through a PGStore.

// storePrivilegesSQL reads, for the schema named $1, what the Store needs.
const storePrivilegesSQL = `SELECT current_user, current_database(),
	has_database_privilege(current_database(), 'CREATE'),
	n.oid IS NOT NULL,
	coalesce(has_schema_privilege(n.oid, 'USAGE'), false),
	coalesce(has_schema_privilege(n.oid, 'CREATE'), false),
	r.oid IS NOT NULL,
	coalesce(has_table_privilege(r.oid, 'SELECT'), false),
	coalesce(has_table_privilege(r.oid, 'INSERT'), false),
	coalesce(has_table_privilege(r.oid, 'UPDATE'), false),
	coalesce(has_table_privilege(r.oid, 'DELETE'), false),
	v.oid IS NOT NULL,
	coalesce(has_table_privilege(v.oid, 'SELECT'), false),
	coalesce(has_table_privilege(v.oid, 'INSERT'), false)
FROM (SELECT $1::text AS name) AS want
LEFT JOIN pg_namespace n ON n.nspname = want.name
LEFT JOIN pg_class r ON r.relnamespace = n.oid AND r.relname = 'records'
LEFT JOIN pg_class v ON v.relnamespace = n.oid AND v.relname = 'schema_version'`

// storePrivileges is what storePrivilegesSQL reads.
type storePrivileges struct {
	user, database                  string
	createDB                        bool
	schema, usage, createSchema     bool
	records, sel, ins, upd, del     bool
	version, versionSel, versionIns bool
}

// The write test's scratch record.
const (
	writeTestCollection = "dbdoctor"
	writeTestValue      = `{"written_by":"dbdoctor","scratch":true}`
)

// checkStore is the store step.
func (d *diagnosis) checkStore(ctx context.Context, s *Step) {
	schema := d.opts.schema
	hook, err := d.credentialHook(ctx)
	if err != nil {
		s.fail(errorText(err), "see the auth step")
		return
	}
	pc := d.writer.pool.Copy()
	pc.BeforeConnect = hook
	pc.MinConns, pc.MinIdleConns = 0, 0
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		s.fail(errorText(err), "see the config step")
		return
	}
	defer pool.Close()
	conn, err := pool.Acquire(ctx)
	if err != nil {
		s.fail("the Manager's pool cannot open a connection: "+errorText(explainAcquireError(ctx, pool, err)),
			"the auth step passed on a single connection: check the pool's settings (pool_* in DATABASE_URL) and the server's connection limit")
		return
	}
	var p storePrivileges
	err = conn.QueryRow(ctx, storePrivilegesSQL, pgx.QueryExecModeSimpleProtocol, schema).Scan(&p.user, &p.database, &p.createDB,
		&p.schema, &p.usage, &p.createSchema, &p.records, &p.sel, &p.ins, &p.upd, &p.del, &p.version, &p.versionSel, &p.versionIns)
	if err != nil {
		conn.Release()
		s.fail("cannot read the Store's privileges: "+errorText(err), "check the server's log")
		return
	}
	var parts []string
	layout, layoutErr := d.schemaLayout(ctx, conn, schema, p)
	conn.Release()
	qs := quoteIdent(schema)
	switch {
	case !p.schema:
		parts = append(parts, "schema "+qs+" does not exist yet: the Manager creates it at start-up")
	case layout > 0:
		parts = append(parts, fmt.Sprintf("schema %s, layout version %d", qs, layout))
	case !p.records:
		parts = append(parts, "schema "+qs+" exists without the Store's table: the Manager creates it at start-up")
	default:
		parts = append(parts, "schema "+qs)
	}
	current := p.records && layoutErr == nil && layout == pgsql.LayoutVersion
	missing, grants := p.missing(schema, current)
	if len(missing) > 0 {
		s.fail(strings.Join(parts, "; ")+fmt.Sprintf("; user %s lacks %s, which the Store needs at start-up", p.user, strings.Join(missing, ", ")),
			"as the database owner: "+strings.Join(grants, " ")+" (or give the schema to the user: ALTER SCHEMA "+qs+" OWNER TO "+quoteIdent(p.user)+")")
		return
	}
	switch {
	case current:
		parts = append(parts, "user "+p.user+" has every privilege the Store needs (USAGE on the schema, read and write on its table; no CREATE while the layout is current)")
	case p.schema:
		parts = append(parts, "user "+p.user+" has every privilege the Store needs (CREATE on the database and the schema, read and write on its tables)")
	default:
		parts = append(parts, "user "+p.user+" may create it (CREATE on database "+p.database+")")
	}
	switch {
	case layoutErr != nil:
		s.fail(strings.Join(parts, "; ")+"; cannot read the layout version: "+errorText(layoutErr), "check the schema_version table of schema "+qs)
		return
	case layout > pgsql.LayoutVersion:
		s.fail(strings.Join(parts, "; ")+fmt.Sprintf("; a newer release made this layout (version %d; this one knows up to %d)", layout, pgsql.LayoutVersion),
			"upgrade github.com/gatewaykit/dbmanager in this service, or give it another schema (WithStoreSchema)")
		return
	case layout > 0 && layout < pgsql.LayoutVersion:
		parts = append(parts, fmt.Sprintf("the Manager migrates layout %d to %d at start-up", layout, pgsql.LayoutVersion))
	}
	if !d.opts.writeTest {
		parts = append(parts, "nothing written (-write-test writes a scratch key)")
		s.found(strings.Join(parts, "; "))
		return
	}
	took, err := writeTest(ctx, pool, schema)
	if err != nil {
		s.fail(strings.Join(parts, "; ")+"; write test failed: "+errorText(err), "see the message: the privileges look right, so check the server's log (disk full, a trigger, a lock)")
		return
	}
	parts = append(parts, "write test: a scratch key written, read back and deleted in "+ms(took))
	s.found(strings.Join(parts, "; "))
}

// schemaLayout reads the layout version (0 when there is none to read).
func (d *diagnosis) schemaLayout(ctx context.Context, conn *pgxpool.Conn, schema string, p storePrivileges) (int, error) {
	if !p.version || !p.usage || !p.versionSel {
		return 0, nil
	}
	var v int
	err := conn.QueryRow(ctx, "SELECT version FROM "+pgx.Identifier{schema, "schema_version"}.Sanitize()+" LIMIT 1", pgx.QueryExecModeSimpleProtocol).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	return v, err
}

// missing lists the privileges the user lacks and the GRANTs that give
// them. current means the schema holds this release's layout, readable by
// the user: the Store then creates nothing and needs no CREATE.
func (p storePrivileges) missing(schema string, current bool) (missing, grants []string) {
	user := quoteIdent(p.user)
	if !current && !p.createDB {
		missing = append(missing, "CREATE on database "+p.database+" (CREATE SCHEMA IF NOT EXISTS checks it even when the schema exists)")
		grants = append(grants, "GRANT CREATE ON DATABASE "+quoteIdent(p.database)+" TO "+user+";")
	}
	if !p.schema {
		return missing, grants // the user will own what it creates
	}
	qs := quoteIdent(schema)
	var onSchema []string
	if !p.usage {
		onSchema = append(onSchema, "USAGE")
	}
	if !current && !p.createSchema {
		onSchema = append(onSchema, "CREATE")
	}
	if len(onSchema) > 0 {
		missing = append(missing, strings.Join(onSchema, " and ")+" on schema "+schema)
		grants = append(grants, "GRANT "+strings.Join(onSchema, ", ")+" ON SCHEMA "+qs+" TO "+user+";")
	}
	table := func(name string, exists bool, privs map[string]bool, order []string) {
		if !exists {
			return
		}
		var lack []string
		for _, priv := range order {
			if !privs[priv] {
				lack = append(lack, priv)
			}
		}
		if len(lack) > 0 {
			missing = append(missing, strings.Join(lack, ", ")+" on table "+schema+"."+name)
			grants = append(grants, "GRANT "+strings.Join(lack, ", ")+" ON "+pgx.Identifier{schema, name}.Sanitize()+" TO "+user+";")
		}
	}
	table("records", p.records, map[string]bool{"SELECT": p.sel, "INSERT": p.ins, "UPDATE": p.upd, "DELETE": p.del},
		[]string{"SELECT", "INSERT", "UPDATE", "DELETE"})
	versionPrivs := []string{"SELECT", "INSERT"}
	if current {
		versionPrivs = versionPrivs[:1] // the migration's INSERT does not run
	}
	table("schema_version", p.version, map[string]bool{"SELECT": p.versionSel, "INSERT": p.versionIns}, versionPrivs)
	return missing, grants
}

// writeTest opens a PGStore on pool (creating its schema if missing, as
// the Manager does), writes a scratch key, reads it back and deletes it.
func writeTest(ctx context.Context, pool *pgxpool.Pool, schema string) (time.Duration, error) {
	start := time.Now()
	store, err := newPGStore(ctx, pool, withSchema(schema))
	if err != nil {
		return 0, err
	}
	defer store.Close()
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	key := "write-test-" + hex.EncodeToString(b)
	if _, err := store.Put(ctx, writeTestCollection, key, []byte(writeTestValue), IfAbsent()); err != nil {
		return 0, fmt.Errorf("put %s/%s: %w", writeTestCollection, key, err)
	}
	deleted := false
	defer func() {
		if !deleted { // do not leave the scratch key behind
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			_ = store.Delete(cctx, writeTestCollection, key)
		}
	}()
	r, err := store.Get(ctx, writeTestCollection, key)
	if err != nil {
		return 0, fmt.Errorf("get %s/%s: %w", writeTestCollection, key, err)
	}
	if !bytes.Equal(r.Value, []byte(writeTestValue)) {
		return 0, fmt.Errorf("get %s/%s returned other bytes than were written", writeTestCollection, key)
	}
	if err := store.Delete(ctx, writeTestCollection, key); err != nil {
		return 0, fmt.Errorf("delete %s/%s: %w", writeTestCollection, key, err)
	}
	deleted = true
	return time.Since(start), nil
}

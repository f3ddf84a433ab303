package dbmanager

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gatewaykit/dbmanager/internal/deadline"
	"github.com/gatewaykit/dbmanager/internal/execmode"
	"github.com/gatewaykit/dbmanager/internal/pgpipe"
	"github.com/gatewaykit/dbmanager/internal/pgsql"
)

// PGStore is the PostgreSQL Store. It keeps every collection in one table,
// "records", in its own schema (see WithStoreSchema), created at start-up by
// NewPGStore. Every operation is one statement, so one round trip, and
// conditional writes are decided by the statement itself, never by a read
// followed by a write.
//
// PGStore does not own its pool: Close makes the store refuse further calls
// and leaves the pool open for its owner to close.
type PGStore struct {
	checkedStore
	pg *pgBackend
}

// pgOption configures newPGStore.
type pgOption func(*pgOptions)

type pgOptions struct {
	schema      string
	acquire     func(context.Context) (*pgxpool.Conn, error)
	retryBudget time.Duration
	reads       *replicaSet
}

// withSchema puts the store's table in the named schema (WithStoreSchema).
func withSchema(name string) pgOption {
	return func(o *pgOptions) { o.schema = name }
}

// withAcquire replaces how the store gets a connection for each operation
// (by default pool.Acquire). The Manager uses it to add an acquire timeout
// and to retry logins that fail during a password rotation. acquire must
// return a connection of the store's pool or an error; the store releases
// every connection it gets. A failed acquire counts as "nothing sent", so
// the store may call acquire a second time for the same operation.
func withAcquire(acquire func(context.Context) (*pgxpool.Conn, error)) pgOption {
	return func(o *pgOptions) { o.acquire = acquire }
}

// withReplicas makes the store read from rs's replicas when they can
// answer consistently, and learn each write's WAL position (replica_*.go).
func withReplicas(rs *replicaSet) pgOption {
	return func(o *pgOptions) { o.reads = rs }
}

// withRetryBudget lets a statement that certainly did not run (no
// connection, a read-only node, a server shutting down) be tried again,
// with a short backoff, for up to d after the call started (within its
// deadline). 0, the default, tries such a statement once more at once.
func withRetryBudget(d time.Duration) pgOption {
	return func(o *pgOptions) { o.retryBudget = d }
}

// NewPGStore creates the schema and table if they are missing (safe when
// several processes start at once) and returns a store on pool, in the schema WithStoreSchema names
// ("dbmanager" by default; any characters, at most 63 bytes: an empty or
// longer name fails with ErrInvalid; stores in different schemas of one
// database are fully separate). Of the Options, only WithStoreSchema
// applies. It also
// finds out whether a connection pooler or proxy (PgBouncer, RDS Proxy)
// stands in front of PostgreSQL: the store's statements then avoid named
// prepared statements, which transaction pooling breaks, whatever the
// pool's DefaultQueryExecMode (see the README, "PgBouncer and RDS Proxy").
// It fails
// with ErrInvalid for a bad option, ErrUnavailable when the database cannot
// be reached, and an error naming the problem when the schema cannot be
// created or was made by a newer release.
func NewPGStore(ctx context.Context, pool *pgxpool.Pool, opts ...Option) (*PGStore, error) {
	mo := applyOptions(opts)
	return newPGStore(ctx, pool, withSchema(mo.schema))
}

// newPGStore is NewPGStore with the options only the library itself sets
// (an acquire with rotation retry, replicas, a retry budget).
func newPGStore(ctx context.Context, pool *pgxpool.Pool, opts ...pgOption) (*PGStore, error) {
	if pool == nil {
		return nil, fmt.Errorf("dbmanager: NewPGStore: %w: nil pool", ErrInvalid)
	}
	o := pgOptions{schema: "dbmanager", acquire: pool.Acquire}
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	if err := pgsql.ValidateSchemaName(o.schema); err != nil {
		return nil, fmt.Errorf("dbmanager: NewPGStore: %w: %w", ErrInvalid, err)
	}
	b := newPGBackend(o)
	err := b.withConn(ctx, true, func(conn *pgxpool.Conn) error {
		proxied, err := execmode.BehindProxy(ctx, conn)
		if err != nil {
			return err
		}
		if proxied {
			b.mode.Store(int32(execmode.Proxied))
		}
		return pgsql.Migrate(ctx, conn, o.schema, b.execMode())
	})
	if err != nil {
		return nil, fmt.Errorf("dbmanager: NewPGStore: create schema %s: %w", pgx.Identifier{o.schema}.Sanitize(), err)
	}
	s := &PGStore{pg: b}
	s.b = b
	return s, nil
}

// Schema returns the name of the schema that holds the store's table.
func (s *PGStore) Schema() string { return s.pg.schema }

// pgBackend is the storage half of PGStore.
type pgBackend struct {
	schema      string
	acquire     func(context.Context) (*pgxpool.Conn, error)
	retryBudget time.Duration // see withRetryBudget
	sql         pgsql.Statements
	health      string // see healthStatement
	// mode is the pgx.QueryExecMode passed as the first argument of every
	// statement, whatever the pool's DefaultQueryExecMode (pgexecmode.go).
	mode atomic.Int32
	// reads, when not nil, are the read replicas: Get and List try them
	// first, and writes learn their WAL position (writeTracked).
	reads *replicaSet
}

func newPGBackend(o pgOptions) *pgBackend {
	b := &pgBackend{schema: o.schema, acquire: o.acquire, retryBudget: o.retryBudget, sql: pgsql.NewStatements(o.schema),
		health: healthStatement(o.schema), reads: o.reads}
	b.mode.Store(int32(execmode.Direct))
	return b
}

// execMode is how the store's statements run now.
func (b *pgBackend) execMode() pgx.QueryExecMode { return pgx.QueryExecMode(b.mode.Load()) }

// proxied reports whether the store found a connection pooler or proxy
// between it and PostgreSQL (at NewPGStore, or from a statement that
// failed as only a transaction pooler makes it fail). Its statements then
// run without named prepared statements, which such a pooler breaks.
func (s *PGStore) proxied() bool { return s.pg.execMode() != execmode.Direct }

func (b *pgBackend) name() string { return BackendPostgreSQL }

// close does nothing: the pool belongs to the caller of NewPGStore.
func (b *pgBackend) close() error { return nil }

func (b *pgBackend) ping(ctx context.Context) error {
	return b.withConn(ctx, true, func(conn *pgxpool.Conn) error { return conn.Ping(ctx) })
}

func (b *pgBackend) get(ctx context.Context, collection, key string) (Record, error) {
	if b.reads != nil {
		if r, ok, err := b.replicaGet(ctx, collection, key); ok {
			return r, err
		}
	}
	r := Record{Collection: collection, Key: key}
	err := b.withConn(ctx, true, func(conn *pgxpool.Conn) error {
		return conn.QueryRow(ctx, b.sql.Get, b.execMode(), collection, key).
			Scan(&r.Value, &r.Version, &r.CreatedAt, &r.UpdatedAt)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return Record{}, ErrNotFound
	}
	return r, err
}

func (b *pgBackend) put(ctx context.Context, collection, key string, value []byte, cond writeConditions) (Record, error) {
	sql, args := b.sql.Upsert, []any{b.execMode(), collection, key, value}
	switch {
	case cond.ifAbsent:
		sql = b.sql.Insert
	case cond.versionSet:
		sql, args = b.sql.Update, append(args, cond.ifVersion)
	}
	r := Record{Collection: collection, Key: key, Value: value}
	err := b.withWrite(ctx, func(conn *pgxpool.Conn) error {
		args[0] = b.execMode()
		if b.reads != nil {
			_, err := b.writeTracked(ctx, conn, sql, args, pgpipe.ScanOneRow(&r.Version, &r.CreatedAt, &r.UpdatedAt))
			return err
		}
		return conn.QueryRow(ctx, sql, args...).Scan(&r.Version, &r.CreatedAt, &r.UpdatedAt)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		// The condition did not hold: the key exists (IfAbsent), or has
		// another version or is missing (IfVersion).
		return Record{}, ErrConflict
	}
	return r, err
}

func (b *pgBackend) delete(ctx context.Context, collection, key string, cond writeConditions) error {
	sql, args := b.sql.Delete, []any{b.execMode(), collection, key}
	if cond.versionSet {
		sql, args = b.sql.DeleteVersion, append(args, cond.ifVersion)
	}
	var deleted int64
	err := b.withWrite(ctx, func(conn *pgxpool.Conn) error {
		args[0] = b.execMode()
		exec := conn.Exec
		if b.reads != nil {
			exec = func(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
				return b.writeTracked(ctx, conn, sql, args, nil)
			}
		}
		tag, err := exec(ctx, sql, args...)
		deleted = tag.RowsAffected()
		return err
	})
	switch {
	case err != nil:
		return err
	case deleted > 0:
		return nil
	case cond.versionSet:
		return ErrConflict // another version, or no such key
	default:
		return ErrNotFound
	}
}

func (b *pgBackend) list(ctx context.Context, collection string, opts ListOptions) ([]Record, bool, error) {
	if b.reads != nil {
		if records, more, ok, err := b.replicaList(ctx, collection, opts); ok {
			return records, more, err
		}
	}
	sql, args := b.sql.ListQuery(b.execMode(), collection, opts.Prefix, opts.After, opts.Limit+1)
	var records []Record
	scan := scanRecords(collection, &records)
	err := b.withConn(ctx, true, func(conn *pgxpool.Conn) error {
		args[0] = b.execMode()
		rows, err := conn.Query(ctx, sql, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		return scan(rows)
	})
	if err != nil {
		return nil, false, err
	}
	if len(records) > opts.Limit {
		return records[:opts.Limit], true, nil
	}
	return records, false, nil
}

// scanRecords returns a function that reads a page's rows (key, value,
// version, created_at, updated_at) into *records, replacing what an
// earlier attempt left there.
func scanRecords(collection string, records *[]Record) func(pgx.Rows) error {
	return func(rows pgx.Rows) error {
		*records = (*records)[:0]
		for rows.Next() {
			r := Record{Collection: collection}
			if err := rows.Scan(&r.Key, &r.Value, &r.Version, &r.CreatedAt, &r.UpdatedAt); err != nil {
				return err
			}
			*records = append(*records, r)
		}
		return rows.Err()
	}
}

// runOn runs one statement on conn. If the server refused it because a
// named prepared statement was not where pgx left it (42P05, 26000: the
// sign of a transaction pooler NewPGStore did not detect), the statement
// did not run: the store switches to the pooler-safe mode for good and
// runs it once more, on the same connection (an ERROR leaves it usable).
func (b *pgBackend) runOn(ctx context.Context, conn *pgxpool.Conn, run func(*pgxpool.Conn) error) error {
	err := run(conn)
	if err == nil || deadline.Err(ctx) != nil || !execmode.IsStatementCacheMiss(err) {
		return err
	}
	b.mode.Store(int32(execmode.Proxied))
	return run(conn)
}

// healthStatement is the health check's one round trip: a statement of
// the Store's own shape on the Store's table, sent the way the Store sends
// its statements (the same exec mode, so it is as pooler-safe as they
// are), that a read-only node refuses as it refuses a write.
// SELECT ... FOR UPDATE is a write as far as PostgreSQL is concerned
// (25006 on a standby or with default_transaction_read_only), but on a
// key no record can have (the empty key) it locks nothing and writes no
// WAL. So the check fails whenever the Store's writes would: no
// connection, a read-only node, a missing table, a pooler that breaks the
// Store's statements.
func healthStatement(schema string) string {
	return `SELECT 1 FROM ` + pgx.Identifier{schema, "records"}.Sanitize() +
		` WHERE collection = $1 AND key = $2 FOR UPDATE`
}

// checkWritable runs the health statement, with the Store's retries
// within ctx: a connection found on a read-only node is closed, and the
// check goes on to the writer if there is one.
func (b *pgBackend) checkWritable(ctx context.Context) error {
	return b.withConn(ctx, true, func(conn *pgxpool.Conn) error {
		_, err := conn.Exec(ctx, b.health, b.execMode(), "", "")
		return err
	})
}

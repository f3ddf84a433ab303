package dbmanager

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

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

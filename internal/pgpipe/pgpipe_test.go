package pgpipe

import (
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/gatewaykit/dbmanager/internal/pgtest"
)

// TestRunEachStatementIsItsOwnTransaction: a failing statement in the
// middle of a pipeline fails alone (its own Sync), the ones around it
// commit, every outcome is read to its end, in both the named and the
// unnamed (pooler-safe) form, and the connection stays usable.
func TestRunEachStatementIsItsOwnTransaction(t *testing.T) {
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE TABLE t (k text PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	for _, named := range []bool{false, true} {
		if _, err := conn.Exec(ctx, "TRUNCATE t"); err != nil {
			t.Fatal(err)
		}
		var n int64
		first := &Stmt{SQL: "INSERT INTO t VALUES ($1)", Args: []any{"a"}}
		dup := &Stmt{SQL: "INSERT INTO t VALUES ($1)", Args: []any{"a"}}
		count := &Stmt{SQL: "SELECT count(*) FROM t WHERE k = $1", Args: []any{"a"}, Scan: ScanOneRow(&n)}
		if err := Run(ctx, conn, named, first, dup, count); err != nil {
			t.Fatalf("named %v: the pipeline failed: %v", named, err)
		}
		var pgErr *pgconn.PgError
		if first.Err != nil || first.Tag.RowsAffected() != 1 || !errors.As(dup.Err, &pgErr) || pgErr.Code != "23505" || count.Err != nil || n != 1 {
			t.Errorf("named %v: first %v (%s), duplicate %v, count %v = %d; want the duplicate alone to fail and the first to stay committed",
				named, first.Err, first.Tag, dup.Err, count.Err, n)
		}
		if !first.Done || !dup.Done || !count.Done {
			t.Errorf("named %v: outcomes not read to their end: %v %v %v", named, first.Done, dup.Done, count.Done)
		}
	}
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("the connection after the pipelines: %v", err)
	}
}

func TestRunReadTransactionIsReadOnly(t *testing.T) {
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var a, b int64
	s1 := &Stmt{SQL: "SELECT 1::int8", Scan: ScanOneRow(&a)}
	s2 := &Stmt{SQL: "SELECT 2::int8", Scan: ScanOneRow(&b)}
	if err := RunReadTransaction(ctx, conn, s1, s2); err != nil || s1.Err != nil || s2.Err != nil || a != 1 || b != 2 {
		t.Fatalf("read transaction: %v, %v, %v, %d %d", err, s1.Err, s2.Err, a, b)
	}
	write := &Stmt{SQL: "CREATE TABLE not_in_a_read_only_transaction (k int)"}
	if err := RunReadTransaction(ctx, conn, write); err != nil {
		t.Fatal(err)
	}
	var pgErr *pgconn.PgError
	if !errors.As(write.Err, &pgErr) || pgErr.Code != "25006" {
		t.Errorf("a write in the read transaction: %v, want 25006 (read only)", write.Err)
	}
}

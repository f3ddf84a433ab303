package dbmanager

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/gatewaykit/dbmanager/internal/pgpipe"
)

// TestSendStatements: typed statements in one batch return their rows in
// order, empty values stay empty (not NULL), a failing statement's error
// comes back after the ones before it ran, SQL_ECHO logs them as a batch,
// and the connection stays usable.
func TestSendStatements(t *testing.T) {
	var logs logBuffer
	cfg := DefaultConfig()
	cfg.SQLEcho = true
	p := openPool(t, cfg, pgtestURL(t), withPoolLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	conn, err := p.Acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	const sql = "SELECT $1::text, $2::bytea IS NULL, length($2), $3::int8 * 2, $4::timestamptz"
	oids := []uint32{pgpipe.OIDText, pgpipe.OIDBytea, pgpipe.OIDInt8, pgpipe.OIDTimestamptz}
	now := time.Now().UTC().Truncate(time.Microsecond)
	args := [][]any{{"a", []byte{}, int64(1), now}, {"b", []byte("xyz"), int64(2), now.Add(time.Hour)}}
	var got []string
	err = pgpipe.Send(t.Context(), conn.Conn(), sql, oids, args, func(i int, rows pgx.Rows) error {
		for rows.Next() {
			var s string
			var null bool
			var n, twice int64
			var ts time.Time
			if err := rows.Scan(&s, &null, &n, &twice, &ts); err != nil {
				return err
			}
			if null || !ts.Equal(args[i][3].(time.Time)) {
				t.Errorf("row %d: null %v time %v", i, null, ts)
			}
			got = append(got, fmt.Sprintf("%s:%d:%d", s, n, twice))
		}
		return rows.Err()
	})
	if err != nil || strings.Join(got, ",") != "a:0:2,b:3:4" {
		t.Fatalf("results %v, %v", got, err)
	}
	if !strings.Contains(logs.String(), "$3::int8 * 2") {
		t.Errorf("SQL_ECHO did not log the batch:\n%s", logs.String())
	}

	// The second of three fails: the first ran, the error says why.
	ran := 0
	err = pgpipe.Send(t.Context(), conn.Conn(), "SELECT 1 / $1::int8", []uint32{pgpipe.OIDInt8}, [][]any{{int64(1)}, {int64(0)}, {int64(1)}},
		func(int, pgx.Rows) error { ran++; return nil })
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "22012" || ran != 1 {
		t.Fatalf("division by zero in the batch: %v after %d results", err, ran)
	}
	if err := pgpipe.Send(t.Context(), conn.Conn(), "SELECT $1::int8", []uint32{pgpipe.OIDInt8}, [][]any{{int64(1), int64(2)}}, nil); err == nil {
		t.Fatal("too many arguments accepted")
	}
	var one int
	if err := conn.QueryRow(t.Context(), "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("connection unusable after the batches: %v", err)
	}
}

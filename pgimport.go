package dbmanager

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gatewaykit/dbmanager/internal/pgpipe"
)

// pgImportSQL writes one memory record into PostgreSQL during a move back
// to the primary (move.go), deciding in one statement:
//
//   - no row: insert the memory record as it is (its version and times);
//   - a row this move wrote earlier ($7, its version then): overwrite it;
//   - a row with the same bytes: keep it, version = the larger of both;
//   - a row with other bytes (a conflict): keep PostgreSQL's record and
//     raise its version above both, so no version handed out from memory
//     can match it.
//
// It returns the resulting version and, for a conflict only, the kept row.
const pgImportSQL = `INSERT INTO %[1]s AS t (collection, key, value, version, created_at, updated_at)
	VALUES ($1, $2, $3, $4, $5, $6)
	ON CONFLICT (collection, key) DO UPDATE SET
		value = CASE WHEN t.version = $7 THEN excluded.value ELSE t.value END,
		version = CASE
			WHEN t.version = $7 THEN excluded.version
			WHEN t.value = excluded.value THEN greatest(t.version, excluded.version)
			ELSE greatest(t.version, excluded.version) + 1 END,
		updated_at = CASE
			WHEN t.version = $7 THEN excluded.updated_at
			WHEN t.value = excluded.value THEN greatest(t.updated_at, excluded.updated_at)
			ELSE greatest(now(), t.updated_at) END
	RETURNING version, value = $3, CASE WHEN value = $3 THEN NULL ELSE value END, created_at, updated_at`

// pgDeleteOwnedSQL deletes a row the move wrote, if it is still as left.
const pgDeleteOwnedSQL = `DELETE FROM %[1]s WHERE collection = $1 AND key = $2 AND version = $3`

// pgImportTypes are the parameter types of pgImportSQL, and
// pgDeleteOwnedTypes those of pgDeleteOwnedSQL.
var (
	pgImportTypes      = []uint32{pgpipe.OIDText, pgpipe.OIDText, pgpipe.OIDBytea, pgpipe.OIDInt8, pgpipe.OIDTimestamptz, pgpipe.OIDTimestamptz, pgpipe.OIDInt8}
	pgDeleteOwnedTypes = []uint32{pgpipe.OIDText, pgpipe.OIDText, pgpipe.OIDInt8}
)

// importRecords implements recordImporter: one round trip for all of recs
// (pgpipe.Send, which works behind a transaction pooler too).
func (s *PGStore) importRecords(ctx context.Context, recs []Record, owned map[recordKey]int64) ([]importOutcome, error) {
	if err := s.liveness(ctx); err != nil {
		return nil, err
	}
	query := fmt.Sprintf(pgImportSQL, pgx.Identifier{s.pg.schema, "records"}.Sanitize())
	args := make([][]any, len(recs))
	for i, r := range recs {
		args[i] = []any{r.Collection, r.Key, r.Value, r.Version, r.CreatedAt, r.UpdatedAt, owned[keyOf(r)]}
	}
	out := make([]importOutcome, len(recs))
	err := s.pg.withConn(ctx, true, func(conn *pgxpool.Conn) error {
		return pgpipe.Send(ctx, conn.Conn(), query, pgImportTypes, args, func(i int, rows pgx.Rows) error {
			r := recs[i]
			var ours bool
			var kept []byte
			p := Record{Collection: r.Collection, Key: r.Key}
			if !rows.Next() {
				if err := rows.Err(); err != nil {
					return err
				}
				return pgx.ErrNoRows // the statement always returns its row
			}
			if err := rows.Scan(&p.Version, &ours, &kept, &p.CreatedAt, &p.UpdatedAt); err != nil {
				return err
			}
			out[i] = importOutcome{version: p.Version}
			if !ours {
				p.Value = kept
				p.CreatedAt, p.UpdatedAt = normalizeTime(p.CreatedAt), normalizeTime(p.UpdatedAt)
				out[i].conflict, out[i].primary = true, p
			}
			return nil
		})
	})
	return out, err
}

// deleteOwned implements recordImporter.
func (s *PGStore) deleteOwned(ctx context.Context, keys map[recordKey]int64) error {
	if err := s.liveness(ctx); err != nil {
		return err
	}
	query := fmt.Sprintf(pgDeleteOwnedSQL, pgx.Identifier{s.pg.schema, "records"}.Sanitize())
	args := make([][]any, 0, len(keys))
	for k, v := range keys {
		args = append(args, []any{k.collection, k.key, v})
	}
	return s.pg.withConn(ctx, true, func(conn *pgxpool.Conn) error {
		return pgpipe.Send(ctx, conn.Conn(), query, pgDeleteOwnedTypes, args, func(int, pgx.Rows) error { return nil })
	})
}

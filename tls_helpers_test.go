package dbmanager

import "github.com/jackc/pgx/v5"

// newConnConfig is connConfig without a recorder: a single connection's
// settings under cfg's TLS policy, as the tests check them.
func newConnConfig(cfg Config, dsn string) (*pgx.ConnConfig, error) {
	return connConfig(cfg, dsn, nil)
}

package dbmanager

import (
	"context"
	"errors"
	"fmt"
	"github.com/gatewaykit/dbmanager/internal/writerwatch"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// pgError turns an error from pgx into what a backend returns:
//
//   - the context's own error when ctx is done (cancelled or past its
//     deadline), whatever pgx made of it;
//   - ErrUnavailable wrapping the cause when the server could not be
//     reached or is going away (network errors, connection exceptions,
//     shutdown, too many connections, a read-only server);
//   - otherwise the server's error, wrapped but without a sentinel.
//
// Every cause passes through safeError, so no password pgx may have put in
// an error reaches the caller.
func pgError(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		// A context inside pgx (a connect timeout, say): the server did not
		// answer in time.
		return fmt.Errorf("%w: %w", ErrUnavailable, safeError(err))
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && !serverUnavailable(pgErr.Code) {
		return fmt.Errorf("postgresql: %w", safeError(err))
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, safeError(err))
}

// serverUnavailable reports whether a SQLSTATE says the server cannot serve
// us now rather than that the statement was wrong.
func serverUnavailable(code string) bool {
	switch {
	case strings.HasPrefix(code, "08"): // connection exception
		return true
	case strings.HasPrefix(code, "53"): // insufficient resources (too many connections, disk full)
		return true
	case code == "57P01", code == "57P02", code == "57P03": // admin/crash shutdown, cannot connect now
		return true
	case code == "25006": // read-only transaction: a standby after failover
		return true
	}
	return false
}

// errNodeReadOnly says a node does not accept writes (writerwatch).
var errNodeReadOnly = writerwatch.ErrNodeReadOnly

// isReadOnlyError reports whether err says the node does not accept
// writes (a 25006, or a connection refused by the read-write check).
func isReadOnlyError(err error) bool { return writerwatch.IsReadOnlyError(err) }

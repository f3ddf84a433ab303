// Package netconn shapes the TCP connections under the pool: a dialer
// whose keepalives and TCP_USER_TIMEOUT make a silent node visible within
// seconds, and a check, without a round trip, that the server has not
// already closed an idle connection.
package netconn

import (
	"context"
	"net"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// peerHasClosed reports whether the server side of an idle connection has
// already said goodbye: data or end-of-stream waiting in the socket where
// an idle PostgreSQL connection has none (a server that shuts down sends
// FATAL 57P01 and closes; a cut connection has an RST waiting). It costs
// one non-blocking system call and sends nothing, so unlike a ping it can
// run on every acquire. Where it cannot look (another OS, an unusual
// net.Conn) it reports false.
func peerHasClosed(c net.Conn) bool { return newPeeker(c).hasClosed() }

// peekerKey is where DropClosed keeps a connection's peeker, in pgconn's
// per-connection CustomData.
const peekerKey = "dbmanager.netconn.peeker"

// connHasClosed is peerHasClosed on a pool's connection, with the peeker
// made on its first acquire and kept with it, so a look allocates nothing.
func connHasClosed(pc *pgconn.PgConn) bool {
	data := pc.CustomData()
	p, _ := data[peekerKey].(*peeker)
	if p == nil {
		p = newPeeker(pc.Conn())
		data[peekerKey] = p
	}
	return p.hasClosed()
}

// DropClosed returns a pgxpool PrepareConn hook: a connection whose server
// has already closed it is destroyed (after onDrop, if not nil, has seen
// it) and the pool hands out another, so a caller never meets a connection
// that died while idle in the pool (a server restart, a reset).
func DropClosed(onDrop func(*pgx.Conn)) func(context.Context, *pgx.Conn) (bool, error) {
	return func(_ context.Context, conn *pgx.Conn) (bool, error) {
		if connHasClosed(conn.PgConn()) {
			if onDrop != nil {
				onDrop(conn)
			}
			return false, nil
		}
		return true, nil
	}
}

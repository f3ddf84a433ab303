package dbmanager

import (
	"context"
	"net"

	"github.com/jackc/pgx/v5"
)

// peerHasClosed reports whether the server side of an idle connection has
// already said goodbye: data or end-of-stream waiting in the socket where
// an idle PostgreSQL connection has none (a server that shuts down sends
// FATAL 57P01 and closes; a cut connection has an RST waiting). It costs
// one non-blocking system call and sends nothing, so unlike a ping it can
// run on every acquire. Where it cannot look (another OS, an unusual
// net.Conn) it reports false.
func peerHasClosed(c net.Conn) bool {
	if tc, ok := c.(interface{ NetConn() net.Conn }); ok { // *tls.Conn
		c = tc.NetConn()
	}
	return socketHasClosed(c)
}

// dropClosedConns is a pgxpool PrepareConn hook: a connection whose server
// has already closed it is destroyed and the pool hands out another, so a
// caller never meets a connection that died while idle in the pool (a
// server restart, a reset).
func dropClosedConns(_ context.Context, conn *pgx.Conn) (bool, error) {
	if peerHasClosed(conn.PgConn().Conn()) {
		markClose(conn, closeDeadPeer)
		return false, nil
	}
	return true, nil
}

package netconn

import (
	"net"
	"syscall"
	"unsafe"
)

// peeker looks at one connection's socket without blocking or consuming.
// It is made once per connection (DropClosed keeps it with the
// connection), so a look allocates nothing: the socket's RawConn, the
// callback and its buffer are its own. It is used by one goroutine at a
// time (the one acquiring the connection).
type peeker struct {
	raw    syscall.RawConn // nil: this connection cannot be looked at
	look   func(fd uintptr)
	buf    [1]byte
	closed bool
}

// newPeeker returns the peeker of c (a TCP or Unix connection, possibly
// under TLS). One for a connection it cannot look at reports false.
func newPeeker(c net.Conn) *peeker {
	if tc, ok := c.(interface{ NetConn() net.Conn }); ok { // *tls.Conn
		c = tc.NetConn()
	}
	p := &peeker{}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return p
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return p
	}
	p.raw, p.look = raw, p.peek
	return p
}

// hasClosed reports whether data or end-of-stream waits in the socket.
// Control, not Read: Read would wait for the descriptor's read lock,
// which pgx's background reader may hold for as long as no data comes.
func (p *peeker) hasClosed() bool {
	if p.raw == nil {
		return false
	}
	p.closed = false
	if p.raw.Control(p.look) != nil {
		return false
	}
	return p.closed
}

// peek is recv(2) of one byte with MSG_PEEK|MSG_DONTWAIT, without asking
// for the peer's address (syscall.Recvfrom would allocate room for it).
func (p *peeker) peek(fd uintptr) {
	n, _, errno := syscall.Syscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&p.buf[0])), 1,
		syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
	switch {
	case errno == syscall.EAGAIN || errno == syscall.EINTR:
		p.closed = false // nothing waiting: alive
	case errno != 0:
		p.closed = true // ECONNRESET and friends
	default:
		p.closed = true // n == 0 is end of stream; n > 0 is an unexpected message (FATAL)
		_ = n
	}
}

package netconn

import (
	"errors"
	"net"
	"syscall"
)

// socketHasClosed peeks at the socket without blocking or consuming.
func socketHasClosed(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	// Control, not Read: Read would wait for the descriptor's read lock,
	// which pgx's background reader may hold for as long as no data comes.
	closed := false
	_ = raw.Control(func(fd uintptr) {
		var b [1]byte
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case errors.Is(err, syscall.EAGAIN), errors.Is(err, syscall.EINTR):
			closed = false // nothing waiting: alive
		case err != nil:
			closed = true // ECONNRESET and friends
		default:
			closed = true // n == 0 is end of stream; n > 0 is an unexpected message (FATAL)
			_ = n
		}
	})
	return closed
}

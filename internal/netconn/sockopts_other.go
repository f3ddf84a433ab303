//go:build !linux

package netconn

import (
	"errors"
	"net"
	"time"
)

// SocketOptions are the keepalive and user-timeout settings the kernel
// applies to a TCP connection, as NewDialer sets them.
type SocketOptions struct {
	// KeepAlive is 1 when keepalive probes are on.
	KeepAlive int
	// Idle and Interval are in seconds; Count is the number of probes.
	Idle, Interval, Count int
	// UserTimeout is TCP_USER_TIMEOUT (0: off).
	UserTimeout time.Duration
}

// ReadSocketOptions reads c's socket options on Linux only; here it always
// fails.
func ReadSocketOptions(net.Conn) (SocketOptions, error) {
	return SocketOptions{}, errors.New("dbmanager: reading socket options needs Linux")
}

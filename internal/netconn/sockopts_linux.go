package netconn

import (
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
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

// ReadSocketOptions reads c's keepalive and user-timeout settings from the
// kernel (through a *tls.Conn to the socket below), so that checks and
// diagnostics see what applies rather than what was asked for.
func ReadSocketOptions(c net.Conn) (SocketOptions, error) {
	if tc, ok := c.(interface{ NetConn() net.Conn }); ok { // *tls.Conn
		c = tc.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return SocketOptions{}, fmt.Errorf("dbmanager: %T has no socket to read options from", c)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return SocketOptions{}, err
	}
	var o SocketOptions
	var errs []error
	get := func(fd, level, opt int) int {
		v, err := unix.GetsockoptInt(fd, level, opt)
		if err != nil {
			errs = append(errs, err)
		}
		return v
	}
	if err := raw.Control(func(fd uintptr) {
		f := int(fd)
		o.KeepAlive = get(f, unix.SOL_SOCKET, unix.SO_KEEPALIVE)
		o.Idle = get(f, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)
		o.Interval = get(f, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL)
		o.Count = get(f, unix.IPPROTO_TCP, unix.TCP_KEEPCNT)
		o.UserTimeout = time.Duration(get(f, unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)) * time.Millisecond
	}); err != nil {
		return SocketOptions{}, err
	}
	if err := errors.Join(errs...); err != nil {
		return SocketOptions{}, fmt.Errorf("dbmanager: reading socket options: %w", err)
	}
	return o, nil
}

package netconn

import (
	"context"
	"net"
	"strings"
	"syscall"
	"time"
)

// The pool's dialer makes a node that stops answering (Aurora fencing a
// failed writer, a dropped network) visible within seconds instead of the
// kernel's ~15 minutes of retransmissions:
//
//   - TCP keepalives (DB_TCP_KEEPALIVE): an idle connection whose peer is
//     gone is probed after that much silence, then once a second;
//   - TCP_USER_TIMEOUT (DB_TCP_USER_TIMEOUT, Linux): a connection whose
//     sent data (a statement, a keepalive probe) stays unacknowledged that
//     long is closed by the kernel, so a statement in flight on a silent
//     node fails instead of hanging until its deadline.
//
// Neither bounds a node that acknowledges packets but never answers (a
// stuck server, or a proxy that keeps accepting data): only the call's
// deadline does, and the Store gives every call one.

// keepAliveInterval is the time between keepalive probes once they start.
const keepAliveInterval = time.Second

// KeepAliveProbes is how many unanswered probes close a connection when
// TCP_USER_TIMEOUT does not close it first.
const KeepAliveProbes = 5

// NewDialer returns the dialer for the pool's connections: timeout bounds
// one dial (0: only the context does); keepAlive is the silence after which
// an idle TCP connection is probed (then every second, KeepAliveProbes
// times), and userTimeout how long sent data may stay unacknowledged before
// the kernel closes the connection (Linux). Zero turns either off.
func NewDialer(timeout, keepAlive, userTimeout time.Duration) *net.Dialer {
	d := &net.Dialer{Timeout: timeout, KeepAlive: -1}
	if keepAlive > 0 {
		d.KeepAliveConfig = net.KeepAliveConfig{
			Enable:   true,
			Idle:     keepAlive,
			Interval: min(keepAliveInterval, keepAlive),
			Count:    KeepAliveProbes,
		}
	}
	if ut := userTimeout; ut > 0 {
		d.ControlContext = func(_ context.Context, network, _ string, c syscall.RawConn) error {
			if !strings.HasPrefix(network, "tcp") {
				return nil // a Unix socket
			}
			return setUserTimeout(c, ut)
		}
	}
	return d
}

package netconn

import (
	"errors"
	"net"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// readSocketOptions reads c's options, skipping where only Linux can.
func readSocketOptions(t *testing.T, c net.Conn) SocketOptions {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("reads Linux socket options")
	}
	o, err := ReadSocketOptions(c)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func TestDialerSetsKeepAliveAndUserTimeout(t *testing.T) {
	cases := map[string]struct {
		keepAlive, userTimeout time.Duration
		want                   SocketOptions
	}{
		"5s and 8s": {5 * time.Second, 8 * time.Second, SocketOptions{KeepAlive: 1, Idle: 5, Interval: 1, Count: KeepAliveProbes, UserTimeout: 8 * time.Second}},
		"custom":    {30 * time.Second, 2500 * time.Millisecond, SocketOptions{KeepAlive: 1, Idle: 30, Interval: 1, Count: KeepAliveProbes, UserTimeout: 2500 * time.Millisecond}},
		"off":       {0, 0, SocketOptions{KeepAlive: 0, UserTimeout: 0}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			conn, _ := loopbackPair(t, NewDialer(time.Second, c.keepAlive, c.userTimeout))
			got := readSocketOptions(t, conn)
			if c.want.KeepAlive == 0 {
				got.Idle, got.Interval, got.Count = 0, 0, 0 // kernel defaults, unused
			}
			if got != c.want {
				t.Fatalf("socket options %+v; want %+v", got, c.want)
			}
		})
	}
}

// TestUserTimeoutEndsAStalledConnection shows the kernel enforcing
// TCP_USER_TIMEOUT on loopback: a peer that stops reading lets the send
// window close, and data that cannot be sent for the user timeout ends the
// connection with ETIMEDOUT. (A black-holed proxy cannot show it: it keeps
// reading, so the kernel acknowledges everything.) Without the option the
// same write waits for its deadline.
func TestUserTimeoutEndsAStalledConnection(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("TCP_USER_TIMEOUT is Linux's")
	}
	stalledWrite := func(userTimeout time.Duration) error {
		c, peer := loopbackPair(t, NewDialer(time.Second, 0, userTimeout))
		_ = peer.(*net.TCPConn).SetReadBuffer(4096) // never read from: the window closes
		_ = c.SetWriteDeadline(time.Now().Add(3 * time.Second))
		buf := make([]byte, 64<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				return err
			}
		}
	}
	if err := stalledWrite(500 * time.Millisecond); !errors.Is(err, syscall.ETIMEDOUT) {
		t.Fatalf("stalled write with TCP_USER_TIMEOUT: %v; want ETIMEDOUT", err)
	}
	if testing.Short() {
		return
	}
	if err := stalledWrite(0); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("stalled write without TCP_USER_TIMEOUT: %v; want its deadline", err)
	}
}

package netconn

import (
	"context"
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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
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
			conn, err := NewDialer(time.Second, c.keepAlive, c.userTimeout).DialContext(context.Background(), "tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
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
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		accepted := make(chan net.Conn, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			_ = c.(*net.TCPConn).SetReadBuffer(4096)
			accepted <- c // never read from: the window closes
		}()
		c, err := NewDialer(time.Second, 0, userTimeout).DialContext(context.Background(), "tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if peer, ok := <-accepted; ok {
			defer peer.Close()
		}
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

package dbmanager

import (
	"context"
	"errors"
	"net"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/gatewaykit/dbmanager/internal/pgtest"
	"github.com/jackc/pgx/v5"
	"golang.org/x/sys/unix"
)

// socketOptions reads the keepalive and user-timeout options of a TCP
// connection.
type socketOptions struct {
	keepAlive, idle, interval, count int
	userTimeout                      time.Duration
}

func readSocketOptions(t *testing.T, c net.Conn) socketOptions {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("reads Linux socket options")
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		t.Fatalf("%T is not a syscall.Conn", c)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var o socketOptions
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
		o.keepAlive = get(f, unix.SOL_SOCKET, unix.SO_KEEPALIVE)
		o.idle = get(f, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)
		o.interval = get(f, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL)
		o.count = get(f, unix.IPPROTO_TCP, unix.TCP_KEEPCNT)
		o.userTimeout = time.Duration(get(f, unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)) * time.Millisecond
	}); err != nil {
		t.Fatal(err)
	}
	if len(errs) > 0 {
		t.Fatal(errs)
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
		want                   socketOptions
	}{
		"defaults": {DefaultTCPKeepAlive, DefaultTCPUserTimeout, socketOptions{keepAlive: 1, idle: 5, interval: 1, count: keepAliveProbes, userTimeout: 8 * time.Second}},
		"custom":   {30 * time.Second, 2500 * time.Millisecond, socketOptions{keepAlive: 1, idle: 30, interval: 1, count: keepAliveProbes, userTimeout: 2500 * time.Millisecond}},
		"off":      {0, 0, socketOptions{keepAlive: 0, userTimeout: 0}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.TCPKeepAlive, cfg.TCPUserTimeout = c.keepAlive, c.userTimeout
			conn, err := newDialer(cfg, time.Second).DialContext(context.Background(), "tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			got := readSocketOptions(t, conn)
			if c.want.keepAlive == 0 {
				got.idle, got.interval, got.count = 0, 0, 0 // kernel defaults, unused
			}
			if got != c.want {
				t.Fatalf("socket options %+v; want %+v", got, c.want)
			}
		})
	}
}

// TestPoolConnectionsCarryKeepAliveAndUserTimeout checks the options on a
// connection the pool's config really opens to PostgreSQL.
func TestPoolConnectionsCarryKeepAliveAndUserTimeout(t *testing.T) {
	pc := poolConfigFor(t, "DATABASE_URL", pgtest.URL(t), "DB_TCP_USER_TIMEOUT", "3", "DB_TCP_KEEPALIVE", "4")
	conn, err := pgx.ConnectConfig(context.Background(), pc.ConnConfig)
	if err != nil {
		t.Fatal(safeError(err))
	}
	defer conn.Close(context.Background())
	got := readSocketOptions(t, conn.PgConn().Conn())
	want := socketOptions{keepAlive: 1, idle: 4, interval: 1, count: keepAliveProbes, userTimeout: 3 * time.Second}
	if got != want {
		t.Fatalf("pool connection options %+v; want %+v", got, want)
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
		cfg := DefaultConfig()
		cfg.TCPUserTimeout = userTimeout
		c, err := newDialer(cfg, time.Second).DialContext(context.Background(), "tcp", ln.Addr().String())
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

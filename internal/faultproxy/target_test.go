package faultproxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gatewaykit/dbmanager/internal/pgtest"
	"github.com/jackc/pgx/v5"
)

// namedServer starts a TCP server that greets every connection with
// name+"\n" and then echoes. received counts the bytes it has read.
func namedServer(t *testing.T, name string) (addr string, received func() int) {
	t.Helper()
	var (
		mu sync.Mutex
		n  int
	)
	addr = serveTCP(t, func(c net.Conn) {
		if _, err := io.WriteString(c, name+"\n"); err != nil {
			return
		}
		buf := make([]byte, 4096)
		for {
			k, err := c.Read(buf)
			mu.Lock()
			n += k
			mu.Unlock()
			if k > 0 {
				if _, werr := c.Write(buf[:k]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	})
	return addr, func() int {
		mu.Lock()
		defer mu.Unlock()
		return n
	}
}

// greeting dials p and returns the connection and the name of the server
// it reached.
func greeting(t *testing.T, p *Proxy) (net.Conn, string) {
	t.Helper()
	c := dial(t, p)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	name, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("read greeting: %v", err)
	}
	if r.Buffered() > 0 {
		t.Fatal("greeting followed by unexpected bytes")
	}
	return c, name[:len(name)-1]
}

func TestSetTargetMovesOnlyNewConnections(t *testing.T) {
	a, _ := namedServer(t, "A")
	b, _ := namedServer(t, "B")
	p := New(t, a)
	if p.Target() != a {
		t.Fatalf("Target = %q, want %q", p.Target(), a)
	}
	old, name := greeting(t, p)
	if name != "A" {
		t.Fatalf("first connection reached %s, want A", name)
	}

	p.SetTarget(b)
	if p.Target() != b {
		t.Fatalf("Target after SetTarget = %q, want %q", p.Target(), b)
	}
	fresh, name := greeting(t, p)
	if name != "B" {
		t.Fatalf("connection after SetTarget reached %s, want B", name)
	}
	roundTrip(t, old, "still on A")
	roundTrip(t, fresh, "on B")
	if n := p.Conns(); n != 2 {
		t.Fatalf("Conns = %d, want 2", n)
	}

	// Faults keep applying across targets; Heal keeps the new target.
	p.BlackHole()
	readHangs(t, old)
	readHangs(t, fresh)
	p.Heal()
	if _, name := greeting(t, p); name != "B" {
		t.Fatalf("connection after Heal reached %s, want B", name)
	}
}

func TestSetTargetToDeadAddressClosesNewConnections(t *testing.T) {
	a, _ := namedServer(t, "A")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()

	p := New(t, a)
	old, _ := greeting(t, p)
	p.SetTarget(dead)
	c := dial(t, p)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("read on a connection to a dead target = %d, %v; want EOF", n, err)
	}
	roundTrip(t, old, "old one unaffected")
	p.SetTarget(a)
	if _, name := greeting(t, p); name != "A" {
		t.Fatalf("reached %s after re-pointing back, want A", name)
	}
}

func TestBlackHoleDropsWhatTheClientSends(t *testing.T) {
	a, received := namedServer(t, "A")
	p := New(t, a)
	c, _ := greeting(t, p)
	roundTrip(t, c, "12345")
	before := received()

	p.BlackHole()
	// The client's writes succeed (the proxy's kernel ACKs them) but
	// never reach the target, and no answer comes back.
	for i := 0; i < 10; i++ {
		if _, err := c.Write(make([]byte, 1000)); err != nil {
			t.Fatalf("write into the black hole: %v", err)
		}
	}
	readHangs(t, c)
	p.Heal() // resets c, and the proxy's upstream end
	readResets(t, c)
	if _, name := greeting(t, p); name != "A" {
		t.Fatal("no new connection after Heal")
	}
	if got := received(); got != before {
		t.Fatalf("target received %d bytes sent into the black hole", got-before)
	}
}

// TestSetTargetFlipsPostgresWriter is the DNS flip with real servers: a
// pgx connection made before SetTarget stays on the old server, one made
// after reaches the new one.
func TestSetTargetFlipsPostgresWriter(t *testing.T) {
	oldSrv, newSrv := pgtest.NewServer(t), pgtest.NewServer(t)
	p := New(t, net.JoinHostPort(oldSrv.Host(), strconv.Itoa(oldSrv.Port())))
	via := func(s *pgtest.Server) string {
		u, err := url.Parse(s.AdminURL())
		if err != nil {
			t.Fatal(err)
		}
		u.Host = p.Addr()
		return u.String()
	}
	port := func(c *pgx.Conn) int {
		var port int
		if err := c.QueryRow(context.Background(), "SELECT current_setting('port')::int").Scan(&port); err != nil {
			t.Fatalf("ask the server its port: %v", err)
		}
		return port
	}
	connect := func(dsn string) *pgx.Conn {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatalf("connect through the proxy: %v", err)
		}
		t.Cleanup(func() { c.Close(context.Background()) })
		return c
	}

	before := connect(via(oldSrv))
	p.SetTarget(net.JoinHostPort(newSrv.Host(), strconv.Itoa(newSrv.Port())))
	after := connect(via(newSrv)) // both servers share the superuser password
	if got := port(before); got != oldSrv.Port() {
		t.Errorf("connection made before SetTarget is on port %d, want %d", got, oldSrv.Port())
	}
	if got := port(after); got != newSrv.Port() {
		t.Errorf("connection made after SetTarget is on port %d, want %d", got, newSrv.Port())
	}
}

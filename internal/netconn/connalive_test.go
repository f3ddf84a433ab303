package netconn

import (
	"net"
	"runtime"
	"testing"
	"time"
)

// loopbackPair returns both ends of a real TCP connection on loopback,
// dialled with d and closed when t ends.
func loopbackPair(t *testing.T, d *net.Dialer) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err = d.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// peerHasClosed sees a peer's close (end of stream), and a message waiting
// where an idle connection has none, without consuming it; an idle open
// connection is alive.
func TestPeerHasClosed(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("peeks with Linux's MSG_PEEK|MSG_DONTWAIT")
	}
	client, server := loopbackPair(t, NewDialer(time.Second, 0, 0))
	if peerHasClosed(client) {
		t.Fatal("an idle open connection reported closed")
	}
	if _, err := server.Write([]byte("E")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return peerHasClosed(client) }, "a waiting message")
	b := make([]byte, 1)
	if n, err := client.Read(b); n != 1 || err != nil || b[0] != 'E' {
		t.Fatalf("the peeked byte was consumed: read %d %q, %v", n, b[:n], err)
	}

	client, server = loopbackPair(t, NewDialer(time.Second, 0, 0))
	server.Close()
	waitFor(t, func() bool { return peerHasClosed(client) }, "the peer's close")
}

// waitFor polls cond for a bounded time: the kernel delivers loopback data
// promptly, but a busy machine may delay it.
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("peerHasClosed did not see %s within 5 s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A connection's peeker, made once, looks without allocating, and still
// sees the peer's close.
func TestPeekerLooksWithoutAllocating(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the peek needs Linux")
	}
	client, server := loopbackPair(t, &net.Dialer{})
	p := newPeeker(client)
	if allocs := testing.AllocsPerRun(100, func() {
		if p.hasClosed() {
			t.Fatal("an idle open connection looks closed")
		}
	}); allocs != 0 {
		t.Errorf("%v allocations per look, want 0", allocs)
	}
	server.Close()
	waitFor(t, p.hasClosed, "the peer's close through a kept peeker")
}

package faultproxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gatewaykit/dbmanager/internal/pgtest"
	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// pgtest starts no goroutines of its own, so the leak check holds with
	// the shared PostgreSQL server too; pgtest.Main stops that server.
	goleak.VerifyTestMain(pgtestMain{m})
}

// pgtestMain runs the tests through pgtest.Main for goleak.
type pgtestMain struct{ m *testing.M }

func (p pgtestMain) Run() int { return pgtest.Main(p.m) }

// shortWait is how long a read must hang to count as "nothing arrives".
// Only a lower bound: a slow machine makes the test slower, never wrong.
const shortWait = 100 * time.Millisecond

// echoServer starts a TCP server that echoes every byte back and returns
// its address. Everything it started is stopped by t.Cleanup.
func echoServer(t *testing.T) string {
	return serveTCP(t, func(c net.Conn) { _, _ = io.Copy(c, c) })
}

// serveTCP starts a TCP server on 127.0.0.1 that runs handle on each
// connection (closing it after) and returns its address. t.Cleanup stops
// the listener, closes every connection and waits for every handler.
func serveTCP(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// dial connects to the proxy and closes the connection at cleanup.
func dial(t *testing.T, p *Proxy) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatalf("dial %s: %v", p.Addr(), err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// roundTrip writes msg and expects it echoed back within a generous time.
func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read echo of %q: %v", msg, err)
	}
	if string(got) != msg {
		t.Fatalf("echo = %q, want %q", got, msg)
	}
}

// readHangs writes a byte and asserts that nothing comes back for shortWait.
func readHangs(t *testing.T, c net.Conn) {
	t.Helper()
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatalf("write: %v", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(shortWait))
	n, err := c.Read(make([]byte, 1))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read = %d, %v; want a deadline timeout", n, err)
	}
}

// readResets asserts that the next read on c fails with ECONNRESET.
func readResets(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(make([]byte, 1))
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read = %d, %v; want ECONNRESET", n, err)
	}
}

// eventually polls cond until it holds, failing after a generous bound.
// Used only where the kernel completes a dial before the proxy accepts it.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestForwardsBothWays(t *testing.T) {
	p := New(t, echoServer(t))
	if p.Host() != "127.0.0.1" || p.Port() == 0 || p.Addr() != net.JoinHostPort("127.0.0.1", strconv.Itoa(p.Port())) {
		t.Fatalf("Host/Port/Addr = %q/%d/%q", p.Host(), p.Port(), p.Addr())
	}
	a, b := dial(t, p), dial(t, p)
	roundTrip(t, a, "hello")
	roundTrip(t, b, "world")
	eventually(t, "2 accepted", func() bool { return p.Accepted() == 2 })
	if n := p.Conns(); n != 2 {
		t.Fatalf("Conns = %d, want 2", n)
	}

	// A megabyte both ways at once, and the half-close reaches the server.
	big := make([]byte, 1<<20)
	_, _ = rand.Read(big)
	errc := make(chan error, 1)
	go func() {
		_, err := a.Write(big)
		if err == nil {
			err = a.CloseWrite()
		}
		errc <- err
	}()
	_ = a.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(a) // ends when the echo server sees EOF and closes
	if err != nil || <-errc != nil {
		t.Fatalf("big echo: read err %v", err)
	}
	if !bytes.Equal(got, big) {
		t.Fatalf("big echo: got %d bytes, differ from the %d sent", len(got), len(big))
	}
	eventually(t, "closed conn to leave Conns", func() bool { return p.Conns() == 1 })
}

func TestBlackHoleThenHeal(t *testing.T) {
	p := New(t, echoServer(t))
	old := dial(t, p)
	roundTrip(t, old, "before")

	p.BlackHole()
	readHangs(t, old)
	fresh := dial(t, p) // accepted, never answered
	readHangs(t, fresh)
	eventually(t, "dial during black hole accepted", func() bool { return p.Accepted() == 2 })
	if n := p.Conns(); n != 2 {
		t.Fatalf("Conns during black hole = %d, want 2", n)
	}

	p.Heal()
	readResets(t, old)
	readResets(t, fresh)
	if n := p.Conns(); n != 0 {
		t.Fatalf("Conns after heal = %d, want 0", n)
	}
	roundTrip(t, dial(t, p), "after")
}

func TestResetThenHeal(t *testing.T) {
	p := New(t, echoServer(t))
	old := dial(t, p)
	roundTrip(t, old, "before")

	p.Reset()
	readResets(t, old)
	if n := p.Conns(); n != 0 {
		t.Fatalf("Conns after Reset = %d, want 0", n)
	}
	// A new dial is reset at once: the RST can beat the client's connect.
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("dial while resetting: %v; want ECONNRESET", err)
		}
	} else {
		defer c.Close()
		readResets(t, c)
	}

	p.Heal()
	roundTrip(t, dial(t, p), "after")
}

func TestRefuseThenHealOnSamePort(t *testing.T) {
	p := New(t, echoServer(t))
	port := p.Port()
	open := dial(t, p)
	roundTrip(t, open, "before")

	p.Refuse()
	p.Refuse() // idempotent
	c, err := net.Dial("tcp", p.Addr())
	if !errors.Is(err, syscall.ECONNREFUSED) {
		if c != nil {
			c.Close()
		}
		t.Fatalf("dial while refusing: %v; want ECONNREFUSED", err)
	}
	roundTrip(t, open, "still open") // existing connections are untouched

	p.Heal()
	if p.Port() != port {
		t.Fatalf("port changed from %d to %d", port, p.Port())
	}
	roundTrip(t, dial(t, p), "after")
}

func TestLatencyDelaysEveryChunk(t *testing.T) {
	p := New(t, echoServer(t))
	c := dial(t, p)
	roundTrip(t, c, "warm")

	const d = 50 * time.Millisecond
	p.Latency(d)
	start := time.Now()
	roundTrip(t, c, "slow")
	// Request and echo are each delayed: a lower bound only.
	if took := time.Since(start); took < 2*d {
		t.Fatalf("round trip took %v, want at least %v", took, 2*d)
	}
	p.Latency(0)
	roundTrip(t, c, "fast again")
}

func TestTargetDownClosesClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	target := ln.Addr().String()
	ln.Close() // nothing listens there now
	p := New(t, target)
	c := dial(t, p)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatalf("read = %d, nil; want the connection closed", n)
	}
}

func TestCloseEndsEverythingWithoutLeaks(t *testing.T) {
	target := echoServer(t)
	// The echo server's accept loop ends at cleanup; everything else must
	// be gone when Close returns (goleak retries briefly for the echo
	// server's per-connection goroutines, which end when the proxy closes).
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	p, err := Start(target)
	if err != nil {
		t.Fatal(err)
	}
	fwd := dial(t, p)
	roundTrip(t, fwd, "x")
	p.Latency(time.Hour) // a chunk will be stuck in the latency wait
	if _, err := fwd.Write([]byte("y")); err != nil {
		t.Fatal(err)
	}
	p.BlackHole()
	holed := dial(t, p)
	eventually(t, "accept", func() bool { return p.Accepted() == 2 })
	p.Refuse()

	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for _, c := range []net.Conn{fwd, holed} {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadAll(c); errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatal("connection still open after Close")
		}
	}
	p.Heal() // after Close: does nothing, must not re-listen
	if c, err := net.Dial("tcp", p.Addr()); err == nil {
		c.Close()
		t.Fatal("dial succeeded after Close and Heal")
	}
}

// TestFaultsUnderLoad flips faults while clients talk, for the race
// detector: every call must return and nothing may be left running.
func TestFaultsUnderLoad(t *testing.T) {
	p := New(t, echoServer(t))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 4)
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := net.DialTimeout("tcp", p.Addr(), time.Second)
				if err != nil {
					continue
				}
				_ = c.SetDeadline(time.Now().Add(20 * time.Millisecond))
				_, _ = c.Write([]byte("ping"))
				_, _ = io.ReadFull(c, buf)
				c.Close()
			}
		}()
	}
	faults := []func(){p.BlackHole, p.Heal, p.Reset, p.Heal, p.Refuse, p.Heal,
		func() { p.Latency(time.Millisecond) }, func() { p.Latency(0) }}
	for i := range 200 {
		faults[i%len(faults)]()
		_ = p.Conns()
		_ = p.Accepted()
	}
	close(stop)
	wg.Wait()
	p.Heal()
	roundTrip(t, dial(t, p), "still works")
}

// TestPostgresThroughProxy drives a real PostgreSQL client and server
// through every fault, on a database from internal/pgtest. The bounds are
// generous: they catch hangs, not speed.
func TestPostgresThroughProxy(t *testing.T) {
	cfg, err := pgx.ParseConfig(pgtest.URL(t))
	if err != nil {
		t.Fatalf("parse the test database URL: %v", err) // pgx redacts the password
	}
	if strings.HasPrefix(cfg.Host, "/") {
		t.Skip("the test database is on a unix socket; the proxy needs TCP")
	}
	p := New(t, net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))))
	cfg.Host, cfg.Port, cfg.Fallbacks = p.Host(), uint16(p.Port()), nil
	cfg.ConnectTimeout = 2 * time.Second

	connect := func(t *testing.T) (*pgx.Conn, error) {
		ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
		defer cancel()
		c, err := pgx.ConnectConfig(ctx, cfg)
		if err == nil {
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				_ = c.Close(ctx)
			})
		}
		return c, err
	}
	selectOne := func(c *pgx.Conn, timeout time.Duration) (time.Duration, error) {
		ctx, cancel := context.WithTimeout(t.Context(), timeout)
		defer cancel()
		start := time.Now()
		var one int
		err := c.QueryRow(ctx, "SELECT 1").Scan(&one)
		return time.Since(start), err
	}
	mustConnect := func(t *testing.T) *pgx.Conn {
		c, err := connect(t)
		if err != nil {
			t.Fatalf("connect through proxy: %v", err)
		}
		if _, err := selectOne(c, 5*time.Second); err != nil {
			t.Fatalf("SELECT 1 through proxy: %v", err)
		}
		return c
	}

	conn := mustConnect(t)

	p.BlackHole()
	// pgx answers a cancelled context with a cancel request (black-holed
	// too) and gives up on the connection 1 s later (its DeadlineDelay),
	// so the call ends after deadline+1s; the extra 5 s only absorb a
	// loaded machine, while a hang would still fail.
	const deadline = 200 * time.Millisecond
	took, err := selectOne(conn, deadline)
	if !errors.Is(err, context.DeadlineExceeded) || took > deadline+time.Second+5*time.Second {
		t.Fatalf("query in black hole: %v after %v; want deadline exceeded near %v", err, took, deadline)
	}
	if _, err := connect(t); err == nil {
		t.Fatal("connect during black hole succeeded")
	}

	p.Heal()
	conn = mustConnect(t)

	p.Reset()
	if _, err := selectOne(conn, 5*time.Second); !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("query after Reset: %v; want a reset connection", err)
	}
	p.Heal()
	conn = mustConnect(t)

	p.Refuse()
	if _, err := connect(t); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("connect while refusing: %v; want ECONNREFUSED", err)
	}
	p.Heal()
	mustConnect(t)
}

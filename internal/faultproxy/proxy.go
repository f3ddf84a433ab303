// Package faultproxy is a small in-process TCP proxy that fault tests put
// between a client (such as a PostgreSQL driver) and a real server, to cut,
// stall, refuse or slow the network on demand.
//
// Every fault is applied synchronously: when a method returns, the fault is
// in force for every byte read afterwards. The proxy never sleeps except to
// apply Latency, and Close (or the test's cleanup, with New) leaves no
// goroutine behind.
//
// [Proxy.SetTarget] re-points the listener to another backend, as a DNS
// name flipping to a new writer does: new connections go to the new
// target, open ones stay where they are.
//
// # What the proxy cannot simulate
//
// The proxy is a user-space process on loopback: the client's kernel talks
// TCP to the proxy's kernel, never to the target. So [Proxy.BlackHole]
// makes a silent peer at the application level only: the proxy keeps
// reading (the kernel ACKs every byte) and drops what it reads, and
// nothing comes back. A client's TCP_USER_TIMEOUT therefore does NOT fire
// through the proxy (no data stays unacknowledged), and TCP keepalive
// probes are answered by the proxy's kernel, so keepalives do not fire
// either. What ends a black-holed call is the client's own deadline
// (context, statement or read deadline) or an application-level check. A
// test of TCP_USER_TIMEOUT itself needs packets really dropped (a firewall
// rule), which this package does not do.
package faultproxy

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Proxy forwards TCP connections from a loopback port to a target address
// and injects faults on request. All methods are safe for concurrent use.
type Proxy struct {
	port int
	tb   testing.TB // set by New; receives errors Heal cannot return

	wg sync.WaitGroup // accept loop and per-connection goroutines

	mu        sync.Mutex
	target    string       // where connections accepted now are forwarded
	ln        net.Listener // nil while refused or after Close
	closed    bool
	blackHole bool
	reset     bool
	latency   time.Duration
	accepted  int
	links     map[*link]struct{}
	err       error // first error Heal could not report to tb; returned by Close
}

// New starts a proxy to target ("host:port") listening on 127.0.0.1 with a
// free port, and registers its Close with t.Cleanup. It fails the test at
// once if the proxy cannot listen.
func New(t testing.TB, target string) *Proxy {
	t.Helper()
	p, err := Start(target)
	if err != nil {
		t.Fatalf("faultproxy: %v", err)
	}
	p.tb = t
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("faultproxy: close: %v", err)
		}
	})
	return p
}

// Start is New without a testing.TB: it listens on 127.0.0.1 with a free
// port and forwards to target ("host:port"). The caller must call Close.
func Start(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	p := &Proxy{
		target: target,
		port:   ln.Addr().(*net.TCPAddr).Port,
		ln:     ln,
		links:  make(map[*link]struct{}),
	}
	p.wg.Add(1)
	go p.acceptLoop(ln)
	return p, nil
}

// Addr returns the address clients dial, "127.0.0.1:port". It stays the
// same for the proxy's whole life, including across Refuse and Heal.
func (p *Proxy) Addr() string { return net.JoinHostPort(p.Host(), strconv.Itoa(p.port)) }

// Host returns the host clients dial: always "127.0.0.1".
func (p *Proxy) Host() string { return "127.0.0.1" }

// Port returns the port clients dial; it never changes.
func (p *Proxy) Port() int { return p.port }

// SetTarget re-points the proxy: connections accepted from now on are
// forwarded to addr ("host:port"); connections already open stay on the
// old target (like a DNS flip to a new writer, which clients only see when
// they connect again). It does not change any fault in force. (The kernel
// completes a dial before the proxy accepts it, so a dial racing with
// SetTarget may go either way; one that has exchanged data has been
// accepted.)
func (p *Proxy) SetTarget(addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.target = addr
}

// Target returns the address new connections are forwarded to.
func (p *Proxy) Target() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.target
}

// BlackHole makes the network a partition: existing and new connections
// stay open but no byte passes in either direction (bytes sent are read
// by the proxy and dropped, so the target never sees them; reads hang).
// New dials are accepted and then get nothing. Connections black-holed
// this way are reset by Heal. BlackHole ends a Reset fault. The client's
// kernel still gets every byte ACKed and keepalive probes answered, so
// only the client's deadlines end its calls (see the package doc).
func (p *Proxy) BlackHole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.blackHole, p.reset = true, false
	for l := range p.links {
		l.holed.Store(true)
	}
}

// Reset sends a TCP RST on every open connection now (to the client and to
// the target) and resets every new connection as soon as it is accepted,
// until Heal. Reset ends a BlackHole fault.
func (p *Proxy) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.blackHole, p.reset = false, true
	for l := range p.links {
		p.cutLocked(l, true)
	}
}

// Refuse closes the listening socket so new dials fail with ECONNREFUSED.
// Open connections are left as they are (call Reset first to cut them too).
// Heal listens again on the same port.
func (p *Proxy) Refuse() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close() // the accept loop sees the error and returns
		p.ln = nil
	}
}

// Latency delays every chunk forwarded in either direction by d, on open
// and new connections, until it is called again (0 turns it off). Heal does
// not change it.
func (p *Proxy) Latency(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.latency = d
}

// Heal ends BlackHole, Reset and Refuse: new connections are forwarded
// normally again and the proxy listens again on the same port. Connections
// that were black-holed are reset, as their TCP state after a real
// partition would be stale. If the port cannot be bound again, Heal reports
// it to the test (New) or returns it from Close (Start).
func (p *Proxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.blackHole, p.reset = false, false
	for l := range p.links {
		if l.holed.Load() {
			p.cutLocked(l, true)
		}
	}
	if p.ln == nil {
		ln, err := net.Listen("tcp", p.Addr())
		if err != nil {
			err = fmt.Errorf("heal: listen again on %s: %w", p.Addr(), err)
			if p.tb != nil {
				p.tb.Errorf("faultproxy: %v", err)
			} else if p.err == nil {
				p.err = err
			}
			return
		}
		p.ln = ln
		p.wg.Add(1)
		go p.acceptLoop(ln)
	}
}

// Conns returns how many proxied connections are open now (counting
// black-holed ones). A connection leaves the count when the proxy cuts it,
// or shortly after either end closes it.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.links)
}

// Accepted returns how many connections the proxy has accepted so far,
// including those it reset or black-holed at once.
func (p *Proxy) Accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}

// Close stops listening, closes every connection and waits until all of
// the proxy's goroutines have returned. It returns an error Heal could not
// report. Calling Close again does nothing and returns nil.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for l := range p.links {
		p.cutLocked(l, false)
	}
	err := p.err
	p.mu.Unlock()
	p.wg.Wait()
	return err
}

// acceptLoop accepts connections on ln until ln is closed.
func (p *Proxy) acceptLoop(ln net.Listener) {
	defer p.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return // closed by Refuse or Close; other errors also end the loop
		}
		p.admit(c.(*net.TCPConn))
	}
}

// admit decides the fate of a just-accepted connection under the current
// faults and starts serving it.
func (p *Proxy) admit(c *net.TCPConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.accepted++
	if p.closed {
		c.Close()
		return
	}
	if p.reset {
		rst(c)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &link{client: c, target: p.target, ctx: ctx, cancel: cancel}
	l.holed.Store(p.blackHole)
	p.links[l] = struct{}{}
	p.wg.Add(1)
	go p.serve(l)
}

// cutLocked removes l from the open set and closes both of its ends, with
// an RST when rst is set. p.mu must be held.
func (p *Proxy) cutLocked(l *link, rst bool) {
	delete(p.links, l)
	l.close(rst)
}

// drop removes l from the open set and closes it normally.
func (p *Proxy) drop(l *link) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cutLocked(l, false)
}

// currentLatency returns the delay to apply to the next chunk.
func (p *Proxy) currentLatency() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.latency
}

package faultproxy

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// link is one proxied connection: the accepted client end and, once
// dialled, the upstream end to the target.
type link struct {
	client *net.TCPConn
	target string          // chosen when accepted; SetTarget does not move it
	ctx    context.Context // cancelled when the link is closed
	cancel context.CancelFunc
	holed  atomic.Bool // black-holed: every chunk read is dropped

	mu       sync.Mutex
	upstream *net.TCPConn
	closed   bool
	rst      bool // how the link was closed; an upstream attached late gets the same
}

// close closes both ends once, with an RST when rst is set.
func (l *link) close(rst bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	l.closed, l.rst = true, rst
	l.cancel()
	closeConn(l.client, rst)
	if l.upstream != nil {
		closeConn(l.upstream, rst)
	}
}

// attach records the upstream end; it reports false (and closes up) if
// the link was closed while dialling.
func (l *link) attach(up *net.TCPConn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		closeConn(up, l.rst)
		return false
	}
	l.upstream = up
	return true
}

// serve dials the target for l and forwards both directions until the link
// ends. A link black-holed at accept time never dials and only drains the
// client.
func (p *Proxy) serve(l *link) {
	defer p.wg.Done()
	defer p.drop(l)
	if l.holed.Load() {
		p.forward(l, nil, l.client)
		return
	}
	var d net.Dialer
	c, err := d.DialContext(l.ctx, "tcp", l.target)
	if err != nil {
		return // target down or link cut while dialling: the client sees a close
	}
	up := c.(*net.TCPConn)
	if !l.attach(up) {
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.forward(l, up, l.client)
	}()
	p.forward(l, l.client, up)
	<-done
}

// forward copies chunks from src to dst (dst nil: drop them), applying
// latency and dropping chunks while l is black-holed. At EOF it
// half-closes dst so the peer sees the end; on any other error it closes
// the whole link.
func (p *Proxy) forward(l *link, dst, src *net.TCPConn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if d := p.currentLatency(); d > 0 && !sleep(l.ctx, d) {
				return
			}
			if dst != nil && !l.holed.Load() {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					l.close(false)
					return
				}
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) && dst != nil && !l.holed.Load() {
				_ = dst.CloseWrite()
				return
			}
			l.close(false)
			return
		}
	}
}

// sleep waits d or until ctx ends; it reports whether the full d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// closeConn closes c, first setting SO_LINGER to 0 when rst is set so the
// kernel sends an RST instead of a FIN.
func closeConn(c *net.TCPConn, rst bool) {
	if rst {
		_ = c.SetLinger(0)
	}
	_ = c.Close()
}

// rst resets c at once.
func rst(c *net.TCPConn) { closeConn(c, true) }

package dbmanager

import (
	"context"
	"log/slog"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/gatewaykit/dbmanager/internal/telemetry"
)

// Why a connection was closed (attribute dbmanager.close.reason).
const (
	closeLifetime = "lifetime"  // older than DB_POOL_RECYCLE
	closeIdle     = "idle"      // idle longer than the pool's MaxConnIdleTime
	closeDeadPeer = "dead_peer" // the server had already closed it (found on acquire, internal/netconn)
	closeReadOnly = "read_only" // found on a read-only node
	closeOverflow = "overflow"  // released while the pool already kept enough idle ones
	closeShutdown = "shutdown"  // the pool was closed
	closeBroken   = "broken"    // a failed ping or statement broke it
)

// connStatsKey is the key of a connection's bookkeeping in its
// pgconn.PgConn.CustomData.
const connStatsKey = "dbmanager.telemetry"

// connStats is what the pool's tracer knows about one connection. A
// connection is used by one goroutine at a time and the pool's own lock
// orders its hand-overs; the mutex covers the leak timer, which runs on
// a goroutine of its own.
type connStats struct {
	created time.Time

	mu       sync.Mutex
	since    time.Time // acquired at; zero while idle
	idleFrom time.Time // released at
	reason   string    // set by markClose
	leak     *leakWatch
}

func statsOf(c *pgx.Conn) *connStats {
	if c == nil {
		return nil
	}
	cs, _ := c.PgConn().CustomData()[connStatsKey].(*connStats)
	return cs
}

// markClose records why the library is about to close c, for
// dbmanager.connections.closed. Call it before returning false from a pool
// hook (PrepareConn, AfterRelease) that makes the pool close c. It does
// nothing on a pool without the Manager's telemetry.
func markClose(c *pgx.Conn, reason string) {
	if c != nil {
		markPgClose(c.PgConn(), reason)
	}
}

// markPgClose is markClose for hooks that see only the *pgconn.PgConn
// (OnPgError).
func markPgClose(c *pgconn.PgConn, reason string) {
	if c == nil {
		return
	}
	if cs, _ := c.CustomData()[connStatsKey].(*connStats); cs != nil {
		cs.mu.Lock()
		cs.reason = reason
		cs.mu.Unlock()
	}
}

func (cs *connStats) acquired(now time.Time) {
	cs.mu.Lock()
	cs.since = now
	cs.mu.Unlock()
}

// released ends a use and returns when it began.
func (cs *connStats) released(now time.Time) (time.Time, bool) {
	cs.mu.Lock()
	since, w := cs.since, cs.leak
	cs.since, cs.idleFrom, cs.leak = time.Time{}, now, nil
	cs.mu.Unlock()
	if w != nil {
		w.returned(now)
	}
	return since, !since.IsZero()
}

// connClosed counts c as closed, with the reason a hook marked, or else
// the one its age and idle time give.
func (pt *poolTelemetry) connClosed(c *pgx.Conn) {
	reason := closeBroken
	if cs := statsOf(c); cs != nil {
		now := time.Now()
		cs.mu.Lock()
		marked, idleFrom := cs.reason, cs.idleFrom
		cs.mu.Unlock()
		switch {
		case marked != "":
			reason = marked
		case pt.closing.Load():
			reason = closeShutdown
		case pt.lifetime > 0 && now.Sub(cs.created) >= pt.lifetime:
			reason = closeLifetime
		case pt.idleTime > 0 && !idleFrom.IsZero() && now.Sub(idleFrom) >= pt.idleTime:
			reason = closeIdle
		}
	} else if pt.closing.Load() {
		reason = closeShutdown
	}
	pt.t.inst.ConnectionsClosed.Add(context.Background(), 1, metric.WithAttributes(
		telemetry.PoolName(pt.name), attribute.String(telemetry.AttrCloseReason, reason)))
}

// Leak detection (DB_LEAK_DETECTION_MS).

// leakWatch is one connection taken by the caller, watched for being held
// too long.
type leakWatch struct {
	pt    *poolTelemetry
	taken time.Time
	pcs   []uintptr // the stack that took it

	mu       sync.Mutex
	timer    *time.Timer
	reported bool // the WARN was logged
	back     bool // the connection came back
}

// maxLeakFrames bounds the stack captured with each watched acquire.
const maxLeakFrames = 32

// watchLeak starts watching the connection the caller just took. The
// stack is captured here, only when leak detection is on.
func (cs *connStats) watchLeak(pt *poolTelemetry, now time.Time) {
	pcs := make([]uintptr, maxLeakFrames)
	n := runtime.Callers(3, pcs)
	w := &leakWatch{pt: pt, taken: now, pcs: pcs[:n]}
	w.mu.Lock()
	w.timer = time.AfterFunc(pt.t.leak, w.expired)
	w.mu.Unlock()
	cs.mu.Lock()
	cs.leak = w
	cs.mu.Unlock()
}

// expired logs the leak once, with the stack that took the connection.
func (w *leakWatch) expired() {
	w.mu.Lock()
	if w.back {
		w.mu.Unlock()
		return
	}
	w.reported = true
	w.mu.Unlock()
	w.pt.t.inst.ConnectionLeaks.Add(context.Background(), 1, metric.WithAttributeSet(w.pt.poolSet))
	w.pt.t.log.Warn("Connection held longer than DB_LEAK_DETECTION_MS; possible leak",
		slog.String("pool", w.pt.name),
		slog.Duration("held", time.Since(w.taken).Round(time.Millisecond)),
		slog.Duration("threshold", w.pt.t.leak),
		slog.String("stack", formatStack(w.pcs)))
}

// returned ends the watch; a connection reported as leaked is logged
// once more, at INFO.
func (w *leakWatch) returned(now time.Time) {
	w.mu.Lock()
	w.back = true
	reported := w.reported
	w.timer.Stop()
	w.mu.Unlock()
	if reported {
		w.pt.t.log.Info("Leaked connection returned to the pool",
			slog.String("pool", w.pt.name),
			slog.Duration("held", now.Sub(w.taken).Round(time.Millisecond)))
	}
}

// formatStack prints the caller's frames, one "function file:line" per
// line, leaving out pgx's and this tracer's own frames.
func formatStack(pcs []uintptr) string {
	var b strings.Builder
	frames := runtime.CallersFrames(pcs)
	for {
		f, more := frames.Next()
		if !strings.HasPrefix(f.Function, "github.com/jackc/pgx/") && !strings.Contains(f.Function, "dbmanager.(*poolTelemetry)") {
			if b.Len() > 0 {
				b.WriteByte('\n')
			}
			b.WriteString(f.Function + " " + f.File + ":" + strconv.Itoa(f.Line))
		}
		if !more {
			return b.String()
		}
	}
}

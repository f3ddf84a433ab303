package dbmanager

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/jackc/pgx/v5"
)

// startRecovery serves from memory because the primary is unreachable
// (reason) and starts the loop that moves back to it. It reports false if
// the Manager was closed meanwhile.
func (m *Manager) startRecovery(reason string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false
	}
	m.mode, m.fallbackReason = modeFallback, reason
	m.router.switchTo(m.mem, false)
	m.wg.Add(1)
	go m.recover(m.bg, time.Now())
	return true
}

// recover retries the primary with exponential backoff and jitter until it
// answers, then moves the records written to memory meanwhile to it and
// switches the Store over. It ends early when the Manager closes.
func (m *Manager) recover(ctx context.Context, since time.Time) {
	defer m.wg.Done()
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = m.opts.retryInitial
	b.MaxInterval = m.opts.retryMax
	b.RandomizationFactor = 0.5
	b.Multiplier = 2
	b.Reset()
	mv := newMove()
	for attempt := 1; ; attempt++ {
		// Jitter spreads the waits of many processes; the cap stays a cap.
		t := time.NewTimer(min(b.NextBackOff(), m.opts.retryMax))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		actx, at := m.tel.startAttempt(ctx, attempt)
		cctx, cancel := context.WithTimeout(actx, m.cfg.ConnectTimeout)
		p, err := m.connectPrimary(cctx)
		cancel()
		if err != nil {
			at.failed(ctx, err)
			m.noteRecoveryFailure(attempt, err)
			continue
		}
		answered := time.Now()
		mctx, span, moveStart := at.moveSpan(actx)
		err = mv.run(mctx, &m.router.gate, m.mem, p.store, func() bool { return m.promoted(p, mv) })
		at.moved(ctx, span, moveStart, err, len(mv.owned), len(mv.conflicts))
		if err != nil {
			p.close()
			if ctx.Err() != nil || errors.Is(err, ErrClosed) {
				return
			}
			m.log.Warn("Moving back to the primary database failed; will retry", slog.String("reason", errorText(err)))
			continue
		}
		m.log.Info("Primary database recovered",
			slog.Any("target", p.target), slog.Any("tls", p.tlsInfo()),
			slog.Int("records_moved", len(mv.owned)),
			slog.Int("conflicts", len(mv.conflicts)),
			slog.Duration("outage", answered.Sub(since).Round(time.Millisecond)),
			slog.Duration("move_took", time.Since(answered).Round(time.Millisecond)),
			slog.Int("attempts", attempt))
		m.reportConflicts(ctx, mv)
		m.analyzeAfterMove(ctx, p, len(mv.owned))
		return
	}
}

// A move that wrote at least analyzeAfterMoved records is followed by an
// ANALYZE of the table, bounded by analyzeTimeout.
const (
	analyzeAfterMoved = 1000
	analyzeTimeout    = time.Minute
)

// analyzeAfterMove refreshes the planner's statistics once a move has
// written many rows at once, instead of leaving that to autovacuum, which
// may take minutes to notice. The Store's own statements do not need it
// (their plans are the same with or without statistics, see pgsql.ListQuery),
// but a caller's own SQL on the table might. It runs after the switch, on
// the recovery goroutine, so no call waits for it; ANALYZE takes a lock
// that blocks no read or write, only other maintenance and DDL on the
// table. It is bounded by analyzeTimeout and by Close; a failure (a
// timeout, or a role that may not analyse the table, which PostgreSQL
// only warns about) changes nothing but the statistics, and is logged.
func (m *Manager) analyzeAfterMove(ctx context.Context, p *primary, moved int) {
	if moved < analyzeAfterMoved {
		return
	}
	actx, cancel := context.WithTimeout(ctx, analyzeTimeout)
	defer cancel()
	start := time.Now()
	if _, err := p.pool.Exec(actx, p.store.pg.sql.Analyze, pgx.QueryExecModeSimpleProtocol); err != nil {
		if ctx.Err() == nil {
			m.log.Warn("Analyzing the table after the move failed; autovacuum will do it later",
				slog.String("reason", errorText(err)))
		}
		return
	}
	m.log.Debug("Analyzed the table after the move", slog.Int("records_moved", moved),
		slog.Duration("took", time.Since(start).Round(time.Millisecond)))
}

// noteRecoveryFailure logs a failed attempt to reach the primary: the
// first few at Info, then every tenth, so a long outage does not flood the
// log.
func (m *Manager) noteRecoveryFailure(attempt int, err error) {
	if attempt <= 3 || attempt%10 == 0 {
		m.log.Info("Primary database still unavailable; serving from in-memory storage",
			slog.Int("attempt", attempt), slog.String("reason", errorText(err)))
	}
	m.mu.Lock()
	m.fallbackReason = errorText(err)
	m.mu.Unlock()
}

// promoted routes the Store to p at the end of a move, with writes held,
// and records it. It reports false if the Manager was closed meanwhile
// (the router then already answers ErrClosed).
func (m *Manager) promoted(p *primary, mv *move) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false
	}
	m.router.switchTo(p.store, true)
	p.replicas.start(m.bg) // its position is unknown until learned: the move is covered
	m.mode, m.primary, m.fallbackReason = modePrimary, p, ""
	m.recovery.recoveries++
	m.recovery.moved += len(mv.owned)
	m.recovery.conflicts += len(mv.conflicts)
	m.mem = NewMemStore() // what it held is in PostgreSQL now
	return true
}

// reportConflicts logs each conflict (keys and versions, never values)
// and hands it to the OnConflict hook.
func (m *Manager) reportConflicts(ctx context.Context, mv *move) {
	for _, c := range mv.conflicts {
		m.log.Warn("Record written during the outage conflicts with the primary database; the primary's record was kept",
			slog.String("collection", c.Collection), slog.String("key", c.Key),
			slog.Int64("memory_version", c.Memory.Version), slog.Int64("kept_version", c.Primary.Version))
		if m.opts.onConflict != nil {
			m.opts.onConflict(ctx, c)
		}
	}
}

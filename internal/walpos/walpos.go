// Package walpos keeps the Manager's read-your-writes bound: the writer's
// WAL position after the latest write this process acknowledged. A
// replica serves a read only once it has replayed at least that far.
//
// Each Store write learns the position exactly, in the write's own round
// trip (the root's writeTracked) and raises it with Advance. When it
// cannot (the connection broke after the statement was sent, so the write
// may have committed; or the Store just started on a writer that a move
// filled), MarkUnknown makes the position unknown: reads go to the writer
// until the learner has asked the writer for its current position, which
// covers everything committed before, and reported it with LearnedAt.
package walpos

import "sync/atomic"

// Position is the bound. Its methods are safe for concurrent use.
type Position struct {
	lsn atomic.Uint64 // the largest position acknowledged
	// unknown counts the events that made the position unknown; learned
	// is the value of unknown that the last LearnedAt covered. The
	// position is known when they are equal.
	unknown atomic.Uint64
	learned atomic.Uint64
	wake    chan struct{} // asks the learner to run (buffered, 1)
}

// New returns a position that is unknown until the writer's is learned:
// a Store that starts (or moves back from memory) has not seen the writes
// already on the writer.
func New() *Position {
	w := &Position{wake: make(chan struct{}, 1)}
	w.MarkUnknown()
	return w
}

// Advance raises the position to lsn (it never goes down).
func (w *Position) Advance(lsn uint64) {
	for {
		cur := w.lsn.Load()
		if lsn <= cur || w.lsn.CompareAndSwap(cur, lsn) {
			return
		}
	}
}

// MarkUnknown records that a write's position could not be learned and
// wakes the learner.
func (w *Position) MarkUnknown() {
	w.unknown.Add(1)
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Wake receives when the position became unknown since the learner last
// looked (at most one wake-up is kept).
func (w *Position) Wake() <-chan struct{} { return w.wake }

// Current returns the position and whether it is known. An unknown
// position sends every read to the writer.
func (w *Position) Current() (lsn uint64, known bool) {
	gen := w.unknown.Load()
	known = w.learned.Load() >= gen // before lsn: LearnedAt advances lsn first
	return w.lsn.Load(), known
}

// Pending returns the unknown-count a learner starting now would cover,
// and whether there is anything to learn.
func (w *Position) Pending() (gen uint64, due bool) {
	gen = w.unknown.Load()
	return gen, w.learned.Load() < gen
}

// LearnedAt records that the writer was at writerLSN after the events
// counted up to gen (from Pending).
func (w *Position) LearnedAt(gen, writerLSN uint64) {
	w.Advance(writerLSN)
	for {
		cur := w.learned.Load()
		if gen <= cur || w.learned.CompareAndSwap(cur, gen) {
			return
		}
	}
}

// The statements that read the two positions the read-your-writes rule
// compares, as int8 byte offsets: the writer's (after a write, in the
// same round trip: internal/pgpipe's Run) and a replica's. pg_current_wal_insert_lsn() includes every WAL record already
// inserted, committed or not, so read after a commit it is at or past the
// end of that commit record. pg_last_wal_replay_lsn() is the end of the
// last record a standby replayed, NULL on a node that is not in recovery.
// The comparison errs on the safe side only: an insert position read just
// after a page header is past a replay position at the page boundary
// before it, so that replica waits for the next record.
const (
	WriterPositionSQL = `SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::int8`
	ReplayPositionSQL = `SELECT (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::int8`
)

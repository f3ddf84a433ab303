package dbmanager

import "sync/atomic"

// walPosition is the Manager's read-your-writes bound: the writer's WAL
// position after the latest write this process acknowledged. A replica
// serves a read only once it has replayed at least that far.
//
// Each Store write learns the position exactly, in the write's own round
// trip (see writeTracked). When it cannot (the connection broke after the
// statement was sent, so the write may have committed; or the Store just
// started on a writer that a move filled), the position is unknown: reads
// go to the writer until learnWriter has asked the writer for its current
// position, which covers everything committed before.
type walPosition struct {
	lsn atomic.Uint64 // the largest position acknowledged
	// unknown counts the events that made the position unknown; learned
	// is the value of unknown that the last learnWriter covered. The
	// position is known when they are equal.
	unknown atomic.Uint64
	learned atomic.Uint64
	wake    chan struct{} // asks the learner to run (buffered, 1)
}

// newWALPosition returns a position that is unknown until the writer's is
// learned: a Store that starts (or moves back from memory) has not seen
// the writes already on the writer.
func newWALPosition() *walPosition {
	w := &walPosition{wake: make(chan struct{}, 1)}
	w.markUnknown()
	return w
}

// advance raises the position to lsn (it never goes down).
func (w *walPosition) advance(lsn uint64) {
	for {
		cur := w.lsn.Load()
		if lsn <= cur || w.lsn.CompareAndSwap(cur, lsn) {
			return
		}
	}
}

// markUnknown records that a write's position could not be learned and
// wakes the learner.
func (w *walPosition) markUnknown() {
	w.unknown.Add(1)
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// current returns the position and whether it is known. An unknown
// position sends every read to the writer.
func (w *walPosition) current() (lsn uint64, known bool) {
	gen := w.unknown.Load()
	known = w.learned.Load() >= gen // before lsn: learnedAt advances lsn first
	return w.lsn.Load(), known
}

// pending returns the unknown-count a learnWriter starting now would
// cover, and whether there is anything to learn.
func (w *walPosition) pending() (gen uint64, due bool) {
	gen = w.unknown.Load()
	return gen, w.learned.Load() < gen
}

// learnedAt records that the writer was at writerLSN after the events
// counted up to gen.
func (w *walPosition) learnedAt(gen, writerLSN uint64) {
	w.advance(writerLSN)
	for {
		cur := w.learned.Load()
		if gen <= cur || w.learned.CompareAndSwap(cur, gen) {
			return
		}
	}
}

package dbmanager

import (
	"context"
	"fmt"
	"github.com/gatewaykit/dbmanager/internal/writegate"
)

// recordKey names a record across backends.
type recordKey struct{ collection, key string }

func keyOf(r Record) recordKey { return recordKey{r.Collection, r.Key} }

// Conflict is a record written to memory during an outage whose key
// PostgreSQL also held, with other content, when the Manager moved back to
// it. PostgreSQL's record wins: it is kept, and its version is raised above
// every version the memory store handed out for the key, so that a caller
// holding a version from the outage can never match it by accident. The
// memory record is handed to the OnConflict hook and then dropped.
type Conflict struct {
	Collection string
	Key        string
	// Memory is the record as the memory store last held it.
	Memory Record
	// Primary is the record PostgreSQL kept, with its raised version.
	Primary Record
}

// importOutcome is what PostgreSQL made of one imported memory record.
type importOutcome struct {
	version  int64  // the record's version in PostgreSQL afterwards
	conflict bool   // PostgreSQL kept its own, different record
	primary  Record // when conflict: the record PostgreSQL kept
}

// recordImporter is the part of PGStore the move needs (pgimport.go).
type recordImporter interface {
	// importRecords writes memory records into PostgreSQL, one outcome per
	// record. owned maps keys the move itself wrote earlier to the
	// version it left there: such a row is overwritten, not a conflict.
	importRecords(ctx context.Context, recs []Record, owned map[recordKey]int64) ([]importOutcome, error)
	// deleteOwned deletes rows the move wrote, if they still have the
	// version it left there.
	deleteOwned(ctx context.Context, keys map[recordKey]int64) error
}

// move copies what the memory store holds into PostgreSQL and switches the
// router to PostgreSQL, losing no acknowledged write. It runs in two
// phases: first a copy of everything while writes go on, then, with writes
// held at the gate, a copy of what changed meanwhile and the switch. Its
// state survives a failed attempt, so a retry does not mistake its own
// earlier writes for conflicts.
type move struct {
	owned     map[recordKey]int64    // keys this move wrote, and the PostgreSQL version it left
	copied    map[recordKey]int64    // memory version last copied, per key
	conflicts map[recordKey]Conflict // keys where PostgreSQL kept its own record
}

func newMove() *move {
	return &move{owned: map[recordKey]int64{}, copied: map[recordKey]int64{}, conflicts: map[recordKey]Conflict{}}
}

// importBatch is how many records go to PostgreSQL in one round trip.
const importBatch = 500

// copyChanged imports the records in recs that changed since they were
// last copied.
func (mv *move) copyChanged(ctx context.Context, pg recordImporter, recs []Record) error {
	changed := recs[:0:0]
	for _, r := range recs {
		if v, ok := mv.copied[keyOf(r)]; !ok || v != r.Version {
			changed = append(changed, r)
		}
	}
	for start := 0; start < len(changed); start += importBatch {
		batch := changed[start:min(start+importBatch, len(changed))]
		outcomes, err := pg.importRecords(ctx, batch, mv.owned)
		if err != nil {
			return err
		}
		for i, o := range outcomes {
			r, k := batch[i], keyOf(batch[i])
			mv.copied[k] = r.Version
			if o.conflict {
				delete(mv.owned, k)
				mv.conflicts[k] = Conflict{Collection: r.Collection, Key: r.Key, Memory: r, Primary: o.primary}
			} else {
				mv.owned[k] = o.version
				delete(mv.conflicts, k)
			}
		}
	}
	return nil
}

// dropDeleted deletes from PostgreSQL the keys this move wrote that the
// memory store no longer holds (deleted during the move).
func (mv *move) dropDeleted(ctx context.Context, pg recordImporter, recs []Record) error {
	present := make(map[recordKey]bool, len(recs))
	for _, r := range recs {
		present[keyOf(r)] = true
	}
	gone := map[recordKey]int64{}
	for k := range mv.copied {
		if present[k] {
			continue
		}
		if v, ok := mv.owned[k]; ok {
			gone[k] = v
		}
		delete(mv.copied, k)
		delete(mv.owned, k)
	}
	if len(gone) == 0 {
		return nil
	}
	return pg.deleteOwned(ctx, gone)
}

// run performs the move from mem to pg. switchOver is called with writes
// held, after the last copy; it routes the Store to PostgreSQL and reports
// false if that must not happen (the Manager closed), which fails the
// move. On failure the Store still serves mem and the move can be run
// again.
func (mv *move) run(ctx context.Context, gate *writegate.Gate, mem *MemStore, pg recordImporter, switchOver func() bool) error {
	if err := mv.copyChanged(ctx, pg, mem.snapshot()); err != nil {
		return fmt.Errorf("copy records written during the outage: %w", err)
	}
	if err := gate.Close(ctx); err != nil {
		return err
	}
	defer gate.Open()
	recs := mem.snapshot()
	if err := mv.copyChanged(ctx, pg, recs); err != nil {
		return fmt.Errorf("copy records written during the move: %w", err)
	}
	if err := mv.dropDeleted(ctx, pg, recs); err != nil {
		return fmt.Errorf("delete records removed during the move: %w", err)
	}
	if !switchOver() {
		return ErrClosed
	}
	return nil
}

package dbmanager

import (
	"context"
	"fmt"
	"hash/maphash"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidwall/btree"
)

// MemStore is a Store that keeps everything in memory. Its contents are
// lost when the process ends. It is the fallback the Manager serves from
// while PostgreSQL is unreachable, and a fast, dependency-free Store for
// unit tests. Create it with NewMemStore; the zero value is not usable.
type MemStore struct {
	checkedStore
	mem *memBackend
}

// NewMemStore returns an empty in-memory Store.
func NewMemStore() *MemStore {
	m := &memBackend{now: time.Now, seed: maphash.MakeSeed()}
	return &MemStore{checkedStore: checkedStore{b: m}, mem: m}
}

// memBackend is MemStore's storage: one memCollection per collection name.
// Collections are few and rarely created, so they live in a map that is
// replaced, never changed: finding one takes no lock.
type memBackend struct {
	collections atomic.Pointer[map[string]*memCollection]
	createMu    sync.Mutex // serialises creating collections
	now         func() time.Time
	seed        maphash.Seed
}

// memShards is how many independently locked parts a collection's records
// are spread over, so that calls on different keys rarely wait for each
// other (a single lock is what the benchmark baseline uses).
const memShards = 32

// memCollection holds one collection's records. Point reads and writes go
// to one shard, a hash map under its own lock. The ordered key set serves
// List, so a page costs O(log n + limit) instead of a sort of the whole
// collection; it changes only when a key is created or deleted.
//
// Lock order: order, then a shard. A stored Record is never modified in
// place (a write replaces it), so readers may use what they found after
// releasing a lock.
type memCollection struct {
	order  sync.RWMutex
	keys   btree.Set[string]
	shards [memShards]memShard
}

type memShard struct {
	mu      sync.RWMutex
	records map[string]Record
	_       [32]byte // keep shards on separate cache lines
}

// collection returns the named collection, creating it if create is set.
func (m *memBackend) collection(name string, create bool) *memCollection {
	if all := m.collections.Load(); all != nil {
		if c, ok := (*all)[name]; ok {
			return c
		}
	}
	if !create {
		return nil
	}
	m.createMu.Lock()
	defer m.createMu.Unlock()
	old := m.collections.Load()
	if old != nil {
		if c, ok := (*old)[name]; ok {
			return c
		}
	}
	all := make(map[string]*memCollection, 1)
	if old != nil {
		maps.Copy(all, *old)
	}
	c := &memCollection{}
	for i := range c.shards {
		c.shards[i].records = make(map[string]Record)
	}
	all[name] = c
	m.collections.Store(&all)
	return c
}

// all returns every collection.
func (m *memBackend) all() map[string]*memCollection {
	if all := m.collections.Load(); all != nil {
		return *all
	}
	return nil
}

func (m *memBackend) shard(c *memCollection, key string) *memShard {
	return &c.shards[maphash.String(m.seed, key)%memShards]
}

func (m *memBackend) get(_ context.Context, collection, key string) (Record, error) {
	c := m.collection(collection, false)
	if c == nil {
		return Record{}, ErrNotFound
	}
	s := m.shard(c, key)
	s.mu.RLock()
	r, ok := s.records[key]
	s.mu.RUnlock()
	if !ok {
		return Record{}, ErrNotFound
	}
	return r, nil
}

func (m *memBackend) put(_ context.Context, collection, key string, value []byte, cond writeConditions) (Record, error) {
	c := m.collection(collection, true)
	s := m.shard(c, key)
	now := normalizeTime(m.now()) // store keeps UpdatedAt from going back
	s.mu.Lock()
	old, exists := s.records[key]
	if exists || cond.versionSet {
		// Replacing a key, or failing: the key set does not change.
		defer s.mu.Unlock()
		if err := checkCondition(cond, old.Version, exists); err != nil {
			return Record{}, err
		}
		return m.store(s, collection, key, value, old, exists, now), nil
	}
	// A new key: take the order lock first, as the lock order requires,
	// and look again.
	s.mu.Unlock()
	c.order.Lock()
	defer c.order.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	old, exists = s.records[key]
	if err := checkCondition(cond, old.Version, exists); err != nil {
		return Record{}, err
	}
	if !exists {
		c.keys.Insert(key)
	}
	return m.store(s, collection, key, value, old, exists, now), nil
}

// store writes the new record for key into s, whose lock the caller holds.
// The record is stamped now, or with the old UpdatedAt if the wall clock
// went back or a concurrent writer stamped later.
func (m *memBackend) store(s *memShard, collection, key string, value []byte, old Record, exists bool, now time.Time) Record {
	r := Record{Collection: collection, Key: key, Value: value, Version: 1, CreatedAt: now, UpdatedAt: now}
	if exists {
		r.Version = old.Version + 1
		r.CreatedAt = old.CreatedAt
		if now.Before(old.UpdatedAt) {
			r.UpdatedAt = old.UpdatedAt
		}
	}
	s.records[key] = r
	return r
}

func (m *memBackend) delete(_ context.Context, collection, key string, cond writeConditions) error {
	c := m.collection(collection, false)
	if c == nil {
		return checkDeleteMissing(cond)
	}
	c.order.Lock()
	defer c.order.Unlock()
	s := m.shard(c, key)
	s.mu.Lock()
	defer s.mu.Unlock()
	old, exists := s.records[key]
	if !exists {
		return checkDeleteMissing(cond)
	}
	if err := checkCondition(cond, old.Version, true); err != nil {
		return err
	}
	delete(s.records, key)
	c.keys.Delete(key)
	return nil
}

func (m *memBackend) list(_ context.Context, collection string, opts ListOptions) ([]Record, bool, error) {
	c := m.collection(collection, false)
	if c == nil {
		return nil, false, nil
	}
	start := max(opts.After, opts.Prefix)
	records := make([]Record, 0, min(opts.Limit, 64))
	more := false
	c.order.RLock()
	defer c.order.RUnlock()
	c.keys.Ascend(start, func(key string) bool {
		if key == opts.After {
			return true // the cursor itself is excluded
		}
		if !strings.HasPrefix(key, opts.Prefix) {
			return false
		}
		if len(records) == opts.Limit {
			more = true
			return false
		}
		s := m.shard(c, key)
		s.mu.RLock()
		records = append(records, s.records[key])
		s.mu.RUnlock()
		return true
	})
	return records, more, nil
}

func (m *memBackend) ping(context.Context) error { return nil }

func (m *memBackend) close() error {
	m.collections.Store(nil)
	return nil
}

func (m *memBackend) name() string { return BackendMemory }

// checkCondition reports whether a write's conditions hold for a key whose
// current version is version (exists false: the key is absent).
func checkCondition(cond writeConditions, version int64, exists bool) error {
	switch {
	case cond.ifAbsent && exists:
		return fmt.Errorf("%w: key exists (version %d)", ErrConflict, version)
	case cond.versionSet && !exists:
		return fmt.Errorf("%w: expected version %d, key does not exist", ErrConflict, cond.ifVersion)
	case cond.versionSet && version != cond.ifVersion:
		return fmt.Errorf("%w: expected version %d, current version is %d", ErrConflict, cond.ifVersion, version)
	}
	return nil
}

// checkDeleteMissing is the error for deleting a key that does not exist:
// ErrConflict under IfVersion, ErrNotFound otherwise.
func checkDeleteMissing(cond writeConditions) error {
	if cond.versionSet {
		return checkCondition(cond, 0, false)
	}
	return ErrNotFound
}

// snapshot returns every record the store holds. Each collection is read
// atomically (under its order lock, which every create and delete takes).
// The Manager uses it to move what was written during an outage to
// PostgreSQL.
func (s *MemStore) snapshot() []Record {
	var all []Record
	for _, c := range s.mem.all() {
		c.order.RLock()
		for i := range c.shards {
			sh := &c.shards[i]
			sh.mu.RLock()
			for _, r := range sh.records {
				all = append(all, r)
			}
			sh.mu.RUnlock()
		}
		c.order.RUnlock()
	}
	return all
}

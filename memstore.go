package dbmanager

import (
	"context"
	"fmt"
	"strings"
	"sync"
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
	m := &memBackend{now: time.Now}
	return &MemStore{checkedStore: checkedStore{b: m}, mem: m}
}

// memBackend is MemStore's storage: one memCollection per collection name.
type memBackend struct {
	collections sync.Map // string -> *memCollection
	now         func() time.Time
}

// memCollection holds one collection's records. Point reads and writes go
// through the hash map; the ordered key set serves List, so a page costs
// O(log n + limit) instead of a sort of the whole collection. A stored
// Record is never modified in place (a write replaces it), so readers may
// use what they found after releasing the lock.
type memCollection struct {
	mu      sync.RWMutex
	records map[string]Record
	keys    btree.Set[string]
}

// collection returns the named collection, creating it if create is set.
func (m *memBackend) collection(name string, create bool) *memCollection {
	if c, ok := m.collections.Load(name); ok {
		return c.(*memCollection)
	}
	if !create {
		return nil
	}
	c, _ := m.collections.LoadOrStore(name, &memCollection{records: make(map[string]Record)})
	return c.(*memCollection)
}

func (m *memBackend) get(_ context.Context, collection, key string) (Record, error) {
	c := m.collection(collection, false)
	if c == nil {
		return Record{}, ErrNotFound
	}
	c.mu.RLock()
	r, ok := c.records[key]
	c.mu.RUnlock()
	if !ok {
		return Record{}, ErrNotFound
	}
	return r, nil
}

func (m *memBackend) put(_ context.Context, collection, key string, value []byte, cond writeConditions) (Record, error) {
	c := m.collection(collection, true)
	c.mu.Lock()
	defer c.mu.Unlock()
	now := normalizeTime(m.now()) // under the lock: times follow versions
	old, exists := c.records[key]
	if err := checkCondition(cond, old.Version, exists); err != nil {
		return Record{}, err
	}
	r := Record{Collection: collection, Key: key, Value: value, Version: 1, CreatedAt: now, UpdatedAt: now}
	if exists {
		r.Version = old.Version + 1
		r.CreatedAt = old.CreatedAt
	} else {
		c.keys.Insert(key)
	}
	c.records[key] = r
	return r, nil
}

func (m *memBackend) delete(_ context.Context, collection, key string, cond writeConditions) error {
	c := m.collection(collection, false)
	if c == nil {
		return checkDeleteMissing(cond)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old, exists := c.records[key]
	if !exists {
		return checkDeleteMissing(cond)
	}
	if err := checkCondition(cond, old.Version, true); err != nil {
		return err
	}
	delete(c.records, key)
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
	c.mu.RLock()
	defer c.mu.RUnlock()
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
		records = append(records, c.records[key])
		return true
	})
	return records, more, nil
}

func (m *memBackend) ping(context.Context) error { return nil }

func (m *memBackend) close() error {
	m.collections.Clear()
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

// snapshot returns every record the store holds, collection by collection;
// each collection is read atomically. The Manager uses it to move what was
// written during an outage to PostgreSQL.
func (s *MemStore) snapshot() []Record {
	var all []Record
	s.mem.collections.Range(func(_, v any) bool {
		c := v.(*memCollection)
		c.mu.RLock()
		for _, r := range c.records {
			all = append(all, r)
		}
		c.mu.RUnlock()
		return true
	})
	return all
}

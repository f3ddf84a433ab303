package dbmanager

import (
	"context"
	"fmt"
	"maps"
	"slices"
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
	m := &memBackend{}
	return &MemStore{checkedStore: checkedStore{b: m}, mem: m}
}

// memBackend is MemStore's storage: one memCollection per collection name.
// Collections are few and rarely created, so they live in a set that is
// replaced, never changed: finding one takes no lock.
type memBackend struct {
	collections atomic.Pointer[collectionSet]
	createMu    sync.Mutex // serialises creating collections
	clock       stampClock
}

// collectionSet is an immutable set of collections. The first few are
// found by comparing names in a short list, cheaper than hashing the name;
// the rest are in a map.
type collectionSet struct {
	first []*memCollection
	rest  map[string]*memCollection
}

// firstCollections is how many collections collectionSet keeps in its list.
const firstCollections = 8

// memShards is how many independently locked parts a collection's records
// are spread over, so that calls on different keys rarely wait for each
// other (a single lock is what the benchmark baseline uses).
const (
	memShardBits = 5
	memShards    = 1 << memShardBits
)

// memCollection holds one collection's records. Point reads and writes go
// to one shard, a hash map under its own lock. The ordered key set serves
// List, so a page costs O(log n + limit) instead of a sort of the whole
// collection; it changes only when a key is created or deleted.
//
// Lock order: order, then a shard. A stored value slice is never modified
// (a write stores a new one), so readers may copy what they found after
// releasing a lock.
type memCollection struct {
	name   string
	order  sync.RWMutex
	keys   btree.Set[string]
	shards [memShards]memShard
}

type memShard struct {
	mu      sync.RWMutex
	records map[string]memRecord
	_       [32]byte // keep shards on separate cache lines
}

// memRecord is what a shard keeps per key: the collection and key are the
// map's, the times are Unix microseconds in UTC (the precision the
// contract names), so a slot is 48 bytes with one pointer, and a Record is
// assembled only for the caller.
type memRecord struct {
	value            []byte // owned by the store, never modified
	version          int64
	created, updated int64 // Unix microseconds
}

// record assembles the caller's Record, with a copy of the value the
// caller owns. (get builds the same Record in its return statement: a
// Record is 112 bytes, and returning one from a call that is not inlined
// copies it once more.)
func (r *memRecord) record(collection, key string) Record {
	return Record{
		Collection: collection, Key: key, Value: cloneBytes(r.value), Version: r.version,
		CreatedAt: microTime(r.created), UpdatedAt: microTime(r.updated),
	}
}

// cloneBytes is a copy of b (nil for nil), made with make and copy,
// which the compiler turns into one allocation that is not zeroed first
// (slices.Clone goes through append's growth path).
func cloneBytes(b []byte) []byte {
	if b == nil {
		return nil
	}
	c := make([]byte, len(b))
	copy(c, b)
	return c
}

// microTime is the UTC time of Unix microseconds us.
func microTime(us int64) time.Time { return time.UnixMicro(us).UTC() }

// stampClock gives write times in Unix microseconds from one clock read
// instead of time.Now's two (wall and monotonic; each costs tens of
// nanoseconds on a VM, a sixth of a Put): the wall clock read at a base
// instant plus the monotonic time elapsed since. It takes a new base
// every second, so a step of the wall clock shows within a second, and
// between bases the stamps cannot go back.
type stampClock struct {
	base atomic.Pointer[clockBase]
}

type clockBase struct {
	at       time.Time // with its monotonic reading
	unixNano int64
}

// stampRebase is how long a base of stampClock is used.
const stampRebase = time.Second

func (c *stampClock) nowMicro() int64 {
	if b := c.base.Load(); b != nil {
		if d := time.Since(b.at); d >= 0 && d < stampRebase {
			return (b.unixNano + int64(d)) / 1000
		}
	}
	now := time.Now()
	c.base.Store(&clockBase{at: now, unixNano: now.UnixNano()})
	return now.UnixMicro()
}

// find returns the named collection, or nil.
func (m *memBackend) find(name string) *memCollection {
	set := m.collections.Load()
	if set == nil {
		return nil
	}
	for _, c := range set.first {
		if c.name == name {
			return c
		}
	}
	return set.rest[name]
}

// create returns the named collection, creating it if it is missing.
func (m *memBackend) create(name string) *memCollection {
	if c := m.find(name); c != nil {
		return c
	}
	m.createMu.Lock()
	defer m.createMu.Unlock()
	if c := m.find(name); c != nil {
		return c
	}
	c := &memCollection{name: name}
	for i := range c.shards {
		c.shards[i].records = make(map[string]memRecord)
	}
	next := &collectionSet{}
	if old := m.collections.Load(); old != nil {
		next.first = slices.Clip(old.first)
		next.rest = old.rest
	}
	if len(next.first) < firstCollections {
		next.first = append(next.first, c)
	} else {
		next.rest = make(map[string]*memCollection, len(next.rest)+1)
		if old := m.collections.Load(); old != nil {
			maps.Copy(next.rest, old.rest)
		}
		next.rest[name] = c
	}
	m.collections.Store(next)
	return c
}

// all returns every collection.
func (m *memBackend) all() []*memCollection {
	set := m.collections.Load()
	if set == nil {
		return nil
	}
	all := slices.Clone(set.first)
	for _, c := range set.rest {
		all = append(all, c)
	}
	return all
}

func (c *memCollection) shard(key string) *memShard {
	return &c.shards[shardIndex(key)]
}

// shardIndex spreads keys over the shards from their first and last eight
// bytes and their length: a few instructions, where a seeded hash of the
// whole key costs more than the lock it avoids. Keys that share those
// bytes share a shard, which costs only lock contention; each shard's map
// hashes keys with the runtime's seeded hash as any Go map does.
func shardIndex(key string) uint64 {
	n := len(key)
	h := uint64(n) * 0x9E3779B97F4A7C15
	if n >= 8 {
		h ^= load64(key[:8])*0xC2B2AE3D27D4EB4F ^ load64(key[n-8:])
	} else {
		for i := 0; i < n; i++ {
			h = (h ^ uint64(key[i])) * 0x100000001B3
		}
	}
	h *= 0x9E3779B97F4A7C15
	return h >> (64 - memShardBits)
}

// load64 reads the first eight bytes of s (len(s) >= 8), little endian.
func load64(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

func (m *memBackend) get(_ context.Context, collection, key string) (Record, error) {
	c := m.find(collection)
	if c == nil {
		return Record{}, ErrNotFound
	}
	s := c.shard(key)
	s.mu.RLock()
	r, ok := s.records[key]
	s.mu.RUnlock()
	if !ok {
		return Record{}, ErrNotFound
	}
	return Record{
		Collection: collection, Key: key, Value: cloneBytes(r.value), Version: r.version,
		CreatedAt: microTime(r.created), UpdatedAt: microTime(r.updated),
	}, nil
}

// put keeps value (checkedStore hands over a copy nobody else holds) and
// returns the record with a copy of its own.
func (m *memBackend) put(_ context.Context, collection, key string, value []byte, cond writeConditions) (Record, error) {
	c := m.create(collection)
	s := c.shard(key)
	now := m.clock.nowMicro() // stamped before the lock; stored never to go back
	s.mu.Lock()
	old, exists := s.records[key]
	if !exists && !cond.versionSet {
		// A new key: take the order lock first, as the lock order
		// requires, and look again.
		s.mu.Unlock()
		return m.create1(c, s, collection, key, value, cond, now)
	}
	if err := checkCondition(cond, old.version, exists); err != nil {
		s.mu.Unlock()
		return Record{}, err
	}
	r := s.store(key, value, old, exists, now)
	s.mu.Unlock()
	return r.record(collection, key), nil
}

// create1 is put for a key that was missing: under the order lock, so that
// the key set changes with the record.
func (m *memBackend) create1(c *memCollection, s *memShard, collection, key string, value []byte, cond writeConditions, now int64) (Record, error) {
	c.order.Lock()
	s.mu.Lock()
	old, exists := s.records[key]
	err := checkCondition(cond, old.version, exists)
	var r memRecord
	if err == nil {
		if !exists {
			c.keys.Insert(key)
		}
		r = s.store(key, value, old, exists, now)
	}
	s.mu.Unlock()
	c.order.Unlock()
	if err != nil {
		return Record{}, err
	}
	return r.record(collection, key), nil
}

// store writes the new record for key, whose shard lock the caller holds.
// It is stamped now, or with the old UpdatedAt if the wall clock went back
// or a concurrent writer stamped later.
func (s *memShard) store(key string, value []byte, old memRecord, exists bool, now int64) memRecord {
	r := memRecord{value: value, version: 1, created: now, updated: now}
	if exists {
		r.version, r.created, r.updated = old.version+1, old.created, max(now, old.updated)
	}
	s.records[key] = r
	return r
}

func (m *memBackend) delete(_ context.Context, collection, key string, cond writeConditions) error {
	c := m.find(collection)
	if c == nil {
		return checkDeleteMissing(cond)
	}
	c.order.Lock()
	defer c.order.Unlock()
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	old, exists := s.records[key]
	if !exists {
		return checkDeleteMissing(cond)
	}
	if err := checkCondition(cond, old.version, true); err != nil {
		return err
	}
	delete(s.records, key)
	c.keys.Delete(key)
	return nil
}

func (m *memBackend) list(_ context.Context, collection string, opts ListOptions) ([]Record, bool, error) {
	c := m.find(collection)
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
		s := c.shard(key)
		s.mu.RLock()
		r := s.records[key]
		s.mu.RUnlock()
		records = append(records, r.record(collection, key))
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
// PostgreSQL; the records share the store's value slices, which the move
// only reads.
func (s *MemStore) snapshot() []Record {
	var all []Record
	for _, c := range s.mem.all() {
		c.order.RLock()
		for i := range c.shards {
			sh := &c.shards[i]
			sh.mu.RLock()
			for key, r := range sh.records {
				all = append(all, Record{Collection: c.name, Key: key, Value: r.value, Version: r.version,
					CreatedAt: microTime(r.created), UpdatedAt: microTime(r.updated)})
			}
			sh.mu.RUnlock()
		}
		c.order.RUnlock()
	}
	return all
}

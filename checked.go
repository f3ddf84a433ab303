package dbmanager

import (
	"context"
	"sync/atomic"
	"time"
)

// backend is the storage half of a Store. It only stores: checkedStore,
// which every backend sits behind, validates arguments, copies the
// caller's value, checks the context and closed state, normalises times
// and wraps errors, so that no two backends can differ in those rules.
//
// A backend receives only valid arguments, a value slice it may keep
// (checkedStore's copy, which nobody else holds), and a context that was
// live when the call started. Every Record it returns is the caller's to
// own: its Value is held by no one else (a backend that keeps a slice
// returns a copy of it; one that decodes a fresh slice, as pgx does,
// returns that), so each value is copied once on its way out, not twice.
// It returns bare errors wrapping the sentinels (ErrNotFound, ErrConflict,
// ErrUnavailable, ...); checkedStore adds the operation, collection and
// key.
type backend interface {
	get(ctx context.Context, collection, key string) (Record, error)
	put(ctx context.Context, collection, key string, value []byte, cond writeConditions) (Record, error)
	delete(ctx context.Context, collection, key string, cond writeConditions) error
	// list returns up to opts.Limit records after opts.After that start
	// with opts.Prefix, in bytewise key order, and whether more follow.
	list(ctx context.Context, collection string, opts ListOptions) (records []Record, more bool, err error)
	ping(ctx context.Context) error
	close() error
	name() string
}

// checkedStore enforces the Store contract around a backend.
type checkedStore struct {
	b      backend
	closed atomic.Bool
}

// Get returns the record stored under key. It fails with ErrNotFound if
// there is none.
func (s *checkedStore) Get(ctx context.Context, collection, key string) (Record, error) {
	if err := s.precheck(ctx, collection, key); err != nil {
		return Record{}, opError("get", collection, key, err)
	}
	r, err := s.b.get(ctx, collection, key)
	if err != nil {
		return Record{}, opError("get", collection, key, err)
	}
	normalizeTimes(&r)
	return r, nil
}

// Put creates or replaces the record under key, subject to opts, and
// returns the record as stored. The store keeps a copy of value.
func (s *checkedStore) Put(ctx context.Context, collection, key string, value []byte, opts ...WriteOption) (Record, error) {
	cond, err := resolveWriteOptions("put", opts)
	if err == nil {
		err = s.precheck(ctx, collection, key)
	}
	if err == nil {
		err = validateValue(value)
	}
	if err != nil {
		return Record{}, opError("put", collection, key, err)
	}
	r, err := s.b.put(ctx, collection, key, cloneBytes(value), cond)
	if err != nil {
		return Record{}, opError("put", collection, key, err)
	}
	normalizeTimes(&r)
	return r, nil
}

// Delete removes the record under key, subject to opts. It fails with
// ErrNotFound if there is none (ErrConflict under IfVersion).
func (s *checkedStore) Delete(ctx context.Context, collection, key string, opts ...WriteOption) error {
	cond, err := resolveWriteOptions("delete", opts)
	if err == nil {
		err = s.precheck(ctx, collection, key)
	}
	if err == nil {
		err = s.b.delete(ctx, collection, key, cond)
	}
	if err != nil {
		return opError("delete", collection, key, err)
	}
	return nil
}

// List returns one page of the collection's records in bytewise key order.
func (s *checkedStore) List(ctx context.Context, collection string, opts ListOptions) (Page, error) {
	opts, err := resolveListOptions(opts)
	if err == nil {
		err = s.precheckCollection(ctx, collection)
	}
	if err != nil {
		return Page{}, opError("list", collection, "", err)
	}
	records, more, err := s.b.list(ctx, collection, opts)
	if err != nil {
		return Page{}, opError("list", collection, "", err)
	}
	for i := range records {
		normalizeTimes(&records[i])
	}
	page := Page{Records: records}
	if more && len(records) > 0 {
		page.Next = records[len(records)-1].Key
	}
	return page, nil
}

// Ping reports whether the backend answers.
func (s *checkedStore) Ping(ctx context.Context) error {
	err := s.liveness(ctx)
	if err == nil {
		err = s.b.ping(ctx)
	}
	if err != nil {
		return opError("ping", "", "", err)
	}
	return nil
}

// Backend names the storage behind the store.
func (s *checkedStore) Backend() string { return s.b.name() }

// Close makes every later call fail with ErrClosed. Calls in flight finish.
// Closing twice is harmless.
func (s *checkedStore) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	return s.b.close()
}

// liveness fails if the store is closed or ctx is done.
func (s *checkedStore) liveness(ctx context.Context) error {
	if s.closed.Load() {
		return ErrClosed
	}
	return ctx.Err()
}

// precheck validates the names of a single-key call and checks liveness.
func (s *checkedStore) precheck(ctx context.Context, collection, key string) error {
	if plainName(key, MaxKeyLen) && plainName(collection, MaxCollectionLen) {
		return s.liveness(ctx) // the common case: both ASCII, in one call each
	}
	if err := validateName("key", key, MaxKeyLen); err != nil {
		return err
	}
	return s.precheckCollection(ctx, collection)
}

// precheckCollection validates a collection name and checks liveness.
func (s *checkedStore) precheckCollection(ctx context.Context, collection string) error {
	if err := validateName("collection", collection, MaxCollectionLen); err != nil {
		return err
	}
	return s.liveness(ctx)
}

// normalizeTimes gives r's times the form both backends return. Times
// already in that form (the memory store keeps them so) are left as they
// are without a call.
func normalizeTimes(r *Record) {
	if !isNormalTime(r.CreatedAt) || !isNormalTime(r.UpdatedAt) {
		r.CreatedAt = normalizeTime(r.CreatedAt)
		r.UpdatedAt = normalizeTime(r.UpdatedAt)
	}
}

// isNormalTime reports whether t is in UTC with whole microseconds.
func isNormalTime(t time.Time) bool {
	return t.Location() == time.UTC && t.Nanosecond()%1000 == 0
}

// normalizeTime gives the time form both backends return: UTC, whole
// microseconds (PostgreSQL's timestamptz precision). A time already in
// that form (the memory store keeps times so) costs two comparisons.
func normalizeTime(t time.Time) time.Time {
	if t.Location() != time.UTC {
		t = t.UTC()
	}
	if t.Nanosecond()%1000 != 0 {
		t = t.Truncate(time.Microsecond)
	}
	return t
}

// opError wraps err in an *OpError unless it already is one.
func opError(op, collection, key string, err error) error {
	if _, ok := err.(*OpError); ok {
		return err
	}
	return &OpError{Op: op, Collection: collection, Key: key, Err: err}
}

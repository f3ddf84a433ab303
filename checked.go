package dbmanager

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/gatewaykit/dbmanager/internal/jsonvalid"
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

// validateName checks a collection name or key against the contract.
func validateName(what, s string, max int) error {
	if plainName(s, max) {
		return nil // the common case, in one pass
	}
	switch {
	case s == "":
		return fmt.Errorf("%w: empty %s", ErrInvalid, what)
	case len(s) > max:
		return fmt.Errorf("%w: %s is %d bytes, over the limit of %d", ErrInvalid, what, len(s), max)
	case !utf8.ValidString(s):
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalid, what)
	case strings.IndexByte(s, 0) >= 0:
		return fmt.Errorf("%w: %s contains a NUL byte", ErrInvalid, what)
	}
	return nil
}

// plainName reports whether s is a valid name of at most max bytes that
// is ASCII without NUL, the common case checked in one pass (inlined).
func plainName(s string, max int) bool {
	return len(s) != 0 && len(s) <= max && plainASCII(s)
}

// plainASCII reports whether s is ASCII without NUL: valid UTF-8 that
// needs no further check. It looks at eight bytes at a time.
func plainASCII(s string) bool {
	const high, ones = 0x8080808080808080, 0x0101010101010101
	i := 0
	for ; i+8 <= len(s); i += 8 {
		x := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
			uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
		// A byte >= 0x80, or a zero byte (the classic has-zero-byte test).
		if x&high != 0 || (x-ones)&^x&high != 0 {
			return false
		}
	}
	for ; i < len(s); i++ {
		if c := s[i]; c == 0 || c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// validateCursor checks ListOptions.Prefix and After, which may be empty.
func validateCursor(what, s string) error {
	if s == "" {
		return nil
	}
	if !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
		return fmt.Errorf("%w: %s is not valid UTF-8 without NUL", ErrInvalid, what)
	}
	return nil
}

// validateValue checks that v is one valid JSON document in valid UTF-8,
// accepting exactly what utf8.Valid(v) && json.Valid(v) accepts. jsonvalid.Valid
// does both checks in one pass; only a rejected value pays for utf8.Valid,
// to say which of the two failed.
func validateValue(v []byte) error {
	switch {
	case len(v) > MaxValueLen:
		return fmt.Errorf("%w: value is %d bytes, over the limit of %d", ErrInvalid, len(v), MaxValueLen)
	case jsonvalid.Valid(v):
		return nil
	case !utf8.Valid(v):
		return fmt.Errorf("%w: value is not valid UTF-8", ErrInvalid)
	}
	return fmt.Errorf("%w: value is not a valid JSON document", ErrInvalid)
}

// resolveWriteOptions applies opts and checks they make sense together.
// Without options (most calls) it costs nothing: it is inlined.
func resolveWriteOptions(op string, opts []WriteOption) (writeConditions, error) {
	if len(opts) == 0 {
		return writeConditions{}, nil
	}
	return applyWriteOptions(op, opts)
}

func applyWriteOptions(op string, opts []WriteOption) (writeConditions, error) {
	var c writeConditions
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	switch {
	case c.versionSet && c.ifVersion <= 0:
		return c, fmt.Errorf("%w: IfVersion(%d): versions start at 1", ErrInvalid, c.ifVersion)
	case c.versionSet && c.ifAbsent:
		return c, fmt.Errorf("%w: IfVersion and IfAbsent together can never hold", ErrInvalid)
	case c.ifAbsent && op == "delete":
		return c, fmt.Errorf("%w: IfAbsent makes no sense for delete", ErrInvalid)
	}
	return c, nil
}

// resolveListOptions checks o and applies the default and maximum limit.
func resolveListOptions(o ListOptions) (ListOptions, error) {
	if err := validateCursor("prefix", o.Prefix); err != nil {
		return o, err
	}
	if err := validateCursor("cursor", o.After); err != nil {
		return o, err
	}
	switch {
	case o.Limit < 0:
		return o, fmt.Errorf("%w: negative limit %d", ErrInvalid, o.Limit)
	case o.Limit == 0:
		o.Limit = DefaultListLimit
	case o.Limit > MaxListLimit:
		o.Limit = MaxListLimit
	}
	return o, nil
}

// quote shows a name in an error message: quoted, and shortened when long.
func quote(s string) string {
	const max = 64
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return strconv.Quote(s[:cut]) + "..."
	}
	return strconv.Quote(s)
}

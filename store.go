package dbmanager

import (
	"context"
	"time"
)

// Store is a key-value store of JSON documents grouped in collections.
//
// Every implementation in this module (the in-memory [MemStore], the
// PostgreSQL [PGStore] and the routing handle returned by [Manager.Store])
// keeps the same contract, checked by the storetest package:
//
//   - Values are JSON documents (valid UTF-8, valid RFC 8259 JSON); anything
//     else is rejected with [ErrInvalid] before the backend is touched. Get
//     returns the bytes exactly as Put took them.
//   - Collections and keys are non-empty valid UTF-8 without NUL bytes; a
//     collection is at most [MaxCollectionLen] bytes, a key at most
//     [MaxKeyLen]. Otherwise [ErrInvalid].
//   - List orders keys bytewise, as Go compares strings, on every backend.
//     ListOptions.Prefix matches literally.
//   - A failed [IfVersion] or [IfAbsent] condition is [ErrConflict] (also
//     IfVersion on a key that does not exist); Get or Delete of a missing
//     key is [ErrNotFound]. Errors are [*OpError] values that name the
//     collection and key and wrap the sentinel, so errors.Is works.
//   - The store keeps no reference to a caller's slice, and callers may
//     modify what they get back.
//   - A cancelled context returns its error and changes nothing.
//   - A Store is safe for concurrent use; every single-key operation is
//     atomic.
//   - A backend that cannot be reached gives [ErrUnavailable] wrapping the
//     cause; a closed store gives [ErrClosed].
type Store interface {
	// Get returns the record stored under key, or ErrNotFound.
	Get(ctx context.Context, collection, key string) (Record, error)
	// Put creates or replaces the record under key and returns it as
	// stored. A new record has Version 1; each later Put adds one.
	Put(ctx context.Context, collection, key string, value []byte, opts ...WriteOption) (Record, error)
	// Delete removes the record under key, or returns ErrNotFound.
	Delete(ctx context.Context, collection, key string, opts ...WriteOption) error
	// List returns one page of records in bytewise key order.
	List(ctx context.Context, collection string, opts ListOptions) (Page, error)
	// Ping reports whether the backend answers.
	Ping(ctx context.Context) error
	// Backend names the storage behind the store: BackendPostgreSQL or
	// BackendMemory.
	Backend() string
}

// Backend names, as returned by Store.Backend and shown in health output.
const (
	BackendPostgreSQL = "postgresql"
	BackendMemory     = "in-memory"
)

// Limits enforced by every Store.
const (
	MaxCollectionLen = 128      // bytes in a collection name
	MaxKeyLen        = 512      // bytes in a key
	MaxValueLen      = 64 << 20 // bytes in a value (64 MiB)
	DefaultListLimit = 100      // records in a page when ListOptions.Limit is 0
	MaxListLimit     = 1000     // larger ListOptions.Limit values are capped to this
)

// Record is one stored document and its metadata.
type Record struct {
	Collection string
	Key        string
	// Value is the JSON document, byte for byte as it was written.
	Value []byte
	// Version is 1 when the key is created and grows by one on every Put.
	Version int64
	// CreatedAt and UpdatedAt are in UTC with microsecond precision.
	CreatedAt time.Time
	UpdatedAt time.Time
}

// ListOptions selects a page of records.
type ListOptions struct {
	// Prefix keeps only keys that start with it; it is matched literally.
	Prefix string
	// After is a cursor: only keys strictly greater than it are returned.
	// Pass the previous Page.Next to get the next page.
	After string
	// Limit is the largest number of records in the page: 0 means
	// DefaultListLimit, and values over MaxListLimit are capped.
	Limit int
}

// Page is one page of a List.
type Page struct {
	Records []Record
	// Next is the cursor for the following page, or "" when this page is
	// the last.
	Next string
}

// WriteOption makes a Put or Delete conditional.
type WriteOption func(*writeConditions)

// writeConditions is the combined effect of a call's WriteOptions.
type writeConditions struct {
	ifVersion  int64
	versionSet bool // IfVersion was given
	ifAbsent   bool
}

// IfVersion makes the write happen only if the record's current version is
// v. Otherwise, or if the key does not exist, the call fails with
// ErrConflict and changes nothing.
func IfVersion(v int64) WriteOption {
	return func(c *writeConditions) { c.ifVersion = v; c.versionSet = true }
}

// IfAbsent makes a Put create the key only: if it exists, the call fails
// with ErrConflict and changes nothing.
func IfAbsent() WriteOption {
	return func(c *writeConditions) { c.ifAbsent = true }
}

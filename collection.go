package dbmanager

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"math/rand/v2"
	"time"
)

// Collection stores values of type T as JSON documents in one collection
// of a Store. It is safe for concurrent use if the Store is.
//
//	users := dbmanager.NewCollection[User](store, "users")
//	_, err := users.Create(ctx, "u1", User{Name: "Ada"})
//	doc, err := users.Update(ctx, "u1", func(u *User) error { u.Logins++; return nil })
type Collection[T any] struct {
	store    Store
	name     string
	attempts int
}

// Doc is one document of a Collection: the decoded value and the record's
// metadata.
type Doc[T any] struct {
	Key   string
	Value T
	// Version is the record's version, for IfVersion.
	Version   int64
	CreatedAt time.Time
	UpdatedAt time.Time
}

// DefaultUpdateAttempts is how many times Collection.Update tries its
// read-modify-write before giving up with ErrConflict.
const DefaultUpdateAttempts = 20

// CollectionOption configures NewCollection.
type CollectionOption func(*collectionOptions)

type collectionOptions struct{ attempts int }

// WithUpdateAttempts sets how many times Update tries before it returns
// the ErrConflict of the last attempt (at least 1).
func WithUpdateAttempts(n int) CollectionOption {
	return func(o *collectionOptions) { o.attempts = max(n, 1) }
}

// NewCollection returns the collection called name in s. The name is
// checked by the store on every call (an invalid one gives ErrInvalid).
func NewCollection[T any](s Store, name string, opts ...CollectionOption) *Collection[T] {
	o := collectionOptions{attempts: DefaultUpdateAttempts}
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	return &Collection[T]{store: s, name: name, attempts: o.attempts}
}

// Name returns the collection's name.
func (c *Collection[T]) Name() string { return c.name }

// Get returns the document under key, or an error wrapping ErrNotFound. A
// stored document that does not decode into T gives an error wrapping
// ErrInvalid.
func (c *Collection[T]) Get(ctx context.Context, key string) (Doc[T], error) {
	r, err := c.store.Get(ctx, c.name, key)
	if err != nil {
		return Doc[T]{}, err
	}
	return c.decode("get", r)
}

// Put stores v under key, creating or replacing it, subject to opts
// (IfVersion, IfAbsent), and returns the document as stored. A v that does
// not encode as JSON gives an error wrapping ErrInvalid.
func (c *Collection[T]) Put(ctx context.Context, key string, v T, opts ...WriteOption) (Doc[T], error) {
	b, err := json.Marshal(v)
	if err != nil {
		return Doc[T]{}, &OpError{Op: "put", Collection: c.name, Key: key, Err: fmt.Errorf("%w: encode %T as JSON: %w", ErrInvalid, v, err)}
	}
	r, err := c.store.Put(ctx, c.name, key, b, opts...)
	if err != nil {
		return Doc[T]{}, err
	}
	return Doc[T]{Key: r.Key, Value: v, Version: r.Version, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}, nil
}

// Create stores v under key only if the key does not exist; otherwise it
// fails with ErrConflict.
func (c *Collection[T]) Create(ctx context.Context, key string, v T) (Doc[T], error) {
	return c.Put(ctx, key, v, IfAbsent())
}

// Update reads the document under key, lets fn change it, and writes it
// back if nobody wrote in between (IfVersion). When someone did, it reads
// again and calls fn again, after a short jittered pause, up to the
// collection's attempt limit (DefaultUpdateAttempts unless changed with
// WithUpdateAttempts); then it returns the last ErrConflict. fn may run
// several times, so it should only change the value it is given. An error
// from fn, a missing key (ErrNotFound) or any other error stops Update at
// once and is returned as is.
func (c *Collection[T]) Update(ctx context.Context, key string, fn func(*T) error) (Doc[T], error) {
	var err error
	for attempt := range c.attempts {
		if attempt > 0 {
			if err := sleepCtx(ctx, updateBackoff(attempt)); err != nil {
				return Doc[T]{}, &OpError{Op: "update", Collection: c.name, Key: key, Err: err}
			}
		}
		var doc Doc[T]
		doc, err = c.Get(ctx, key)
		if err != nil {
			return Doc[T]{}, err
		}
		if err := fn(&doc.Value); err != nil {
			return Doc[T]{}, err
		}
		doc, err = c.Put(ctx, key, doc.Value, IfVersion(doc.Version))
		if !errors.Is(err, ErrConflict) {
			return doc, err
		}
	}
	return Doc[T]{}, fmt.Errorf("dbmanager: update %s in %s: gave up after %d attempts: %w", quote(key), quote(c.name), c.attempts, err)
}

// Delete removes the document under key, subject to opts (IfVersion), or
// fails with ErrNotFound.
func (c *Collection[T]) Delete(ctx context.Context, key string, opts ...WriteOption) error {
	return c.store.Delete(ctx, c.name, key, opts...)
}

// List returns one page of documents in bytewise key order, and the cursor
// for the next page ("" after the last), as Store.List does.
func (c *Collection[T]) List(ctx context.Context, opts ListOptions) (docs []Doc[T], next string, err error) {
	p, err := c.store.List(ctx, c.name, opts)
	if err != nil {
		return nil, "", err
	}
	docs = make([]Doc[T], 0, len(p.Records))
	for _, r := range p.Records {
		d, err := c.decode("list", r)
		if err != nil {
			return nil, "", err
		}
		docs = append(docs, d)
	}
	return docs, p.Next, nil
}

// All iterates over every document whose key starts with prefix, in key
// order, fetching pages as it goes. It stops after yielding an error.
func (c *Collection[T]) All(ctx context.Context, prefix string) iter.Seq2[Doc[T], error] {
	return func(yield func(Doc[T], error) bool) {
		after := ""
		for {
			docs, next, err := c.List(ctx, ListOptions{Prefix: prefix, After: after})
			if err != nil {
				yield(Doc[T]{}, err)
				return
			}
			for _, d := range docs {
				if !yield(d, nil) {
					return
				}
			}
			if next == "" {
				return
			}
			after = next
		}
	}
}

// decode turns a record into a Doc.
func (c *Collection[T]) decode(op string, r Record) (Doc[T], error) {
	d := Doc[T]{Key: r.Key, Version: r.Version, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}
	if err := json.Unmarshal(r.Value, &d.Value); err != nil {
		return Doc[T]{}, &OpError{Op: op, Collection: c.name, Key: r.Key, Err: fmt.Errorf("%w: decode JSON into %T: %w", ErrInvalid, d.Value, err)}
	}
	return d, nil
}

// updateBackoff is the pause before Update's attempt n (n >= 1): about
// 1 ms doubling to at most 64 ms, with full jitter so that writers who
// collided spread out.
func updateBackoff(n int) time.Duration {
	ceiling := time.Millisecond << min(n-1, 6)
	return time.Duration(rand.Int64N(int64(ceiling)) + 1)
}

// sleepCtx waits for d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

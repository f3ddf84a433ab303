package dbmanager

import (
	"context"

	"github.com/gatewaykit/dbmanager/internal/credentials"
)

// RetryAuthStore returns a Store that runs every call of s through
// c.RetryAuth, so a call that needs a new connection while the database
// password is being rotated waits for the rotated secret instead of
// failing (see internal/credentials/rotation.go). Only authentication failures are retried: a
// failed login runs no statement, so a retried Put or Delete cannot apply
// twice. A call that does not fail authentication costs what the same call
// on s costs. Backend is passed through; closing s stays with its owner.
func RetryAuthStore(s Store, c *credentials.Cache) Store {
	return &retryAuthStore{s: s, c: c}
}

type retryAuthStore struct {
	s Store
	c *credentials.Cache
}

// Each method runs the call once, and only after an authentication failure
// hands it to the rotation retry (the generation is read first, as
// RetryAuth does).

func (r *retryAuthStore) Get(ctx context.Context, collection, key string) (Record, error) {
	gen := r.c.Generation()
	rec, err := r.s.Get(ctx, collection, key)
	if err == nil || !credentials.IsAuthFailure(err) {
		return rec, err
	}
	err = r.c.RetryAfterAuthFailure(ctx, gen, err, func(ctx context.Context) (err error) {
		rec, err = r.s.Get(ctx, collection, key)
		return err
	})
	return rec, err
}

func (r *retryAuthStore) Put(ctx context.Context, collection, key string, value []byte, opts ...WriteOption) (Record, error) {
	gen := r.c.Generation()
	rec, err := r.s.Put(ctx, collection, key, value, opts...)
	if err == nil || !credentials.IsAuthFailure(err) {
		return rec, err
	}
	err = r.c.RetryAfterAuthFailure(ctx, gen, err, func(ctx context.Context) (err error) {
		rec, err = r.s.Put(ctx, collection, key, value, opts...)
		return err
	})
	return rec, err
}

func (r *retryAuthStore) Delete(ctx context.Context, collection, key string, opts ...WriteOption) error {
	gen := r.c.Generation()
	err := r.s.Delete(ctx, collection, key, opts...)
	if err == nil || !credentials.IsAuthFailure(err) {
		return err
	}
	return r.c.RetryAfterAuthFailure(ctx, gen, err, func(ctx context.Context) error {
		return r.s.Delete(ctx, collection, key, opts...)
	})
}

func (r *retryAuthStore) List(ctx context.Context, collection string, opts ListOptions) (Page, error) {
	gen := r.c.Generation()
	page, err := r.s.List(ctx, collection, opts)
	if err == nil || !credentials.IsAuthFailure(err) {
		return page, err
	}
	err = r.c.RetryAfterAuthFailure(ctx, gen, err, func(ctx context.Context) (err error) {
		page, err = r.s.List(ctx, collection, opts)
		return err
	})
	return page, err
}

func (r *retryAuthStore) Ping(ctx context.Context) error {
	return r.c.RetryAuth(ctx, r.s.Ping)
}

func (r *retryAuthStore) Backend() string { return r.s.Backend() }

package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/gatewaykit/dbmanager"
)

// apisCollection is the Store collection that holds the APIs.
const apisCollection = "apis"

// errIDCollision: a new random id was already taken every time we tried.
var errIDCollision = errors.New("could not find a free id")

// apiRepo keeps APIs as JSON documents in one collection of a Store. It
// does not know or ask which backend is behind the Store.
type apiRepo struct {
	store dbmanager.Store
}

// create stores spec under a new random id.
func (r *apiRepo) create(ctx context.Context, spec APISpec) (API, error) {
	for range 3 {
		id := newID()
		rec, err := r.put(ctx, id, spec, dbmanager.IfAbsent())
		if errors.Is(err, dbmanager.ErrConflict) {
			continue // a 128-bit id collided: practically never
		}
		return rec, err
	}
	return API{}, errIDCollision
}

// get returns the API with the given id, or ErrNotFound.
func (r *apiRepo) get(ctx context.Context, id string) (API, error) {
	rec, err := r.store.Get(ctx, apisCollection, id)
	if err != nil {
		return API{}, err
	}
	return decodeAPI(rec)
}

// replace stores spec under id if the API's version is still version.
// Otherwise it returns ErrConflict if the API exists, or ErrNotFound.
func (r *apiRepo) replace(ctx context.Context, id string, version int64, spec APISpec) (API, error) {
	a, err := r.put(ctx, id, spec, dbmanager.IfVersion(version))
	if errors.Is(err, dbmanager.ErrConflict) {
		return API{}, r.explainConflict(ctx, id, err)
	}
	return a, err
}

// replaceLatest stores spec under id whatever its version, unless the API
// does not exist (ErrNotFound). It never re-creates an API deleted
// meanwhile: it reads the version and writes only over that version,
// trying again if someone wrote in between.
func (r *apiRepo) replaceLatest(ctx context.Context, id string, spec APISpec) (API, error) {
	var err error
	for range 10 {
		var cur API
		if cur, err = r.get(ctx, id); err != nil {
			return API{}, err
		}
		var a API
		a, err = r.put(ctx, id, spec, dbmanager.IfVersion(cur.Version))
		if !errors.Is(err, dbmanager.ErrConflict) {
			return a, err
		}
	}
	return API{}, err
}

// delete removes the API if its version is still version (any version
// when version is 0). Otherwise like replace.
func (r *apiRepo) delete(ctx context.Context, id string, version int64) error {
	var opts []dbmanager.WriteOption
	if version != 0 {
		opts = append(opts, dbmanager.IfVersion(version))
	}
	err := r.store.Delete(ctx, apisCollection, id, opts...)
	if errors.Is(err, dbmanager.ErrConflict) {
		return r.explainConflict(ctx, id, err)
	}
	return err
}

// list returns up to limit APIs with ids after the cursor, and the cursor
// of the next page ("" at the end).
func (r *apiRepo) list(ctx context.Context, after string, limit int) ([]API, string, error) {
	page, err := r.store.List(ctx, apisCollection, dbmanager.ListOptions{After: after, Limit: limit})
	if err != nil {
		return nil, "", err
	}
	apis := make([]API, 0, len(page.Records))
	for _, rec := range page.Records {
		a, err := decodeAPI(rec)
		if err != nil {
			return nil, "", err
		}
		apis = append(apis, a)
	}
	return apis, page.Next, nil
}

// put writes spec under id with the given conditions.
func (r *apiRepo) put(ctx context.Context, id string, spec APISpec, opts ...dbmanager.WriteOption) (API, error) {
	b, err := json.Marshal(spec)
	if err != nil {
		return API{}, fmt.Errorf("encode API %s: %w", id, err)
	}
	rec, err := r.store.Put(ctx, apisCollection, id, b, opts...)
	if err != nil {
		return API{}, err
	}
	return API{ID: id, APISpec: spec, Version: rec.Version, CreatedAt: rec.CreatedAt, UpdatedAt: rec.UpdatedAt}, nil
}

// explainConflict turns a failed IfVersion into ErrNotFound when the API
// does not exist (IfVersion fails on a missing key too).
func (r *apiRepo) explainConflict(ctx context.Context, id string, conflict error) error {
	_, err := r.store.Get(ctx, apisCollection, id)
	if err != nil {
		return err // ErrNotFound, or the store is failing
	}
	return conflict
}

// decodeAPI turns a stored record into an API.
func decodeAPI(rec dbmanager.Record) (API, error) {
	a := API{ID: rec.Key, Version: rec.Version, CreatedAt: rec.CreatedAt, UpdatedAt: rec.UpdatedAt}
	if err := json.Unmarshal(rec.Value, &a.APISpec); err != nil {
		return API{}, fmt.Errorf("decode API %s: %w", rec.Key, err)
	}
	return a, nil
}

// newID returns 16 random bytes in hex.
func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b)
}

// validID reports whether id looks like an id newID made: 32 lower-case
// hex digits. Anything else cannot be a stored API.
func validID(id string) bool {
	if len(id) != 32 {
		return false
	}
	for _, c := range []byte(id) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"

	"github.com/gatewaykit/dbmanager"
)

// apisCollection is the Store collection that holds the APIs.
const apisCollection = "apis"

// errIDCollision: a new random id was already taken every time we tried.
var errIDCollision = errors.New("could not find a free id")

// apiRepo keeps APIs as JSON documents in a dbmanager.Collection. It does
// not know or ask which backend is behind the Store.
type apiRepo struct {
	apis *dbmanager.Collection[APISpec]
}

func newAPIRepo(store dbmanager.Store) apiRepo {
	return apiRepo{apis: dbmanager.NewCollection[APISpec](store, apisCollection)}
}

// create stores spec under a new random id.
func (r apiRepo) create(ctx context.Context, spec APISpec) (API, error) {
	for range 3 {
		doc, err := r.apis.Create(ctx, newID(), spec)
		if errors.Is(err, dbmanager.ErrConflict) {
			continue // a 128-bit id collided: practically never
		}
		return toAPI(doc), err
	}
	return API{}, errIDCollision
}

// get returns the API with the given id, or ErrNotFound.
func (r apiRepo) get(ctx context.Context, id string) (API, error) {
	doc, err := r.apis.Get(ctx, id)
	return toAPI(doc), err
}

// replace stores spec under id if the API's version is still version.
// Otherwise it returns ErrConflict if the API exists, or ErrNotFound.
func (r apiRepo) replace(ctx context.Context, id string, version int64, spec APISpec) (API, error) {
	doc, err := r.apis.Put(ctx, id, spec, dbmanager.IfVersion(version))
	if errors.Is(err, dbmanager.ErrConflict) {
		return API{}, r.explainConflict(ctx, id, err)
	}
	return toAPI(doc), err
}

// replaceLatest stores spec under id whatever its version, unless the API
// does not exist (ErrNotFound). Collection.Update writes only over the
// version it read, so an API deleted meanwhile is never re-created.
func (r apiRepo) replaceLatest(ctx context.Context, id string, spec APISpec) (API, error) {
	doc, err := r.apis.Update(ctx, id, func(v *APISpec) error { *v = spec; return nil })
	return toAPI(doc), err
}

// delete removes the API if its version is still version (any version
// when version is 0). Otherwise like replace.
func (r apiRepo) delete(ctx context.Context, id string, version int64) error {
	var opts []dbmanager.WriteOption
	if version != 0 {
		opts = append(opts, dbmanager.IfVersion(version))
	}
	err := r.apis.Delete(ctx, id, opts...)
	if errors.Is(err, dbmanager.ErrConflict) {
		return r.explainConflict(ctx, id, err)
	}
	return err
}

// list returns up to limit APIs with ids after the cursor, and the cursor
// of the next page ("" at the end).
func (r apiRepo) list(ctx context.Context, after string, limit int) ([]API, string, error) {
	docs, next, err := r.apis.List(ctx, dbmanager.ListOptions{After: after, Limit: limit})
	if err != nil {
		return nil, "", err
	}
	apis := make([]API, len(docs))
	for i, d := range docs {
		apis[i] = toAPI(d)
	}
	return apis, next, nil
}

// explainConflict turns a failed IfVersion into ErrNotFound when the API
// does not exist (IfVersion fails on a missing key too).
func (r apiRepo) explainConflict(ctx context.Context, id string, conflict error) error {
	if _, err := r.apis.Get(ctx, id); err != nil {
		return err // ErrNotFound, or the store is failing
	}
	return conflict
}

// toAPI shows a stored document as an API.
func toAPI(d dbmanager.Doc[APISpec]) API {
	return API{ID: d.Key, APISpec: d.Value, Version: d.Version, CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt}
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

package storetest

import (
	"errors"
	"strconv"
	"sync"
	"testing"

	"github.com/gatewaykit/dbmanager"
)

func testCRUD(t *testing.T, e *env) {
	e.wantMissing(t, "Get of a key never written is ErrNotFound", "k")
	r := e.put(t, "k", `{"n":1}`)
	if r.Collection != e.coll || r.Key != "k" || string(r.Value) != `{"n":1}` {
		t.Errorf("Put returns the record as stored: got %+v", r)
	}
	e.wantValue(t, "Get returns what Put stored", "k", `{"n":1}`)
	e.put(t, "k", `{"n":2}`)
	e.wantValue(t, "a second Put replaces the value", "k", `{"n":2}`)
	if err := e.s.Delete(e.ctx, e.coll, "k"); err != nil {
		t.Fatalf("Delete of an existing key: %v", err)
	}
	e.wantMissing(t, "Get after Delete is ErrNotFound", "k")
	wantErr(t, "Delete of a missing key is ErrNotFound", e.s.Delete(e.ctx, e.coll, "k"), dbmanager.ErrNotFound)
}

func testVersions(t *testing.T, e *env) {
	for want := int64(1); want <= 3; want++ {
		if r := e.put(t, "k", "1"); r.Version != want {
			t.Errorf("Put number %d returns Version %d, want %d (1 on create, +1 per Put)", want, r.Version, want)
		}
	}
	if r := e.get(t, "k"); r.Version != 3 {
		t.Errorf("Get returns Version %d, want 3, the version of the last Put", r.Version)
	}
	if err := e.s.Delete(e.ctx, e.coll, "k"); err != nil {
		t.Fatal(err)
	}
	if r := e.put(t, "k", "1"); r.Version != 1 {
		t.Errorf("Put after Delete creates the key anew: Version %d, want 1", r.Version)
	}
}

func testIfVersion(t *testing.T, e *env) {
	e.put(t, "k", `"v1"`)
	r := e.put(t, "k", `"v2"`, dbmanager.IfVersion(1))
	if r.Version != 2 {
		t.Errorf("Put IfVersion(current) writes and counts up: Version %d, want 2", r.Version)
	}
	_, err := e.s.Put(e.ctx, e.coll, "k", []byte(`"stale"`), dbmanager.IfVersion(1))
	wantErr(t, "Put IfVersion(stale) is ErrConflict", err, dbmanager.ErrConflict)
	e.wantValue(t, "a failed IfVersion changes nothing", "k", `"v2"`)
	if got := e.get(t, "k"); got.Version != 2 {
		t.Errorf("a failed IfVersion changes nothing: Version %d, want 2", got.Version)
	}
	_, err = e.s.Put(e.ctx, e.coll, "never", []byte(`1`), dbmanager.IfVersion(1))
	wantErr(t, "Put IfVersion on a key that never existed is ErrConflict", err, dbmanager.ErrConflict)
	e.wantMissing(t, "a failed IfVersion creates nothing", "never")
	if err := e.s.Delete(e.ctx, e.coll, "k"); err != nil {
		t.Fatal(err)
	}
	_, err = e.s.Put(e.ctx, e.coll, "k", []byte(`1`), dbmanager.IfVersion(2))
	wantErr(t, "Put IfVersion on a deleted key is ErrConflict", err, dbmanager.ErrConflict)
	e.wantMissing(t, "a failed IfVersion on a deleted key creates nothing", "k")
}

func testIfAbsent(t *testing.T, e *env) {
	r := e.put(t, "k", `"first"`, dbmanager.IfAbsent())
	if r.Version != 1 {
		t.Errorf("Put IfAbsent of a new key creates it: Version %d, want 1", r.Version)
	}
	_, err := e.s.Put(e.ctx, e.coll, "k", []byte(`"second"`), dbmanager.IfAbsent())
	wantErr(t, "Put IfAbsent of an existing key is ErrConflict", err, dbmanager.ErrConflict)
	e.wantValue(t, "a failed IfAbsent changes nothing", "k", `"first"`)
	if err := e.s.Delete(e.ctx, e.coll, "k"); err != nil {
		t.Fatal(err)
	}
	r = e.put(t, "k", `"again"`, dbmanager.IfAbsent())
	if r.Version != 1 {
		t.Errorf("Put IfAbsent of a deleted key creates it anew: Version %d, want 1", r.Version)
	}
}

func testDeleteIfVersion(t *testing.T, e *env) {
	e.put(t, "k", "1")
	e.put(t, "k", "2")
	wantErr(t, "Delete IfVersion(stale) is ErrConflict",
		e.s.Delete(e.ctx, e.coll, "k", dbmanager.IfVersion(1)), dbmanager.ErrConflict)
	e.wantValue(t, "a failed Delete IfVersion changes nothing", "k", "2")
	if err := e.s.Delete(e.ctx, e.coll, "k", dbmanager.IfVersion(2)); err != nil {
		t.Errorf("Delete IfVersion(current) deletes: %v", err)
	}
	e.wantMissing(t, "Delete IfVersion(current) deletes", "k")
	wantErr(t, "Delete IfVersion of a missing key is ErrConflict",
		e.s.Delete(e.ctx, e.coll, "k", dbmanager.IfVersion(2)), dbmanager.ErrConflict)
}

func testCollectionsAreSeparate(t *testing.T, e *env) {
	other := e.coll + "x" // the first collection name is a prefix of this one
	e.put(t, "k", `"mine"`)
	if _, err := e.s.Put(e.ctx, other, "k", []byte(`"other"`)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.Put(e.ctx, other, "only-other", []byte(`1`)); err != nil {
		t.Fatal(err)
	}
	e.wantValue(t, "the same key in two collections holds two values", "k", `"mine"`)
	if keys := e.listAll(t, "", 0); len(keys) != 1 || keys[0] != "k" {
		t.Errorf("List shows one collection only: got keys %q, want [k]", keys)
	}
	if err := e.s.Delete(e.ctx, other, "k"); err != nil {
		t.Fatal(err)
	}
	e.wantValue(t, "Delete in one collection leaves another alone", "k", `"mine"`)
}

// testConcurrentIncrements runs goroutines that each add one to a counter
// with a Get / Put-IfVersion loop: IfVersion must make every increment
// count exactly once.
func testConcurrentIncrements(t *testing.T, e *env) {
	const n = 12
	e.put(t, "counter", "0")
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			for {
				r, err := e.s.Get(e.ctx, e.coll, "counter")
				if err != nil {
					errs <- err
					return
				}
				v, _ := strconv.Atoi(string(r.Value))
				_, err = e.s.Put(e.ctx, e.coll, "counter", []byte(strconv.Itoa(v+1)), dbmanager.IfVersion(r.Version))
				if err == nil {
					return
				}
				if !errors.Is(err, dbmanager.ErrConflict) {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent Get/Put IfVersion: %v", err)
	}
	r := e.get(t, "counter")
	if string(r.Value) != strconv.Itoa(n) || r.Version != n+1 {
		t.Errorf("IfVersion is atomic: %d concurrent increments left value %s version %d, want %d version %d",
			n, r.Value, r.Version, n, n+1)
	}
}

// testConcurrentIfAbsent races goroutines to create one key: exactly one
// may win.
func testConcurrentIfAbsent(t *testing.T, e *env) {
	const n = 12
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins, conflicts := 0, 0
	for i := range n {
		wg.Go(func() {
			_, err := e.s.Put(e.ctx, e.coll, "k", []byte(strconv.Itoa(i)), dbmanager.IfAbsent())
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case errors.Is(err, dbmanager.ErrConflict):
				conflicts++
			default:
				t.Errorf("concurrent Put IfAbsent: %v", err)
			}
		})
	}
	wg.Wait()
	if wins != 1 || conflicts != n-1 {
		t.Errorf("IfAbsent is atomic: %d concurrent creators gave %d successes and %d conflicts, want 1 and %d",
			n, wins, conflicts, n-1)
	}
}

// Package storetest is the conformance suite for dbmanager.Store
// implementations, in the manner of testing/slogtest: call Run from a test
// with a constructor for your store, and every rule of the Store contract
// runs as a named subtest whose failure message says which rule broke.
//
//	func TestMyStore(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) dbmanager.Store { return NewMyStore(t) })
//	}
package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/gatewaykit/dbmanager"
)

// Run checks that the stores newStore returns keep the dbmanager.Store
// contract. newStore must return a new, empty store; Run calls it twice:
// once for a store every subtest shares (each subtest works in collections
// of its own, so subtests do not see each other's data), and once for a
// store it closes (if the store has a Close() error method) to check the
// rules for use after Close. Run cleans up nothing: register cleanups in
// newStore with t.Cleanup.
func Run(t *testing.T, newStore func(t *testing.T) dbmanager.Store) {
	t.Helper()
	shared := newStore(t)
	if shared == nil {
		t.Fatal("storetest: newStore returned nil")
	}
	s := &suite{store: shared}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.run(t, s.newEnv(t))
		})
	}
	t.Run("UseAfterClose", func(t *testing.T) {
		testUseAfterClose(t, newStore(t))
	})
}

// testCase is one rule of the contract.
type testCase struct {
	name string
	run  func(t *testing.T, e *env)
}

// cases lists every rule but use-after-Close, which needs its own store.
var cases = []testCase{
	{"CreateReadReplaceDelete", testCRUD},
	{"Versions", testVersions},
	{"IfVersion", testIfVersion},
	{"IfAbsent", testIfAbsent},
	{"DeleteIfVersion", testDeleteIfVersion},
	{"CollectionsAreSeparate", testCollectionsAreSeparate},
	{"ConcurrentIncrements", testConcurrentIncrements},
	{"ConcurrentIfAbsent", testConcurrentIfAbsent},
	{"ListBytewiseOrder", testListBytewiseOrder},
	{"ListPrefixIsLiteral", testListPrefixIsLiteral},
	{"ListPrefixEdgeRunes", testListPrefixEdgeRunes},
	{"ListPageBoundaries", testListPageBoundaries},
	{"ListAfterCursor", testListAfterCursor},
	{"ListWhileChanging", testListWhileChanging},
	{"ListLimitDefaultAndCap", testListLimitDefaultAndCap},
	{"ValuesByteForByte", testValuesByteForByte},
	{"LargeValue", testLargeValue},
	{"InvalidValues", testInvalidValues},
	{"InvalidNames", testInvalidNames},
	{"InvalidOptions", testInvalidOptions},
	{"NoAliasing", testNoAliasing},
	{"CancelledContext", testCancelledContext},
	{"ErrorsNameCollectionAndKey", testErrorsNameCollectionAndKey},
	{"Timestamps", testTimestamps},
	{"Ping", testPing},
	{"Backend", testBackend},
}

type suite struct {
	store dbmanager.Store
	n     atomic.Int64
}

// env is what one subtest works with: the shared store and a collection
// name nobody else uses.
type env struct {
	s    dbmanager.Store
	coll string
	ctx  context.Context
	uniq func() string
}

func (s *suite) newEnv(t *testing.T) *env {
	id := s.n.Add(1)
	return &env{
		s:    s.store,
		coll: fmt.Sprintf("storetest-%d", id),
		ctx:  t.Context(),
		uniq: func() string { return fmt.Sprintf("storetest-%d-%d", id, s.n.Add(1)) },
	}
}

// put stores value under key in the env's collection and fails the test if
// that does not work.
func (e *env) put(t *testing.T, key, value string, opts ...dbmanager.WriteOption) dbmanager.Record {
	t.Helper()
	r, err := e.s.Put(e.ctx, e.coll, key, []byte(value), opts...)
	if err != nil {
		t.Fatalf("Put(%q, %q): %v", key, value, err)
	}
	return r
}

// get reads key and fails the test if that does not work.
func (e *env) get(t *testing.T, key string) dbmanager.Record {
	t.Helper()
	r, err := e.s.Get(e.ctx, e.coll, key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return r
}

// wantValue fails unless key holds exactly want.
func (e *env) wantValue(t *testing.T, rule, key, want string) {
	t.Helper()
	if got := e.get(t, key); string(got.Value) != want {
		t.Errorf("%s: Get(%q) = %q, want %q", rule, key, got.Value, want)
	}
}

// wantMissing fails unless Get(key) is ErrNotFound.
func (e *env) wantMissing(t *testing.T, rule, key string) {
	t.Helper()
	if _, err := e.s.Get(e.ctx, e.coll, key); !errors.Is(err, dbmanager.ErrNotFound) {
		t.Errorf("%s: Get(%q) error = %v, want ErrNotFound", rule, key, err)
	}
}

// wantErr fails unless err wraps target.
func wantErr(t *testing.T, rule string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: error = %v, want one wrapping %v", rule, err, target)
	}
}

// listAll pages through the env's collection with the given prefix and
// page size and returns the keys in the order received.
func (e *env) listAll(t *testing.T, prefix string, limit int) []string {
	t.Helper()
	var keys []string
	after := ""
	for pages := 0; ; pages++ {
		if pages > 10000 {
			t.Fatalf("List never ended: Next keeps coming (last %q)", after)
		}
		p, err := e.s.List(e.ctx, e.coll, dbmanager.ListOptions{Prefix: prefix, After: after, Limit: limit})
		if err != nil {
			t.Fatalf("List(prefix %q, after %q, limit %d): %v", prefix, after, limit, err)
		}
		for _, r := range p.Records {
			keys = append(keys, r.Key)
		}
		if p.Next == "" {
			return keys
		}
		after = p.Next
	}
}

package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/gatewaykit/dbmanager"
)

func testTimestamps(t *testing.T, e *env) {
	before := time.Now().Add(-time.Hour) // generous: a database clock may differ a little
	first := e.put(t, "k", "1")
	checkTime := func(what string, ts time.Time) {
		t.Helper()
		if ts.Location() != time.UTC {
			t.Errorf("timestamps are in UTC: %s is in %v", what, ts.Location())
		}
		if !ts.Equal(ts.Truncate(time.Microsecond)) {
			t.Errorf("timestamps have microsecond precision: %s is %v", what, ts.Format(time.RFC3339Nano))
		}
		if ts.Before(before) || ts.After(time.Now().Add(time.Hour)) {
			t.Errorf("timestamps are the time of the write: %s is %v, now is %v", what, ts, time.Now())
		}
	}
	checkTime("CreatedAt of Put", first.CreatedAt)
	checkTime("UpdatedAt of Put", first.UpdatedAt)
	if !first.CreatedAt.Equal(first.UpdatedAt) {
		t.Errorf("a new record has UpdatedAt == CreatedAt: %v and %v", first.CreatedAt, first.UpdatedAt)
	}
	got := e.get(t, "k")
	checkTime("CreatedAt of Get", got.CreatedAt)
	if !got.CreatedAt.Equal(first.CreatedAt) || !got.UpdatedAt.Equal(first.UpdatedAt) {
		t.Errorf("Get returns the times Put returned: got %v/%v, Put gave %v/%v", got.CreatedAt, got.UpdatedAt, first.CreatedAt, first.UpdatedAt)
	}
	time.Sleep(2 * time.Millisecond) // let the clock move past microsecond resolution
	second := e.put(t, "k", "2")
	if !second.CreatedAt.Equal(first.CreatedAt) {
		t.Errorf("a later Put keeps CreatedAt: was %v, now %v", first.CreatedAt, second.CreatedAt)
	}
	if !second.UpdatedAt.After(first.UpdatedAt) {
		t.Errorf("a later Put advances UpdatedAt: was %v, now %v", first.UpdatedAt, second.UpdatedAt)
	}
	p, err := e.s.List(e.ctx, e.coll, dbmanager.ListOptions{})
	if err != nil || len(p.Records) != 1 {
		t.Fatalf("List: %v", err)
	}
	checkTime("UpdatedAt of List", p.Records[0].UpdatedAt)
	if !p.Records[0].UpdatedAt.Equal(second.UpdatedAt) {
		t.Errorf("List returns the times Put returned: got %v, Put gave %v", p.Records[0].UpdatedAt, second.UpdatedAt)
	}
}

func testPing(t *testing.T, e *env) {
	if err := e.s.Ping(e.ctx); err != nil {
		t.Errorf("Ping of a working store succeeds: %v", err)
	}
}

func testBackend(t *testing.T, e *env) {
	switch b := e.s.Backend(); b {
	case dbmanager.BackendPostgreSQL, dbmanager.BackendMemory:
	default:
		t.Errorf("Backend returns BackendPostgreSQL or BackendMemory: got %q", b)
	}
}

func testUseAfterClose(t *testing.T, s dbmanager.Store) {
	closer, ok := s.(interface{ Close() error })
	if !ok {
		t.Skipf("%T has no Close() error method", s)
	}
	ctx := t.Context()
	if _, err := s.Put(ctx, "storetest-closed", "k", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if err := closer.Close(); err != nil {
		t.Errorf("Close of an open store succeeds: %v", err)
	}
	_, err := s.Get(ctx, "storetest-closed", "k")
	wantErr(t, "Get after Close is ErrClosed", err, dbmanager.ErrClosed)
	_, err = s.Put(ctx, "storetest-closed", "k", []byte("2"))
	wantErr(t, "Put after Close is ErrClosed", err, dbmanager.ErrClosed)
	wantErr(t, "Delete after Close is ErrClosed", s.Delete(ctx, "storetest-closed", "k"), dbmanager.ErrClosed)
	_, err = s.List(ctx, "storetest-closed", dbmanager.ListOptions{})
	wantErr(t, "List after Close is ErrClosed", err, dbmanager.ErrClosed)
	wantErr(t, "Ping after Close is ErrClosed", s.Ping(ctx), dbmanager.ErrClosed)
	if err := closer.Close(); err != nil {
		t.Errorf("closing twice is harmless: %v", err)
	}
	var oe *dbmanager.OpError
	if !errors.As(err, &oe) {
		t.Errorf("errors after Close are *OpError too: got %T", err)
	}
}

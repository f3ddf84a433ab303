package dbmanager

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// The full contract is checked by storetest (conformance_test.go); these
// tests cover what is particular to MemStore's structure.

func TestMemStoreListWalksOrderedKeysOnly(t *testing.T) {
	ctx := context.Background()
	s := NewMemStore()
	for i := range 50 {
		for _, c := range []string{"a", "b"} {
			if _, err := s.Put(ctx, c, fmt.Sprintf("k%02d", i), []byte(`1`)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.Delete(ctx, "a", "k10"); err != nil {
		t.Fatal(err)
	}
	page, err := s.List(ctx, "a", ListOptions{Prefix: "k1", Limit: 5})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range page.Records {
		got = append(got, r.Key)
	}
	want := []string{"k11", "k12", "k13", "k14", "k15"}
	if fmt.Sprint(got) != fmt.Sprint(want) || page.Next != "k15" {
		t.Fatalf("List(prefix k1, limit 5) = %v next %q; want %v next k15", got, page.Next, want)
	}
	page, err = s.List(ctx, "a", ListOptions{Prefix: "k1", After: "k15"})
	if err != nil || len(page.Records) != 4 || page.Next != "" {
		t.Fatalf("second page: %d records, next %q, err %v; want 4 records and no next", len(page.Records), page.Next, err)
	}
}

func TestMemStoreCloseDropsData(t *testing.T) {
	ctx := context.Background()
	s := NewMemStore()
	if _, err := s.Put(ctx, "c", "k", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "c", "k"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Close: %v, want ErrClosed", err)
	}
	if s.Backend() != BackendMemory {
		t.Fatalf("Backend() = %q", s.Backend())
	}
}

func TestMemStoreManyCollections(t *testing.T) {
	ctx := context.Background()
	s := NewMemStore()
	const n = 3 * firstCollections
	for round := range 2 {
		for i := range n {
			if _, err := s.Put(ctx, fmt.Sprintf("c%02d", i), "k", []byte(fmt.Sprint(i*10+round))); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := range n {
		r, err := s.Get(ctx, fmt.Sprintf("c%02d", i), "k")
		if err != nil || string(r.Value) != fmt.Sprint(i*10+1) || r.Version != 2 {
			t.Fatalf("collection %d: %+v %v", i, r, err)
		}
	}
	if got := len(s.snapshot()); got != n {
		t.Fatalf("snapshot has %d records, want %d", got, n)
	}
}

func TestShardIndexSpreadsKeys(t *testing.T) {
	var counts [memShards]int
	for _, k := range benchKeyNames(memShards * 64) {
		counts[shardIndex(k)]++
	}
	for _, k := range []string{"", "a", "ab", "abcdefg", "abcdefgh", "\xf4\x8f\xbf\xbf"} {
		counts[shardIndex(k)]++ // in range for every length
	}
	for i, c := range counts {
		if c < 16 || c > 160 {
			t.Fatalf("shard %d holds %d of %d sequential keys: %v", i, c, memShards*64, counts)
		}
	}
}

func TestStampClockFollowsTheWallClock(t *testing.T) {
	var c stampClock
	last := int64(0)
	deadline := time.Now().Add(stampRebase + 200*time.Millisecond) // across a new base
	for i := 0; time.Now().Before(deadline); i++ {
		before := time.Now().UnixMicro()
		got := c.nowMicro()
		after := time.Now().UnixMicro()
		// One clock read plus the monotonic time since a wall-clock read
		// agrees with the wall clock but for drift (1 ms is generous).
		if got < before-1000 || got > after+1000 {
			t.Fatalf("stamp %d outside [%d, %d]", got, before, after)
		}
		if got < last-1000 { // within a base never; at a new one by drift at most
			t.Fatalf("stamp went back: %d after %d", got, last)
		}
		last = got
		time.Sleep(time.Millisecond)
	}
}

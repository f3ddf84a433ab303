package storetest

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/gatewaykit/dbmanager"
)

// collationKeys sort differently bytewise than in any linguistic collation
// (en_US puts "B" after "a", ignores "_" and "%", sorts "é" next to "e").
var collationKeys = []string{"a", "B", "_", "%", "é", "z\x7f", "e", "Z", "a b", "a-b", "ab", "~", "\u00a0", "日本", "\U0001F600", "\U0010FFFF"}

func testListBytewiseOrder(t *testing.T, e *env) {
	for _, k := range collationKeys {
		e.put(t, k, "1")
	}
	want := slices.Clone(collationKeys)
	slices.Sort(want)
	for _, limit := range []int{0, 1, 3} {
		if got := e.listAll(t, "", limit); !slices.Equal(got, want) {
			t.Errorf("List orders keys bytewise as Go compares strings (limit %d): got %q, want %q", limit, got, want)
		}
	}
}

func testListPrefixIsLiteral(t *testing.T, e *env) {
	keys := []string{"a%b", "a%c", "axb", "a_b", "aXb", "a\\b", "a\\\\b", "ab", "a", "a%", "b%", `a\%`, "a__"}
	for _, k := range keys {
		e.put(t, k, "1")
	}
	for _, prefix := range []string{"a%", "a_", "a\\", "a\\%", "%", "_", "\\", "a", "a__", "ab", "nothing"} {
		var want []string
		for _, k := range keys {
			if strings.HasPrefix(k, prefix) {
				want = append(want, k)
			}
		}
		slices.Sort(want)
		for _, limit := range []int{0, 2} {
			if got := e.listAll(t, prefix, limit); !slices.Equal(got, want) {
				t.Errorf("Prefix %q matches literally (%%, _ and \\ are ordinary), limit %d: got %q, want %q", prefix, limit, got, want)
			}
		}
	}
}

// testListPrefixEdgeRunes uses prefixes whose last rune is multi-byte or
// the largest rune, where computing a key range is easy to get wrong.
func testListPrefixEdgeRunes(t *testing.T, e *env) {
	keys := []string{"é", "éa", "é\U0010FFFF", "ê", "e", "\U0010FFFF", "\U0010FFFFa", "\U0010FFFF\U0010FFFF", "\uD7FF", "\uD7FFx", "\uE000",
		"z\x7f", "z\x7fa", "z\u0080", "日", "日本", "旦"}
	for _, k := range keys {
		e.put(t, k, "1")
	}
	for _, prefix := range []string{"é", "\U0010FFFF", "\U0010FFFF\U0010FFFF", "\uD7FF", "z\x7f", "z", "日", "é\U0010FFFF"} {
		var want []string
		for _, k := range keys {
			if strings.HasPrefix(k, prefix) {
				want = append(want, k)
			}
		}
		slices.Sort(want)
		if got := e.listAll(t, prefix, 0); !slices.Equal(got, want) {
			t.Errorf("Prefix %q keeps exactly the keys that start with it: got %q, want %q", prefix, got, want)
		}
	}
}

func testListPageBoundaries(t *testing.T, e *env) {
	var all []string
	for i := range 12 {
		k := fmt.Sprintf("k%02d", i)
		all = append(all, k)
		e.put(t, k, "1")
	}
	for _, limit := range []int{1, 3, 4, 6, 11, 12, 13} {
		after := ""
		var got []string
		for pages := 1; ; pages++ {
			p, err := e.s.List(e.ctx, e.coll, dbmanager.ListOptions{After: after, Limit: limit})
			if err != nil {
				t.Fatal(err)
			}
			rest := len(all) - len(got)
			wantLen := min(limit, rest)
			if len(p.Records) != wantLen {
				t.Errorf("a page holds Limit records while more remain (limit %d, page %d): got %d, want %d", limit, pages, len(p.Records), wantLen)
			}
			for _, r := range p.Records {
				got = append(got, r.Key)
			}
			last := rest <= limit
			switch {
			case last && p.Next != "":
				t.Errorf("Next is empty on the last page (limit %d, page %d, exactly %d records left): got %q", limit, pages, rest, p.Next)
			case !last && len(p.Records) > 0 && p.Next != p.Records[len(p.Records)-1].Key:
				t.Errorf("Next is the last key of a page that has more after it (limit %d, page %d): got %q, want %q", limit, pages, p.Next, p.Records[len(p.Records)-1].Key)
			}
			if p.Next == "" || pages > len(all)+1 {
				break
			}
			after = p.Next
		}
		if !slices.Equal(got, all) {
			t.Errorf("paging with Limit %d returns every key once, in order: got %q, want %q", limit, got, all)
		}
	}
}

func testListAfterCursor(t *testing.T, e *env) {
	for _, k := range []string{"a", "b", "ba", "c"} {
		e.put(t, k, "1")
	}
	cases := []struct {
		prefix, after string
		want          []string
	}{
		{"", "a", []string{"b", "ba", "c"}},
		{"", "aa", []string{"b", "ba", "c"}}, // a cursor that is no key
		{"", "c", nil},
		{"", "zzz", nil},
		{"b", "", []string{"b", "ba"}},
		{"b", "b", []string{"ba"}},
		{"b", "a", []string{"b", "ba"}}, // a cursor before the prefix
		{"b", "bz", nil},                // a cursor after the prefix
	}
	for _, c := range cases {
		p, err := e.s.List(e.ctx, e.coll, dbmanager.ListOptions{Prefix: c.prefix, After: c.after})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range p.Records {
			got = append(got, r.Key)
		}
		if !slices.Equal(got, c.want) || p.Next != "" {
			t.Errorf("After is a strict lower bound (prefix %q, after %q): got %q next %q, want %q next \"\"", c.prefix, c.after, got, p.Next, c.want)
		}
	}
}

// testListWhileChanging pages through keys while others are added and
// removed between pages: the keys that stayed are each seen exactly once.
func testListWhileChanging(t *testing.T, e *env) {
	stay := map[string]bool{}
	for i := range 40 {
		k := fmt.Sprintf("k%03d", i*10)
		e.put(t, k, "1")
		if i%2 == 0 {
			stay[k] = true
		}
	}
	seen := map[string]int{}
	after, prev := "", ""
	for page := 0; ; page++ {
		p, err := e.s.List(e.ctx, e.coll, dbmanager.ListOptions{After: after, Limit: 7})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range p.Records {
			if r.Key <= prev {
				t.Errorf("keys come in increasing order across pages under change: %q after %q", r.Key, prev)
			}
			prev = r.Key
			seen[r.Key]++
		}
		if p.Next == "" {
			break
		}
		after = p.Next
		// Change the collection around the cursor: remove volatile keys,
		// add new keys before and after it.
		for i := range 40 {
			k := fmt.Sprintf("k%03d", i*10)
			if !stay[k] && (i+page)%3 == 0 {
				_ = e.s.Delete(e.ctx, e.coll, k)
			}
		}
		e.put(t, fmt.Sprintf("k%03d", page*37%400+1), "2")
		e.put(t, after+"!", "2")
	}
	for k := range stay {
		if seen[k] != 1 {
			t.Errorf("paging under change sees every key that stayed exactly once: %q seen %d times", k, seen[k])
		}
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("paging under change repeats no key: %q seen %d times", k, n)
		}
	}
}

func testListLimitDefaultAndCap(t *testing.T, e *env) {
	const total = dbmanager.MaxListLimit + 1
	keys := make([]string, total)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%05d", i)
	}
	putConcurrently(t, e, keys)
	p, err := e.s.List(e.ctx, e.coll, dbmanager.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Records) != dbmanager.DefaultListLimit || p.Next == "" {
		t.Errorf("Limit 0 means DefaultListLimit (%d): got %d records, next %q", dbmanager.DefaultListLimit, len(p.Records), p.Next)
	}
	p, err = e.s.List(e.ctx, e.coll, dbmanager.ListOptions{Limit: 1 << 30})
	if err != nil {
		t.Errorf("a Limit over MaxListLimit is capped, not an error: %v", err)
		return
	}
	if len(p.Records) != dbmanager.MaxListLimit || p.Next != keys[dbmanager.MaxListLimit-1] {
		t.Errorf("a Limit over MaxListLimit is capped to %d: got %d records, next %q", dbmanager.MaxListLimit, len(p.Records), p.Next)
	}
}

// putConcurrently writes "1" under each key using a few goroutines, to keep
// a network backend's setup short.
func putConcurrently(t *testing.T, e *env, keys []string) {
	t.Helper()
	const workers = 8
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			for i := w; i < len(keys); i += workers {
				if _, err := e.s.Put(e.ctx, e.coll, keys[i], []byte("1")); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Fatalf("Put: %v", err)
		}
	}
}

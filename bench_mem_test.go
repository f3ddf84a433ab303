package dbmanager

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
)

// The memory benchmarks run the store side by side with a baseline so the
// result reads as a ratio (see README, "Performance"):
//
//   - Get and Put (BenchmarkMemRatio, bench_ratio_test.go) against a single
//     sync.RWMutex-guarded map doing the same copies (Get copies the value
//     out; Put copies it in and returns a copy, as Store.Put returns the
//     record), as a service would write it by hand: Put checks the key
//     and validates the value with encoding/json's json.Valid (the store
//     must check every value is JSON; a baseline that skipped it would
//     measure the contract, not the data structure). A second Put
//     baseline validates with the store's own validator instead, to show
//     what the data structure alone costs.
//   - List of 100 keys from 100,000 against sorting the keys on each call.

const benchKeys = 1024

var benchValue = []byte(`{"name":"orders","base_path":"/orders","upstream_url":"https://orders.internal:8443/v1","methods":["GET","POST","PUT"],"rate_limit_per_minute":600,"enabled":true,"tags":["team-a","tier-1"],"owner":"platform@example.com"}`)

func benchKeyNames(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("api-%06d", i)
	}
	return keys
}

// rwMap is the baseline: one RWMutex around one map, with the store's key
// check and a JSON check of each value (json.Valid, or the store's own
// validator when sameValidator is set).
type rwMap struct {
	mu            sync.RWMutex
	m             map[string][]byte
	sameValidator bool
}

func (b *rwMap) get(_ context.Context, key string) ([]byte, bool) {
	b.mu.RLock()
	v, ok := b.m[key]
	b.mu.RUnlock()
	return slices.Clone(v), ok
}

func (b *rwMap) put(_ context.Context, key string, v []byte) ([]byte, error) {
	if err := validateName("key", key, MaxKeyLen); err != nil {
		return nil, err
	}
	if b.sameValidator {
		if err := validateValue(v); err != nil {
			return nil, err
		}
	} else if !json.Valid(v) {
		return nil, ErrInvalid
	}
	v = slices.Clone(v)
	b.mu.Lock()
	b.m[key] = v
	b.mu.Unlock()
	return slices.Clone(v), nil
}

func BenchmarkMemList(b *testing.B) {
	ctx := context.Background()
	const total, page = 100_000, 100
	keys := benchKeyNames(total)
	value := []byte(`{"n":1}`)
	b.Run("store", func(b *testing.B) {
		s := NewMemStore()
		for _, k := range keys {
			if _, err := s.Put(ctx, "apis", k, value); err != nil {
				b.Fatal(err)
			}
		}
		b.ResetTimer()
		for i := 0; b.Loop(); i++ {
			p, err := s.List(ctx, "apis", ListOptions{After: keys[(i*7919)%(total-page)], Limit: page})
			if err != nil || len(p.Records) != page {
				b.Fatal(err, len(p.Records))
			}
		}
	})
	b.Run("sort-per-call", func(b *testing.B) {
		m := make(map[string][]byte, total)
		for _, k := range keys {
			m[k] = value
		}
		b.ResetTimer()
		for i := 0; b.Loop(); i++ {
			after := keys[(i*7919)%(total-page)]
			all := make([]string, 0, len(m))
			for k := range m {
				all = append(all, k)
			}
			sort.Strings(all)
			start := sort.SearchStrings(all, after)
			if start < len(all) && all[start] == after {
				start++
			}
			out := make([][]byte, 0, page)
			for _, k := range all[start:min(start+page, len(all))] {
				if strings.HasPrefix(k, "") {
					out = append(out, slices.Clone(m[k]))
				}
			}
			if len(out) != page {
				b.Fatal(len(out))
			}
		}
	})
}

package dbmanager

import (
	"context"
	"os"
	"sync"
	"testing"
)

func BenchmarkTmpPutSide(b *testing.B) {
	bm := newManagerBench(b)
	ctx, s := context.Background(), bm.m.Store()
	side := os.Getenv("SIDE")
	b.ResetTimer()
	var wg sync.WaitGroup
	per := b.N / 8
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				k := bm.key(g*7919 + i)
				var err error
				if side == "store" {
					_, err = s.Put(ctx, "bench", k, benchValue)
				} else {
					_, err = bm.rawPut(ctx, k, benchValue)
				}
				if err != nil {
					b.Error(err)
				}
			}
		}()
	}
	wg.Wait()
}

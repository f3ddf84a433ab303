package dbmanager

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gatewaykit/dbmanager/internal/pgtest"
)

// TestSilentWriterIsGivenUp black-holes the network to the writer while
// calls are in flight, with the default settings: no call waits past its
// deadline, health says unhealthy and the outage is logged within 10 s,
// and once the network heals the pool serves again without a restart.
//
// On loopback the proxy keeps reading what the client sends, so the
// kernel acknowledges it and TCP_USER_TIMEOUT cannot fire here (the
// dialer tests show it does on a stalled connection): this test bounds the
// silent writer through what the library does itself (deadlines, the
// health check's timeout).
func TestSilentWriterIsGivenUp(t *testing.T) {
	ctx := context.Background()
	dbURL, proxy := viaProxy(t, pgtest.URL(t))
	m, logs := newTestManager(t, envConfig(t, "DATABASE_URL", dbURL)) // defaults
	if err := m.Init(ctx); err != nil {
		t.Fatal(err)
	}
	s := m.Store()
	load := startWriteLoad(s, 4, time.Second)
	load.waitAcked(t, 100, time.Minute)
	load.finish()

	proxy.BlackHole()
	silent := time.Now()
	sampler := sampleHealth(m, 200*time.Millisecond)

	const deadline = time.Second
	var wg sync.WaitGroup
	var mu sync.Mutex
	var slow []string
	var writeErrs, readErrs []error
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 3 {
				cctx, cancel := context.WithTimeout(ctx, deadline)
				start := time.Now()
				var err error
				if i%2 == 0 {
					_, err = s.Put(cctx, "silent", fmt.Sprint(i, "-", j), []byte(`1`))
				} else {
					_, err = s.Get(cctx, "load", "w0-000000")
				}
				took := time.Since(start)
				cancel()
				mu.Lock()
				if took > deadline+100*time.Millisecond {
					slow = append(slow, fmt.Sprintf("%s (%v)", took, err))
				}
				if i%2 == 0 {
					writeErrs = append(writeErrs, err)
				} else {
					readErrs = append(readErrs, err)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for _, s := range slow {
		t.Errorf("a call with a %s deadline took %s", deadline, s)
	}
	for _, err := range writeErrs {
		if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("a write to a silent writer = %v; want ErrUnavailable (or ErrOutcomeUnknown) and its deadline", err)
		}
	}
	for _, err := range readErrs {
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("a read from a silent writer = %v; want its deadline", err)
		}
	}

	eventually(t, 10*time.Second, "the silent writer to be logged as lost", func() bool {
		return countLines(logs, "Primary database connection lost") == 1
	})
	lostAt := time.Since(silent) // an upper bound: the calls above ran first
	samples := sampler.finish()
	unhealthyAt := time.Duration(-1)
	for _, smp := range samples {
		if smp.end.Sub(smp.start) > m.opts.healthTimeout+250*time.Millisecond {
			t.Errorf("a health check took %s; want at most its %s timeout", smp.end.Sub(smp.start), m.opts.healthTimeout)
		}
		if smp.status == StatusHealthy && smp.start.After(silent) {
			t.Errorf("Health said healthy at %s after the writer went silent", smp.start.Sub(silent))
		}
		if smp.status == StatusUnhealthy && unhealthyAt < 0 {
			unhealthyAt = smp.end.Sub(silent)
		}
	}
	if unhealthyAt < 0 || unhealthyAt > 10*time.Second {
		t.Errorf("health said unhealthy %s after the writer went silent; want within 10 s", unhealthyAt)
	}
	if lostAt > 10*time.Second {
		t.Errorf("the silent writer was logged as lost %s after it went silent; want within 10 s", lostAt)
	}
	t.Logf("silent writer: health unhealthy %s after it went silent, logged lost by %s; health %s",
		unhealthyAt.Round(time.Millisecond), lostAt.Round(time.Millisecond), statusCounts(samples))

	proxy.Heal()
	eventually(t, 10*time.Second, "writes to succeed after the network heals", func() bool {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		_, err := s.Put(cctx, "silent", "after", []byte(`1`))
		return err == nil
	})
	if h := m.Health(ctx); h.Status != StatusHealthy {
		t.Errorf("Health after healing = %+v", h)
	}
	if n := countLines(logs, "Primary database connection restored"); n != 1 {
		t.Errorf("%d 'restored' lines; want 1", n)
	}
}

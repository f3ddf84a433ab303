package writegate

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestOpenGateLetsWritesThrough(t *testing.T) {
	var g Gate
	for range 3 {
		if err := g.Enter(context.Background()); err != nil {
			t.Fatalf("Enter on an open gate: %v", err)
		}
	}
	for range 3 {
		g.Leave()
	}
	if err := g.Close(context.Background()); err != nil {
		t.Fatalf("Close with no writes in flight: %v", err)
	}
	g.Open()
}

// TestCloseWaitsForWritesInFlight: Close returns only after every write
// that entered has left, and a write arriving meanwhile waits for Open.
func TestCloseWaitsForWritesInFlight(t *testing.T) {
	var g Gate
	if err := g.Enter(context.Background()); err != nil {
		t.Fatal(err)
	}
	var closed atomic.Bool
	done := make(chan error)
	go func() {
		err := g.Close(context.Background())
		closed.Store(true)
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	if closed.Load() {
		t.Fatal("Close returned while a write was in flight")
	}
	g.Leave()
	if err := <-done; err != nil {
		t.Fatalf("Close: %v", err)
	}

	var entered atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := g.Enter(context.Background()); err != nil {
			t.Errorf("Enter after Open: %v", err)
			return
		}
		entered.Store(true)
		g.Leave()
	}()
	time.Sleep(20 * time.Millisecond)
	if entered.Load() {
		t.Fatal("a write entered a closed gate")
	}
	g.Open()
	wg.Wait()
	if !entered.Load() {
		t.Fatal("the waiting write did not enter after Open")
	}
}

// TestEnterGivesUpWithItsContext: a write waiting at a closed gate ends
// with its context's error.
func TestEnterGivesUpWithItsContext(t *testing.T) {
	var g Gate
	if err := g.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer g.Open()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := g.Enter(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Enter at a closed gate = %v; want its context's deadline", err)
	}
}

// TestCloseGivesUpAndReopens: a Close whose context ends before the
// writes in flight leave reopens the gate and returns the context's error.
func TestCloseGivesUpAndReopens(t *testing.T) {
	var g Gate
	if err := g.Enter(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := g.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close = %v; want its context's deadline", err)
	}
	if err := g.Enter(context.Background()); err != nil {
		t.Fatalf("Enter after a Close that gave up: %v", err)
	}
	g.Leave()
	g.Leave()
}

package outage

import (
	"sync"
	"testing"
	"time"
)

func TestOneOutageIsOneBeginAndOneEnd(t *testing.T) {
	var tr Tracker
	before := tr.Epoch()
	if !tr.Failed(before, false) || !tr.Down() {
		t.Fatal("a lost connection did not begin an outage")
	}
	if tr.Succeeded(before, true) || !tr.Down() {
		t.Fatal("a call that started before the outage ended it")
	}
	during := tr.Epoch()
	if tr.Failed(during, false) {
		t.Fatal("a second failure began a second outage")
	}
	if !tr.Succeeded(during, true) || tr.Down() {
		t.Fatal("a success of a call started during the outage did not end it")
	}
	if tr.Failed(during, false) || tr.Down() {
		t.Fatal("a straggler of the ended outage began a new one")
	}
	if tr.Succeeded(tr.Epoch(), true) {
		t.Fatal("a success without an outage ended one")
	}
	if s := tr.SuspectSince(); s == 0 || time.Since(time.Unix(0, s)) > time.Minute {
		t.Errorf("SuspectSince = %v after failures", tr.SuspectSince())
	}
}

func TestAReadOnlyOutageEndsOnlyWithAWrite(t *testing.T) {
	var tr Tracker
	if !tr.Failed(tr.Epoch(), true) {
		t.Fatal("a read-only refusal did not begin an outage")
	}
	e := tr.Epoch()
	if tr.Succeeded(e, false) {
		t.Fatal("a read on a read-only node ended the outage")
	}
	if !tr.Succeeded(e, true) {
		t.Fatal("a write did not end it")
	}
}

func TestAReadOnlyRefusalDuringAnOutageKeepsItForWrites(t *testing.T) {
	var tr Tracker
	tr.Failed(tr.Epoch(), false)
	tr.Failed(tr.Epoch(), true) // the node came back read-only
	if tr.Succeeded(tr.Epoch(), false) {
		t.Fatal("a read ended an outage that includes read-only refusals")
	}
}

func TestConcurrentReportsBeginOneOutage(t *testing.T) {
	var tr Tracker
	e := tr.Epoch()
	var wg sync.WaitGroup
	var mu sync.Mutex
	began := 0
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if tr.Failed(e, false) {
				mu.Lock()
				began++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if began != 1 {
		t.Errorf("%d outages began from one epoch's failures, want 1", began)
	}
	if new(Tracker).SuspectSince() != 0 {
		t.Error("a new tracker suspects its connections")
	}
}

package walpos

import (
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestNewPositionIsUnknownUntilLearned(t *testing.T) {
	p := New()
	_, known := p.Current()
	assert.False(t, known, "a new Store has not seen the writer's earlier writes")
	select {
	case <-p.Wake():
	default:
		t.Fatal("a new position wakes the learner")
	}
	gen, due := p.Pending()
	assert.True(t, due)
	p.LearnedAt(gen, 100)
	lsn, known := p.Current()
	assert.True(t, known)
	assert.Equal(t, uint64(100), lsn)
	_, due = p.Pending()
	assert.False(t, due)
}

func TestAdvanceNeverGoesDown(t *testing.T) {
	p := New()
	gen, _ := p.Pending()
	p.LearnedAt(gen, 0)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 1000 {
				p.Advance(uint64(i*1000 + j))
			}
		}()
	}
	wg.Wait()
	p.Advance(5)
	lsn, known := p.Current()
	assert.True(t, known)
	assert.Equal(t, uint64(7999), lsn)
}

func TestAnUnknownWriteDuringALearnKeepsThePositionUnknown(t *testing.T) {
	p := New()
	gen, _ := p.Pending() // the learner starts
	p.MarkUnknown()       // a write's position is lost meanwhile
	p.LearnedAt(gen, 50)  // the learner's answer predates that write
	_, known := p.Current()
	assert.False(t, known, "the learn did not cover the later unknown write")
	gen, due := p.Pending()
	assert.True(t, due)
	p.LearnedAt(gen, 60)
	lsn, known := p.Current()
	assert.True(t, known)
	assert.Equal(t, uint64(60), lsn)

	p.LearnedAt(gen-1, 10) // a stale learner's report changes nothing
	lsn, known = p.Current()
	assert.True(t, known)
	assert.Equal(t, uint64(60), lsn)
}

func TestWakeKeepsOneWakeUp(t *testing.T) {
	p := New()
	p.MarkUnknown()
	p.MarkUnknown()
	<-p.Wake()
	select {
	case <-p.Wake():
		t.Fatal("more than one wake-up was kept")
	default:
	}
}

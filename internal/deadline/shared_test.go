package deadline

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestWaitsShareOneSliceAndCloseIt(t *testing.T) {
	const timeout = 64 * time.Millisecond
	w := NewWaits(timeout)
	before := time.Now()
	s := w.Current()
	after := time.Now()
	assert.Same(t, s, w.Current(), "acquires within one slice share its deadline")
	assert.False(t, s.Passed())
	// The deadline is the timeout and one slice from the moment the slice
	// was made, which lies between before and after.
	assert.False(t, s.Deadline().Before(before.Add(timeout+w.slice)), "a joiner still waits the whole timeout")
	assert.False(t, s.Deadline().After(after.Add(timeout+w.slice)), "at most a slice more")

	select {
	case <-s.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the slice's timer never closed it")
	}
	assert.True(t, s.Passed())
	next := w.Current()
	require.NotSame(t, s, next, "an acquire after the slice joins a new one")
	assert.False(t, next.Passed())
}

func TestWaitsSliceIsAtLeastAMillisecond(t *testing.T) {
	w := NewWaits(time.Millisecond)
	assert.Equal(t, time.Millisecond, w.slice)
}

package deadline

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type valueKey struct{}

func TestWithBoundReportsADeadlineNoTimerEnforces(t *testing.T) {
	parent := context.WithValue(context.Background(), valueKey{}, "kept")
	d := time.Now().Add(-time.Millisecond) // already passed
	ctx := WithBound(parent, d)

	got, ok := ctx.Deadline()
	require.True(t, ok)
	assert.Equal(t, d, got)
	assert.Nil(t, ctx.Done(), "no timer: the caller's Done channel (none) stays")
	assert.NoError(t, ctx.Err(), "the context's own Err stays the caller's")
	assert.ErrorIs(t, Err(ctx), context.DeadlineExceeded, "Err sees the passed bound")
	assert.Equal(t, "kept", ctx.Value(valueKey{}), "the caller's values pass through")

	u, ok := Unenforced(ctx)
	require.True(t, ok)
	assert.Equal(t, d, u)
	_, ok = Unenforced(parent)
	assert.False(t, ok, "a context without a bound has none")
}

func TestErrFollowsTheCaller(t *testing.T) {
	assert.NoError(t, Err(context.Background()))
	assert.NoError(t, Err(WithBound(context.Background(), time.Now().Add(time.Hour))))

	ctx, cancel := context.WithCancel(context.Background())
	bounded := WithBound(ctx, time.Now().Add(time.Hour))
	cancel()
	assert.ErrorIs(t, Err(bounded), context.Canceled, "a caller's cancellation ends the call at once")
}

func TestEnforcePutsATimerBehindTheBound(t *testing.T) {
	ctx := WithBound(context.Background(), time.Now().Add(20*time.Millisecond))
	enforced, cancel := Enforce(ctx)
	defer cancel()
	select {
	case <-enforced.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the enforced bound never ended the context")
	}
	assert.ErrorIs(t, enforced.Err(), context.DeadlineExceeded)

	plain := context.Background()
	same, cancel2 := Enforce(plain)
	cancel2()
	assert.Equal(t, plain, same, "without a bound the context is returned as it is")
}

type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

func TestIsTimeout(t *testing.T) {
	var _ net.Error = timeoutError{}
	for _, err := range []error{
		context.DeadlineExceeded,
		fmt.Errorf("read: %w", os.ErrDeadlineExceeded),
		&net.OpError{Op: "read", Err: timeoutError{}},
	} {
		assert.True(t, IsTimeout(err), "%v", err)
	}
	for _, err := range []error{context.Canceled, errors.New("connection refused"), nil} {
		assert.False(t, IsTimeout(err), "%v", err)
	}
}

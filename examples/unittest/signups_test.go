package unittest

import (
	"errors"
	"sync"
	"testing"

	"github.com/gatewaykit/dbmanager"
)

// newTestSignups gives each test its own empty in-memory store: no
// database, no cleanup, safe with t.Parallel.
func newTestSignups(t *testing.T) *Signups {
	t.Helper()
	return NewSignups(dbmanager.NewMemStore())
}

func TestSignUpTwiceFails(t *testing.T) {
	t.Parallel()
	s := newTestSignups(t)
	if _, err := s.SignUp(t.Context(), "ada@example.com", "Ada"); err != nil {
		t.Fatal(err)
	}
	_, err := s.SignUp(t.Context(), "ada@example.com", "Another Ada")
	if !errors.Is(err, ErrAlreadySignedUp) {
		t.Fatalf("second sign-up: %v, want ErrAlreadySignedUp", err)
	}
}

func TestSignUpRejectsBadEmail(t *testing.T) {
	t.Parallel()
	s := newTestSignups(t)
	if _, err := s.SignUp(t.Context(), "not an email", "X"); err == nil {
		t.Fatal("sign-up with a bad email address succeeded")
	}
}

func TestConcurrentLoginsAllCount(t *testing.T) {
	t.Parallel()
	s := newTestSignups(t)
	if _, err := s.SignUp(t.Context(), "grace@example.com", "Grace"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if _, err := s.LogIn(t.Context(), "grace@example.com"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	u, err := s.LogIn(t.Context(), "grace@example.com")
	if err != nil || u.Logins != 21 {
		t.Fatalf("after 21 logins: %+v, %v; want 21 logins", u, err)
	}
}

func TestLogInUnknownUser(t *testing.T) {
	t.Parallel()
	s := newTestSignups(t)
	if _, err := s.LogIn(t.Context(), "nobody@example.com"); !errors.Is(err, dbmanager.ErrNotFound) {
		t.Fatalf("login of an unknown user: %v, want ErrNotFound", err)
	}
}

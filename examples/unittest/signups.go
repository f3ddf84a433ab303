// Package unittest shows how a service that uses dbmanager is unit-tested:
// the service takes a dbmanager.Store, production hands it
// Manager.Store(), and its tests hand it dbmanager.NewMemStore(), so they
// need no database and run in microseconds.
package unittest

import (
	"context"
	"errors"
	"fmt"
	"net/mail"

	"github.com/gatewaykit/dbmanager"
)

// User is one signed-up user.
type User struct {
	Email  string `json:"email"`
	Name   string `json:"name"`
	Logins int    `json:"logins"`
}

// ErrAlreadySignedUp: the email address is taken.
var ErrAlreadySignedUp = errors.New("already signed up")

// Signups is a tiny service: users sign up once and log in many times.
type Signups struct {
	users *dbmanager.Collection[User]
}

// NewSignups returns the service over any Store.
func NewSignups(store dbmanager.Store) *Signups {
	return &Signups{users: dbmanager.NewCollection[User](store, "users")}
}

// SignUp registers a new user, or fails with ErrAlreadySignedUp.
func (s *Signups) SignUp(ctx context.Context, email, name string) (User, error) {
	addr, err := mail.ParseAddress(email)
	if err != nil || addr.Address != email {
		return User{}, fmt.Errorf("sign up %q: not an email address", email)
	}
	doc, err := s.users.Create(ctx, email, User{Email: email, Name: name})
	if errors.Is(err, dbmanager.ErrConflict) {
		return User{}, fmt.Errorf("sign up %q: %w", email, ErrAlreadySignedUp)
	}
	return doc.Value, err
}

// LogIn counts a login of a signed-up user; concurrent logins all count.
func (s *Signups) LogIn(ctx context.Context, email string) (User, error) {
	doc, err := s.users.Update(ctx, email, func(u *User) error { u.Logins++; return nil })
	return doc.Value, err
}

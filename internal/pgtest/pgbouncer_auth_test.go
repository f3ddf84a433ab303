package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// wantBouncerRefusal fails t unless err is PgBouncer's own refusal of a
// password: a FATAL 08P01 with message msg.
func wantBouncerRefusal(t *testing.T, err error, msg string) {
	t.Helper()
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "08P01" || pgErr.Severity != "FATAL" || pgErr.Message != msg {
		t.Fatalf("wrong password through PgBouncer: %v; want FATAL 08P01 %q", err, msg)
	}
}

// TestPgBouncerAuthTypes: PgBouncer 1.18 checks the password itself and
// refuses a wrong one with a FATAL 08P01 whose message depends on
// auth_type; a right one logs in (to the backend with the auth file's
// password).
func TestPgBouncerAuthTypes(t *testing.T) {
	dsn := URL(t)
	const user, password = "bouncer_authtype", "right-pw"
	c := connect(t, dsn)
	loginRole(t, c, user, password)
	for authType, refusal := range map[string]string{
		"scram-sha-256": "SASL authentication failed",
		"md5":           "password authentication failed",
		"plain":         "password authentication failed",
	} {
		t.Run(authType, func(t *testing.T) {
			b := NewPgBouncer(t, backendOf(t, dsn), WithAuthType(authType), WithBouncerUser(user, password))
			u, _ := url.Parse(b.URL(dsn))
			u.User = url.UserPassword(user, password)
			var who string
			if err := connect(t, u.String()).QueryRow(context.Background(), "SELECT current_user").Scan(&who); err != nil || who != user {
				t.Fatalf("current_user through PgBouncer = %q, %v; want %s", who, err, user)
			}
			u.User = url.UserPassword(user, "wrong")
			_, err := pgxConnect(u.String())
			wantBouncerRefusal(t, err, refusal)
		})
	}
}

// TestPgBouncerAuthQueryFollowsPasswordChange: with WithAuthQuery, a role
// that is not in the auth file logs in through PgBouncer with its
// backend password; after ALTER ROLE ... PASSWORD, PgBouncer refuses the
// old password itself (08P01) and accepts the new one, without a reload.
func TestPgBouncerAuthQueryFollowsPasswordChange(t *testing.T) {
	dsn := URL(t)
	const user = "bouncer_authquery"
	c := connect(t, dsn)
	loginRole(t, c, user, "old-pw")
	b := NewPgBouncer(t, backendOf(t, dsn), WithAuthQuery(), WithPoolMode("session")) // session: pgx caches prepared statements
	u, _ := url.Parse(b.URL(dsn))
	login := func(password string) (*pgx.Conn, error) {
		u.User = url.UserPassword(user, password)
		return pgxConnect(u.String())
	}
	held, err := login("old-pw")
	if err != nil {
		t.Fatalf("login through PgBouncer with auth_query: %v", err)
	}
	defer held.Close(context.Background())
	var who string
	if err := held.QueryRow(context.Background(), "SELECT current_user").Scan(&who); err != nil || who != user {
		t.Fatalf("current_user through PgBouncer = %q, %v; want %s", who, err, user)
	}

	mustExec(t, c, fmt.Sprintf("ALTER ROLE %s PASSWORD 'new-pw'", user))
	_, err = login("old-pw")
	wantBouncerRefusal(t, err, "SASL authentication failed")
	conn, err := login("new-pw")
	if err != nil {
		t.Fatalf("login with the changed password: %v", err)
	}
	defer conn.Close(context.Background())
	if err := conn.QueryRow(context.Background(), "SELECT current_user").Scan(&who); err != nil || who != user {
		t.Fatalf("current_user after the change = %q, %v", who, err)
	}
	// The connection made before the change still works.
	if _, err := held.Exec(context.Background(), "SELECT 1"); err != nil {
		t.Fatalf("a client connection made before the change: %v", err)
	}
	// A role that does not exist is refused too (auth_query finds no row).
	u.User = url.UserPassword("no_such_role_x", "pw")
	if _, err := pgxConnect(u.String()); err == nil {
		t.Fatal("a role that does not exist logged in through PgBouncer")
	}
}

// TestPgBouncerSetUserPasswordReloadsTheAuthFile: with an auth file (no
// auth_query), PgBouncer checks the file's password; after ALTER ROLE on
// the backend and SetUserPassword, it refuses the old password itself
// (08P01) and accepts the new one, once it has reloaded.
func TestPgBouncerSetUserPasswordReloadsTheAuthFile(t *testing.T) {
	dsn := URL(t)
	const user = "bouncer_authfile"
	c := connect(t, dsn)
	loginRole(t, c, user, "old-pw")
	b := NewPgBouncer(t, backendOf(t, dsn), WithBouncerUser(user, "old-pw"), WithPoolMode("session"))
	u, _ := url.Parse(b.URL(dsn))
	login := func(password string) error {
		u.User = url.UserPassword(user, password)
		conn, err := pgxConnect(u.String())
		if err == nil {
			conn.Close(context.Background())
		}
		return err
	}
	if err := login("old-pw"); err != nil {
		t.Fatalf("login with the auth file's password: %v", err)
	}
	mustExec(t, c, "ALTER ROLE "+user+" PASSWORD 'new-pw'")
	b.SetUserPassword(t, user, "new-pw")
	deadline := time.Now().Add(10 * time.Second)
	for login("new-pw") != nil {
		if time.Now().After(deadline) {
			t.Fatalf("PgBouncer still refuses the new password 10 s after SetUserPassword: %v", login("new-pw"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	wantBouncerRefusal(t, login("old-pw"), "SASL authentication failed")
}

package credentials

import (
	"context"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/gatewaykit/dbmanager/internal/pgtest"
)

// TestIsAuthFailureFromRealPgBouncer: the refusals a real PgBouncer 1.18
// sends for a wrong password it checked itself (FATAL 08P01, one message
// per auth_type) are authentication failures, as is PostgreSQL's own
// 28P01 directly; an 08P01 PgBouncer sends for another reason at login
// (an unsupported startup parameter) is not.
func TestIsAuthFailureFromRealPgBouncer(t *testing.T) {
	dsn := pgtest.URL(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	connect := func(t *testing.T, dsn string) error {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, dsn)
		if err == nil {
			c.Close(ctx)
		}
		return err
	}
	for _, authType := range []string{"scram-sha-256", "md5", "plain"} {
		t.Run(authType, func(t *testing.T) {
			b := pgtest.NewPgBouncer(t, u.Host, pgtest.WithAuthType(authType))
			wrong, _ := url.Parse(b.URL(dsn))
			wrong.User = url.UserPassword(wrong.User.Username(), "wrong")
			err := connect(t, wrong.String())
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "08P01" {
				t.Fatalf("wrong password through PgBouncer: %v; want PgBouncer's 08P01", err)
			}
			if !IsAuthFailure(err) {
				t.Fatalf("PgBouncer's refusal %q (%s) is not an authentication failure", pgErr.Message, pgErr.Severity)
			}

			bad, _ := url.Parse(b.URL(dsn))
			q := bad.Query()
			q.Set("statement_timeout", "1000") // a startup parameter PgBouncer 1.18 refuses
			bad.RawQuery = q.Encode()
			err = connect(t, bad.String())
			if !errors.As(err, &pgErr) || pgErr.Code != "08P01" {
				t.Fatalf("unsupported startup parameter through PgBouncer: %v; want 08P01", err)
			}
			if IsAuthFailure(err) {
				t.Fatalf("PgBouncer's %q is taken for an authentication failure", pgErr.Message)
			}
		})
	}
	// A user name nobody knows (a stale username after an alternating-users
	// rotation): PostgreSQL answers 28P01 as for a wrong password, and so
	// does PgBouncer checking its auth file (a mock login); PgBouncer's
	// auth_query finds no row and says "no such user" (08P01). All three
	// are the same refusal of the login's credentials.
	for name, opts := range map[string][]pgtest.BouncerOption{
		"unknown user, auth_file":  nil,
		"unknown user, auth_query": {pgtest.WithAuthQuery()},
	} {
		t.Run(name, func(t *testing.T) {
			b := pgtest.NewPgBouncer(t, u.Host, opts...)
			stranger, _ := url.Parse(b.URL(dsn))
			stranger.User = url.UserPassword("no_such_role", "whatever")
			err := connect(t, stranger.String())
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "08P01" {
				t.Fatalf("unknown user through PgBouncer: %v; want PgBouncer's 08P01", err)
			}
			t.Logf("PgBouncer refused an unknown user with %s %s %q", pgErr.Severity, pgErr.Code, pgErr.Message)
			if !IsAuthFailure(err) {
				t.Fatalf("PgBouncer's refusal of an unknown user %q (%s) is not an authentication failure", pgErr.Message, pgErr.Severity)
			}
		})
	}
	stranger, _ := url.Parse(dsn)
	stranger.User = url.UserPassword("no_such_role", "whatever")
	if err := connect(t, stranger.String()); !IsAuthFailure(err) {
		t.Fatalf("PostgreSQL's refusal of an unknown user %v is not an authentication failure", err)
	}
	// Directly, PostgreSQL's 28P01.
	wrong, _ := url.Parse(dsn)
	wrong.User = url.UserPassword(wrong.User.Username(), "wrong")
	if err := connect(t, wrong.String()); !IsAuthFailure(err) {
		t.Fatalf("PostgreSQL's refusal %v is not an authentication failure", err)
	}
}

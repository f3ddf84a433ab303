package safeerr

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

const password = "Sup3r-Secret-Pw"

var errSentinel = errors.New("invalid configuration")

// everyForm prints err every way a caller might.
func everyForm(err error) string {
	return fmt.Sprintf("%v\n%+v\n%#v\n%s", err, err, err, err)
}

func TestRedactParseErrorMasksThePasswordAndWrapsTheSentinel(t *testing.T) {
	for _, dsn := range []string{
		"postgres://app:" + password + "@db.example:notaport/app",
		"host=db.example password=" + password + " port=notaport",
		"postgres://app:" + password + "@db.example/app?sslmode=bogus",
	} {
		_, raw := pgx.ParseConfig(dsn)
		if raw == nil {
			t.Fatalf("%q parsed", "the test's bad connection string")
		}
		err := Redact(fmt.Errorf("opening the pool: %w", raw), errSentinel)
		if strings.Contains(everyForm(err), password) {
			t.Errorf("the password shows in %s", strings.ReplaceAll(everyForm(err), password, "<PASSWORD>"))
		}
		var e *Error
		if !errors.As(err, &e) || !errors.Is(err, errSentinel) {
			t.Errorf("got %T, want an *Error wrapping the sentinel", err)
		}
		var pce *pgconn.ParseConfigError
		if errors.As(err, &pce) {
			t.Error("the ParseConfigError, which holds the connection string, is still reachable")
		}
		if !strings.Contains(err.Error(), "cannot parse connection string") {
			t.Errorf("the message does not say what failed: %v", err)
		}
	}
}

func TestRedactConnectErrorKeepsTheClassifyingCauses(t *testing.T) {
	cfg, err := pgconn.ParseConfig("postgres://app:" + password + "@127.0.0.1:1/app?connect_timeout=1")
	if err != nil {
		t.Fatal(err)
	}
	_, raw := pgconn.ConnectConfig(context.Background(), cfg) // nothing listens on port 1
	if raw == nil {
		t.Fatal("connected to port 1")
	}
	err = Redact(raw, errSentinel)
	if strings.Contains(everyForm(err), password) {
		t.Errorf("the password shows in %s", strings.ReplaceAll(everyForm(err), password, "<PASSWORD>"))
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		t.Error("the ConnectError, which holds the config, is still reachable")
	}
	if errors.Is(err, errSentinel) {
		t.Error("a connect failure is not a configuration error")
	}
	if !strings.Contains(err.Error(), "127.0.0.1") {
		t.Errorf("the message lost the address: %v", err)
	}
}

func TestRedactLeavesOtherErrorsAsTheyAre(t *testing.T) {
	plain := fmt.Errorf("wrapped: %w", context.DeadlineExceeded)
	if got := Redact(plain, errSentinel); got != plain {
		t.Errorf("Redact changed an error without a pgx config: %v", got)
	}
	if Redact(nil, errSentinel) != nil {
		t.Error("Redact(nil) is not nil")
	}
}

func TestNewUnwrapsToItsCauses(t *testing.T) {
	pg := &pgconn.PgError{Code: "28P01", Message: "password authentication failed"}
	err := New("failed: refused", pg)
	var got *pgconn.PgError
	if err.Error() != "failed: refused" || !errors.As(err, &got) || got != pg {
		t.Errorf("New: %v, cause %v", err, got)
	}
}

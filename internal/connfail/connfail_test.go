package connfail

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/gatewaykit/dbmanager/internal/writerwatch"
)

func TestClassify(t *testing.T) {
	pg := func(code, msg string) error { return &pgconn.PgError{Severity: "FATAL", Code: code, Message: msg} }
	dial := func(err error) error { return &net.OpError{Op: "dial", Net: "tcp", Err: err} }
	for _, c := range []struct {
		err  error
		want Reason
	}{
		{pg("28P01", `password authentication failed for user "app"`), Auth},
		{pg("08P01", "SASL authentication failed"), Auth}, // PgBouncer's own refusal
		{pg("08P01", "no such user"), Auth},
		{pg("28000", `role "app" does not exist`), Auth},
		{pg("3D000", `database "x" does not exist`), NoDatabase},
		{pg("57P03", "the database system is starting up"), ServerStarting},
		{pg("57P01", "terminating connection due to administrator command"), ServerStarting},
		{pg("53300", "sorry, too many clients already"), Server},
		{pg("08P01", "unsupported startup parameter"), Server},
		{fmt.Errorf("connect: %w", writerwatch.ErrNodeReadOnly), ReadOnly},
		{&net.DNSError{Err: "no such host", Name: "db.invalid", IsNotFound: true}, DNS},
		{x509.UnknownAuthorityError{}, TLS},
		{errors.New("server refused TLS connection"), TLS},
		{context.Canceled, Canceled},
		{fmt.Errorf("dial: %w", context.DeadlineExceeded), Timeout},
		{dial(os.ErrDeadlineExceeded), Timeout},
		{dial(syscall.ETIMEDOUT), Timeout},
		{dial(syscall.ECONNREFUSED), Refused},
		{dial(syscall.ECONNRESET), Network},
		{syscall.EHOSTUNREACH, Network},
		{errors.New("something else"), Unknown},
	} {
		if got := Classify(c.err); got != c.want {
			t.Errorf("Classify(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}

func TestServerUnavailable(t *testing.T) {
	for code, want := range map[string]bool{
		"08006": true, "08P01": true, "53300": true, "53100": true,
		"57P01": true, "57P02": true, "57P03": true, "25006": true,
		"23505": false, "42P01": false, "40001": false, "57014": false, "": false,
	} {
		if ServerUnavailable(code) != want {
			t.Errorf("ServerUnavailable(%q) = %v, want %v", code, !want, want)
		}
	}
}

func TestIsContext(t *testing.T) {
	if !IsContext(fmt.Errorf("x: %w", context.Canceled)) || !IsContext(context.DeadlineExceeded) || IsContext(os.ErrDeadlineExceeded) {
		t.Error("IsContext is wrong about a context's errors")
	}
}

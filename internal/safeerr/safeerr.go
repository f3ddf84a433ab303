// Package safeerr keeps secrets out of the errors that leave the library.
// pgx's *pgconn.ParseConfigError keeps the raw connection string in an
// exported field and its message shows some password spellings, and
// *pgconn.ConnectError carries the whole config, password included;
// Redact replaces an error whose chain holds one by an *Error with the
// passwords masked and only the causes that classify a failure kept.
package safeerr

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/gatewaykit/dbmanager/internal/connstr"
)

// Error is an error from pgx whose text has been redacted (Redact).
//
// An Error's message has every known password masked; it has no
// exported fields, so json.Marshal shows nothing, and %#v prints the
// message. errors.Is and errors.As still reach the causes that classify a
// failure: *net.OpError, *net.DNSError, *pgconn.PgError, context errors,
// syscall errors, TLS / x509 errors and pgx's read-only refusals; a parse
// error wraps the sentinel given to Redact.
type Error struct {
	msg    string
	causes []error
}

// Error returns the redacted message.
func (e *Error) Error() string { return e.msg }

// GoString returns the redacted message, so %#v shows nothing else.
func (e *Error) GoString() string { return "&dbmanager.redactedError{" + e.msg + "}" }

// Unwrap returns the classification-relevant causes.
func (e *Error) Unwrap() []error { return e.causes }

// New returns an Error with message msg (already safe to print) that
// unwraps to causes.
func New(msg string, causes ...error) *Error { return &Error{msg: msg, causes: causes} }

// Redact returns err, or an *Error standing in for it when its chain holds
// a pgx error that can reveal a secret (*pgconn.ParseConfigError,
// *pgconn.ConnectError). Every error that leaves the library passes
// through it. Errors without such a link are returned unchanged (errors.Is
// on them keeps working exactly). An error from parsing a connection
// string also wraps parseSentinel (the root's ErrConfig).
func Redact(err, parseSentinel error) error {
	if err == nil {
		return nil
	}
	var pce *pgconn.ParseConfigError
	var ce *pgconn.ConnectError
	isParse := errors.As(err, &pce)
	isConnect := errors.As(err, &ce)
	if !isParse && !isConnect {
		return err
	}
	var secrets []string
	if isParse {
		secrets = append(secrets, connstr.Passwords(pce.ConnString)...)
	}
	if isConnect && ce.Config != nil {
		secrets = append(secrets, ce.Config.Password)
	}
	msg := err.Error()
	if isParse {
		msg = strings.ReplaceAll(msg, pce.Error(), parseErrorText(pce))
	}
	s := &Error{msg: connstr.Scrub(msg, secrets), causes: keptCauses(err)}
	if isParse && parseSentinel != nil {
		s.causes = append(s.causes, parseSentinel)
	}
	return s
}

// parseErrorText describes a ParseConfigError without its connection
// string: pgx's message part, and its cause reduced to a kind.
func parseErrorText(pce *pgconn.ParseConfigError) string {
	cp := *pce
	cp.ConnString = ""
	text := strings.TrimPrefix(cp.Error(), "cannot parse ``: ")
	inner := errors.Unwrap(pce)
	if inner != nil {
		text = strings.TrimSuffix(text, " ("+inner.Error()+")")
		var ue *url.Error
		var ne *strconv.NumError
		switch {
		case errors.As(inner, &ue):
			text += " (" + connstr.URLProblem(ue) + ")"
		case errors.As(inner, &ne):
			text += " (not a valid number)"
		default:
			text += " (" + connstr.Scrub(inner.Error(), connstr.Passwords(pce.ConnString)) + ")"
		}
	}
	return "dbmanager: invalid configuration: cannot parse connection string: " + text
}

// keptCauses collects the causes in err's chain that classify a failure
// and cannot print a secret.
func keptCauses(err error) []error {
	var out []error
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		out = append(out, pg)
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		out = append(out, dns)
	}
	var op *net.OpError
	if errors.As(err, &op) {
		out = append(out, op)
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		out = append(out, errno)
	}
	var verr *tls.CertificateVerificationError
	if errors.As(err, &verr) {
		out = append(out, verr)
	}
	var rhe tls.RecordHeaderError
	if errors.As(err, &rhe) {
		out = append(out, tls.RecordHeaderError{Msg: rhe.Msg, RecordHeader: rhe.RecordHeader})
	}
	var alert tls.AlertError
	if errors.As(err, &alert) {
		out = append(out, alert)
	}
	var ua x509.UnknownAuthorityError
	if errors.As(err, &ua) {
		out = append(out, ua)
	}
	var he x509.HostnameError
	if errors.As(err, &he) {
		out = append(out, he)
	}
	var ci x509.CertificateInvalidError
	if errors.As(err, &ci) {
		out = append(out, ci)
	}
	for _, sentinel := range []error{context.DeadlineExceeded, context.Canceled, os.ErrDeadlineExceeded, net.ErrClosed,
		pgconn.ErrReadOnlyConnection, pgconn.ErrStandbyConnection} { // a node refused as read-only
		if errors.Is(err, sentinel) {
			out = append(out, sentinel)
		}
	}
	if pgconn.Timeout(err) && !errors.Is(err, context.DeadlineExceeded) {
		out = append(out, os.ErrDeadlineExceeded)
	}
	return out
}

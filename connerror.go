package dbmanager

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/gatewaykit/dbmanager/internal/connstr"
	"github.com/gatewaykit/dbmanager/internal/credentials"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// classifyConnectError turns an error from connecting or pinging (pgx,
// pgxpool) into a *ConnectionError with its Reason, redacted. target is a
// display string such as Target.Host:Port ("" if unknown). A nil error
// stays nil; an error that already is a *ConnectionError, or that is a
// configuration error (ErrConfig), is returned redacted but unchanged in
// kind.
func classifyConnectError(err error, target string) error {
	if err == nil {
		return nil
	}
	err = safeError(err)
	var ce *ConnectionError
	if errors.As(err, &ce) || errors.Is(err, ErrConfig) {
		return err
	}
	return &ConnectionError{Reason: classify(err), Target: target, err: err}
}

// classify decides the Reason of a connection failure.
func classify(err error) Reason {
	if isReadOnlyError(err) {
		return ReasonReadOnly
	}
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		if credentials.IsAuthFailure(err) { // 28P01, or PgBouncer's own refusal (08P01)
			return ReasonAuth
		}
		switch pg.Code {
		case "28000":
			return ReasonAuth
		case "3D000":
			return ReasonNoDatabase
		case "57P03", "57P01", "57P02":
			return ReasonServerStarting
		}
		return ReasonServer
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return ReasonDNS
	}
	if isTLSError(err) {
		return ReasonTLS
	}
	if errors.Is(err, context.Canceled) {
		return ReasonCanceled
	}
	if errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err) || errors.Is(err, syscall.ETIMEDOUT) {
		return ReasonTimeout
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return ReasonTimeout
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return ReasonRefused
	}
	if tlsMessage(err) {
		return ReasonTLS
	}
	var op *net.OpError
	if errors.As(err, &op) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH) {
		return ReasonNetwork
	}
	return ReasonUnknown
}

func isTLSError(err error) bool {
	var verr *tls.CertificateVerificationError
	var rhe tls.RecordHeaderError
	var alert tls.AlertError
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	if errors.As(err, &verr) || errors.As(err, &rhe) || errors.As(err, &alert) ||
		errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ci) {
		return true
	}
	return false
}

// tlsMessage recognises TLS failures that carry no typed error. It is
// consulted after timeouts and refusals, which may also mention TLS.
func tlsMessage(err error) bool {
	msg := err.Error()
	// pgx: "server refused TLS connection" when TLS is required but the
	// server does not offer it; "tls: ..." from crypto/tls.
	return strings.Contains(msg, "refused TLS") || strings.Contains(msg, "tls: ")
}

// ValidateConnection connects to dsn once, pings, and closes. The attempt
// is bounded by the DSN's connect_timeout, else DefaultConnectTimeout, and
// by ctx. A failure is a *ConnectionError (wrapping ErrUnavailable) with a
// Reason; a DSN that cannot be parsed is a redacted error wrapping
// ErrConfig. No setting of a Config (TLS requirement, CA file) is applied:
// Diagnose walks a whole Config's path, TLS included.
func ValidateConnection(ctx context.Context, dsn string) error {
	cc, err := pgx.ParseConfig(dsn)
	if err != nil {
		return safeError(err)
	}
	if cc.ConnectTimeout <= 0 {
		cc.ConnectTimeout = DefaultConnectTimeout
	}
	return validateConnConfig(ctx, cc)
}

// validateConnConfig connects with cc, pings and closes, bounded by
// cc.ConnectTimeout (DefaultConnectTimeout when zero) for the whole
// attempt and by ctx. Failures are *ConnectionError values.
func validateConnConfig(ctx context.Context, cc *pgx.ConnConfig) error {
	timeout := cc.ConnectTimeout
	if timeout <= 0 {
		timeout = DefaultConnectTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	target := connstr.DisplayHostPort(cc.Host, int(cc.Port))
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return classifyConnectError(err, target)
	}
	defer func() {
		cctx, ccancel := context.WithTimeout(context.Background(), time.Second)
		defer ccancel()
		_ = conn.Close(cctx)
	}()
	if err := conn.Ping(ctx); err != nil {
		return classifyConnectError(err, target)
	}
	return nil
}

// isContextError reports whether err is a context's cancellation or
// deadline.
func isContextError(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

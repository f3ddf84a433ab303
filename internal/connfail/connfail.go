// Package connfail names what kind of failure a connection or statement
// error is: the Reason a *ConnectionError reports (the root's Reason
// constants have the same values), and whether a SQLSTATE says the server
// cannot serve now rather than that the statement was wrong.
package connfail

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/gatewaykit/dbmanager/internal/credentials"
	"github.com/gatewaykit/dbmanager/internal/writerwatch"
)

// Reason is a kind of connection failure, spelled as the root's Reason.
type Reason string

// The reasons, as the root's Reason constants document them.
const (
	DNS            Reason = "dns"
	Refused        Reason = "refused"
	Timeout        Reason = "timeout"
	TLS            Reason = "tls"
	Auth           Reason = "authentication"
	NoDatabase     Reason = "missing database"
	ServerStarting Reason = "server starting"
	ReadOnly       Reason = "read-only"
	Server         Reason = "server error"
	Canceled       Reason = "canceled"
	Network        Reason = "network"
	Unknown        Reason = "unknown"
)

// Classify decides the Reason of a connection failure.
func Classify(err error) Reason {
	if writerwatch.IsReadOnlyError(err) {
		return ReadOnly
	}
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		if credentials.IsAuthFailure(err) { // 28P01, or PgBouncer's own refusal (08P01)
			return Auth
		}
		switch pg.Code {
		case "28000":
			return Auth
		case "3D000":
			return NoDatabase
		case "57P03", "57P01", "57P02":
			return ServerStarting
		}
		return Server
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return DNS
	}
	if IsTLS(err) {
		return TLS
	}
	if errors.Is(err, context.Canceled) {
		return Canceled
	}
	if errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err) || errors.Is(err, syscall.ETIMEDOUT) {
		return Timeout
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return Timeout
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return Refused
	}
	if tlsMessage(err) {
		return TLS
	}
	var op *net.OpError
	if errors.As(err, &op) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH) {
		return Network
	}
	return Unknown
}

// IsTLS reports whether err's chain holds a typed TLS or certificate
// error.
func IsTLS(err error) bool {
	var verr *tls.CertificateVerificationError
	var rhe tls.RecordHeaderError
	var alert tls.AlertError
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	return errors.As(err, &verr) || errors.As(err, &rhe) || errors.As(err, &alert) ||
		errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ci)
}

// tlsMessage recognises TLS failures that carry no typed error. It is
// consulted after timeouts and refusals, which may also mention TLS.
func tlsMessage(err error) bool {
	msg := err.Error()
	// pgx: "server refused TLS connection" when TLS is required but the
	// server does not offer it; "tls: ..." from crypto/tls.
	return strings.Contains(msg, "refused TLS") || strings.Contains(msg, "tls: ")
}

// IsContext reports whether err is a context's cancellation or deadline.
func IsContext(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// ServerUnavailable reports whether a SQLSTATE says the server cannot
// serve us now rather than that the statement was wrong.
func ServerUnavailable(code string) bool {
	switch {
	case strings.HasPrefix(code, "08"): // connection exception
		return true
	case strings.HasPrefix(code, "53"): // insufficient resources (too many connections, disk full)
		return true
	case code == "57P01", code == "57P02", code == "57P03": // admin/crash shutdown, cannot connect now
		return true
	case code == "25006": // read-only transaction: a standby after failover
		return true
	}
	return false
}

package dbmanager

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/gatewaykit/dbmanager/internal/connstr"
	"github.com/gatewaykit/dbmanager/internal/tlstrust"
	"github.com/jackc/pgx/v5"
)

// The tls step: the handshake pgconn would make on this host, with the
// very tls.Config it would use (the TLS policy of tlsconfig.go applied),
// described for a person: version, certificate, names, expiry, and whether
// it verifies against the roots in use and the host name.

// certExpiryWarning is how close to its expiry a certificate of the chain
// makes the tls step a warning.
const certExpiryWarning = 30 * 24 * time.Hour

// rdsBundleHowTo says how to get and use RDS's CA bundle.
const rdsBundleHowTo = "curl -o rds-global-bundle.pem https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem and set AWS_SSLROOTCERT to its path"

// sslRequestCode is the SSLRequest message's code (PostgreSQL protocol).
const sslRequestCode = 80877103

// checkTLS is the tls step on the address the tcp step reached.
func (d *diagnosis) checkTLS(ctx context.Context, s *Step, t *diagTarget, cc *pgx.ConnConfig, ep endpoint, at netAddr) {
	if ep.unixSocket() {
		s.found("Unix socket: TLS does not apply")
		return
	}
	tc := ep.tlsConfig()
	if tc == nil {
		// pgx sends no TLS request with sslmode=disable: neither does this.
		s.warn("TLS is not used (sslmode=disable): the password and the data cross the network in plaintext",
			"remove sslmode=disable and set AWS_REQUIRE_SSL=true (verify-full)")
		return
	}
	conn, err := cc.DialFunc(ctx, at.network, at.address)
	if err != nil {
		s.fail("cannot connect again to "+at.address+": "+tcpFailure(err), tcpFix(err, at.address, t.portSetting()))
		return
	}
	defer conn.Close()
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(deadline)
	}
	start := time.Now()
	if cc.SSLNegotiation != "direct" {
		answer, err := sslRequest(conn)
		if err != nil {
			d.explainNoAnswer(s, t, err, at.address, time.Since(start))
			return
		}
		switch answer {
		case 'S':
		case 'N':
			d.explainNoTLS(s, t, ep)
			return
		default:
			s.fail(fmt.Sprintf("%s answered %q to the TLS request: it does not speak the PostgreSQL protocol", at.address, answer),
				"check the host and port: something other than PostgreSQL listens there")
			return
		}
	}
	hs := tc.Clone() // with the recorder of the pool's TLS settings: it notes which roots verified the server
	var raw [][]byte // the chain, seen by pgx's own verify-ca callback
	if inner := hs.VerifyPeerCertificate; inner != nil {
		hs.VerifyPeerCertificate = func(rawCerts [][]byte, chains [][]*x509.Certificate) error {
			raw = rawCerts
			return inner(rawCerts, chains)
		}
	}
	tlsConn := tls.Client(conn, hs)
	if err := tlsConn.HandshakeContext(ctx); err != nil {
		d.explainTLSFailure(s, t, err, raw, at.address, time.Since(start))
		return
	}
	d.describeTLS(s, t, tlsConn.ConnectionState(), tc, tlsInfoOf(t.tls))
}

// sslRequest asks the server for TLS and returns its one-byte answer.
func sslRequest(conn net.Conn) (byte, error) {
	msg := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, 8), sslRequestCode)
	if _, err := conn.Write(msg); err != nil {
		return 0, err
	}
	var answer [1]byte
	if _, err := io.ReadFull(conn, answer[:]); err != nil {
		return 0, err
	}
	return answer[0], nil
}

// explainNoAnswer handles a TLS request that got no answer.
func (d *diagnosis) explainNoAnswer(s *Step, t *diagTarget, err error, address string, took time.Duration) {
	if classify(err) == ReasonTimeout || errors.Is(err, context.DeadlineExceeded) {
		fix := "something on the path accepts connections and forwards nothing: a firewall or security group dropping packets after the TCP handshake, a proxy or load balancer without a healthy target, or a hung server; check the security groups, network ACLs and the server's health"
		if t.role == roleReplica {
			fix += "; for a read replica, also that " + address + " is the replica itself, not a load balancer or reader endpoint without a healthy target behind it"
		}
		s.fail(fmt.Sprintf("timed out: %s accepts TCP connections but did not answer the TLS request within %s", address, ms(took)), fix)
		return
	}
	s.fail(fmt.Sprintf("%s closed the connection when asked for TLS (%s)", address, errorText(err)),
		"check the host and port: PostgreSQL answers the TLS request; is something else listening there?")
}

// explainNoTLS handles a server that does not offer TLS.
func (d *diagnosis) explainNoTLS(s *Step, t *diagTarget, ep endpoint) {
	fix := "turn TLS on at the server (ssl = on with a certificate) and set AWS_REQUIRE_SSL=true"
	switch {
	case ep.plaintextAllowed():
		s.warn("the server does not offer TLS: pgx falls back to plaintext (sslmode=prefer or allow), so the password and the data cross the network unencrypted", fix)
	default:
		s.fail("the server does not offer TLS, and TLS is required ("+d.tlsRequiredBy(t)+")",
			"turn TLS on at the server (ssl = on with a certificate); RDS always offers TLS, so check that this address is the database and not a tunnel or proxy that strips it. Never lift the requirement on a network you do not control")
	}
}

// tlsRequiredBy names the setting that requires TLS on t: on a read
// replica whose DATABASE_READ_URL sets sslmode itself, that sslmode.
func (d *diagnosis) tlsRequiredBy(t *diagTarget) string {
	switch {
	case d.cfg.RequireSSL:
		return "AWS_REQUIRE_SSL=true"
	case d.cfg.IAMAuth:
		return "AWS_DB_IAM_AUTH=true sends a token that must not travel in plaintext"
	}
	if t.role == roleReplica && d.cfg.ReadURL.IsSet() {
		if own, err := connstr.Params(d.cfg.ReadURL.Reveal()); err == nil && own["sslmode"] != "" {
			return "DATABASE_READ_URL's sslmode=" + own["sslmode"]
		}
	}
	if params, err := connstr.Params(t.target.DSN.Reveal()); err == nil && params["sslmode"] != "" {
		return "the connection string's sslmode=" + params["sslmode"]
	}
	return "the connection string's sslmode"
}

// explainTLSFailure handles a failed handshake.
func (d *diagnosis) explainTLSFailure(s *Step, t *diagTarget, err error, raw [][]byte, address string, took time.Duration) {
	var verr *tls.CertificateVerificationError
	var certs []*x509.Certificate
	if errors.As(err, &verr) {
		certs = verr.UnverifiedCertificates
	} else {
		for _, r := range raw {
			if c, perr := x509.ParseCertificate(r); perr == nil {
				certs = append(certs, c)
			}
		}
	}
	roots := d.rootsInUse(t)
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	switch {
	case errors.As(err, &ua) && ua.Cert != nil:
		issuer := ua.Cert.Issuer.String()
		s.fail(fmt.Sprintf("the certificate %s is issued by %s, which is not among the roots in use (%s)", certName(ua.Cert), issuer, roots),
			d.unknownAuthorityFix(t, issuer))
	case errors.As(err, &he) && he.Certificate != nil:
		s.fail(fmt.Sprintf("the certificate %s is for %s, not for %s", certName(he.Certificate), certNames(he.Certificate), he.Host),
			"connect with a name the certificate has ("+t.hostSetting()+"); for RDS use its endpoint name, not an IP address or a CNAME of your own")
	case errors.As(err, &ci) && ci.Reason == x509.Expired:
		s.fail(fmt.Sprintf("the certificate %s expired on %s (%s)", certName(ci.Cert), ci.Cert.NotAfter.UTC().Format(time.DateOnly), ci.Detail),
			"renew the server's certificate (RDS: modify the instance to a current certificate authority); check this host's clock")
	case errors.As(err, &ci):
		s.fail(fmt.Sprintf("the certificate %s is not valid for this use: %s", certName(ci.Cert), errorText(err)),
			"the server needs a certificate for TLS server authentication, issued by a CA in "+roots)
	case classify(err) == ReasonTimeout || errors.Is(err, context.DeadlineExceeded):
		s.fail(fmt.Sprintf("the TLS handshake with %s did not finish within %s", address, ms(took)),
			"packets are dropped after the TLS request: check security groups, network ACLs and any TLS-inspecting proxy on the path")
	default:
		detail := "the TLS handshake failed: " + errorText(err)
		if len(certs) > 0 {
			detail += "; server certificate " + certName(certs[0]) + " issued by " + certs[0].Issuer.String()
		}
		s.fail(detail, "check the server's TLS settings and the roots in use ("+roots+")")
	}
}

// describeTLS reports a completed handshake.
func (d *diagnosis) describeTLS(s *Step, t *diagTarget, st tls.ConnectionState, tc *tls.Config, seen TLSInfo) {
	if len(st.PeerCertificates) == 0 {
		s.fail("TLS "+tlsVersion(st.Version)+" without a server certificate", "the server must present a certificate")
		return
	}
	leaf := st.PeerCertificates[0]
	now := d.opts.now()
	parts := []string{
		"TLS " + tlsVersion(st.Version) + " (" + tls.CipherSuiteName(st.CipherSuite) + ")",
		fmt.Sprintf("certificate %s for %s, issued by %s, valid until %s", certName(leaf), certNames(leaf), leaf.Issuer.String(), leaf.NotAfter.UTC().Format(time.DateOnly)),
	}
	verified := tlstrust.Verifies(tc)
	by := "against " + d.rootsInUse(t)
	if seen.Roots != "" {
		by = "by the " + seen.Roots + " roots (root CA " + seen.RootCA + ")"
		if strings.HasPrefix(seen.Roots, "file ") {
			by = "by " + seen.Roots + " (root CA " + seen.RootCA + ")"
		}
	}
	switch {
	case !verified:
		parts = append(parts, "not verified (sslmode=require or prefer)")
	case tc.InsecureSkipVerify:
		parts = append(parts, "chain verified "+by+"; host name not checked (sslmode=verify-ca)")
	default:
		parts = append(parts, "verified "+by+" for host name "+tc.ServerName)
	}
	chain := st.PeerCertificates
	if len(st.VerifiedChains) > 0 {
		chain = st.VerifiedChains[0]
	}
	soonest := chain[0]
	for _, c := range chain {
		if c.NotAfter.Before(soonest.NotAfter) {
			soonest = c
		}
	}
	detail := strings.Join(parts, "; ")
	switch left := soonest.NotAfter.Sub(now); {
	case left <= 0:
		s.warn(detail+fmt.Sprintf("; %s expired on %s", certName(soonest), soonest.NotAfter.UTC().Format(time.DateOnly)),
			"renew the server's certificate, and set AWS_REQUIRE_SSL=true so that an expired or forged certificate is refused")
	case left < certExpiryWarning:
		s.warn(detail+fmt.Sprintf("; %s expires on %s, in %s", certName(soonest), soonest.NotAfter.UTC().Format(time.DateOnly), daysLeft(left)),
			"renew or rotate it before then (RDS: modify the instance to a current certificate authority, and keep AWS_SSLROOTCERT's bundle current)")
	case !verified:
		s.warn(detail+": any server on the path could pose as the database",
			"set AWS_REQUIRE_SSL=true (verify-full: chain and host name): an RDS, Aurora or RDS Proxy endpoint then verifies with the embedded Amazon RDS roots, another server needs AWS_SSLROOTCERT naming its CA's PEM")
	default:
		s.found(detail)
	}
}

// rootsInUse describes the roots verified TLS to t trusts (planTrust:
// the system roots and the embedded RDS roots by default, AWS_SSLROOTCERT's
// file, the system roots only, or the connection string's own
// sslrootcert), with the names of the CAs in the files.
func (d *diagnosis) rootsInUse(t *diagTarget) string {
	own := t.ownRootCert()
	plan, err := planTrust(d.cfg, own)
	if err != nil {
		return "unknown: " + errorText(err)
	}
	desc := plan.Describe()
	envFile := d.cfg.SSLRootCert != "" && d.cfg.SSLRootCert != SSLRootCertSystem
	ownFile := own != "" && own != SSLRootCertSystem && plan.Kind != tlstrust.SystemAndRDS
	switch {
	case envFile && ownFile:
		desc += ": AWS_SSLROOTCERT holds " + caFileSummary(d.cfg.SSLRootCert) + "; sslrootcert holds " + caFileSummary(own)
	case envFile:
		desc += ": " + caFileSummary(d.cfg.SSLRootCert)
	case ownFile:
		desc += ": " + caFileSummary(own)
	}
	return desc
}

// ownRootCert is the sslrootcert of t's connection string ("" if none).
func (t *diagTarget) ownRootCert() string {
	params, err := connstr.Params(t.target.DSN.Reveal())
	if err != nil {
		return ""
	}
	return params["sslrootcert"]
}

// urlSetting names the variable whose connection string set t's
// parameters, for a fix text.
func (d *diagnosis) urlSetting(t *diagTarget) string {
	if t.role == roleReplica && !d.cfg.ReadURL.IsSet() {
		return "DATABASE_URL (whose parameters the replicas of AWS_DB_READ_HOST share)"
	}
	if t.role == roleReplica {
		return "DATABASE_READ_URL"
	}
	return "DATABASE_URL"
}

// unknownAuthorityFix says how to trust the CA that issued t's
// certificate, by what t's sslrootcert and AWS_SSLROOTCERT say now.
func (d *diagnosis) unknownAuthorityFix(t *diagTarget, issuer string) string {
	if own := t.ownRootCert(); own != "" && own != SSLRootCertSystem {
		fix := d.urlSetting(t) + "'s sslrootcert (" + own + ") does not hold the CA that issued the certificate (" + issuer + "): point it at that CA's PEM"
		if d.cfg.SSLRootCert == "" {
			fix += ", or remove it to trust the system roots and the embedded Amazon RDS roots"
		}
		return fix
	}
	switch d.cfg.SSLRootCert {
	case "":
		return "the server's CA is neither a system root nor an Amazon RDS root of the " + tlstrust.EmbeddedBundleName() +
			": for a server with a CA of its own, set AWS_SSLROOTCERT to that CA's PEM (" + issuer + "); for an RDS region newer than the embedded bundle, " + rdsBundleHowTo
	case SSLRootCertSystem:
		return "AWS_SSLROOTCERT=system trusts the system roots only: unset it to trust the embedded Amazon RDS roots too, or set it to the PEM of the CA that issued the certificate (" + issuer + ")"
	}
	return "AWS_SSLROOTCERT names a file without the CA that issued the certificate (" + issuer + "): for RDS, unset AWS_SSLROOTCERT (the embedded Amazon RDS roots are trusted by default) or " + rdsBundleHowTo + "; for another server, point it at that CA's PEM"
}

// caFileSummary names the first few CAs of a CA file.
func caFileSummary(path string) string {
	certs, err := tlstrust.LoadCAFile(path)
	if err != nil {
		return "unreadable"
	}
	var names []string
	for i, c := range certs {
		if i == 3 {
			names = append(names, fmt.Sprintf("and %d more", len(certs)-3))
			break
		}
		names = append(names, c.Subject.String())
	}
	return strings.Join(names, ", ")
}

// certName is a certificate's subject ("CN=db.example.com").
func certName(c *x509.Certificate) string {
	if s := c.Subject.String(); s != "" {
		return s
	}
	return "(no subject)"
}

// certNames lists the host names and addresses a certificate is for.
func certNames(c *x509.Certificate) string {
	var names []string
	names = append(names, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 {
		return "no host name (no subject alternative names)"
	}
	return strings.Join(names, ", ")
}

func tlsVersion(v uint16) string { return strings.TrimPrefix(tls.VersionName(v), "TLS ") }

func daysLeft(d time.Duration) string {
	days := int(d.Hours() / 24)
	if days < 1 {
		return "less than a day"
	}
	if days == 1 {
		return "1 day"
	}
	return strconv.Itoa(days) + " days"
}

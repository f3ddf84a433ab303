package main

import (
	"net"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/gatewaykit/dbmanager/internal/pgtest"
	"github.com/gatewaykit/dbmanager/internal/testcert"
)

// TestDoctorReplicaTLS: with verified TLS required (AWS_REQUIRE_SSL and
// the writer's CA in AWS_SSLROOTCERT) and a writer that passes, three read
// replicas whose TLS fails, each its own way: one offers no TLS, one has a
// certificate for another host name, one a certificate from a CA not in
// AWS_SSLROOTCERT. Each replica-tls is a warning naming its problem, with
// a fix; the replica's later steps are skipped; the report stays ok
// (exit 0), and no password appears in either output. The TLS step stops
// a replica before its login, so these replicas need not be standbys.
func TestDoctorReplicaTLS(t *testing.T) {
	writer, ca := tlsServer(t) // a certificate for 127.0.0.1
	d := newDB(t, writer.URL(t), true)
	hostCert, hostKey := ca.ServerCert(t, []string{"replica.internal"}, nil)
	otherName := pgtest.NewServer(t, pgtest.WithTLS(hostCert, hostKey))
	otherCA := testcert.NewCAValidFor(t, "replica-other-ca", 365*24*time.Hour)
	caCert, caKey := otherCA.ServerCert(t, nil, []net.IP{net.ParseIP("127.0.0.1")})
	otherAuthority := pgtest.NewServer(t, pgtest.WithTLS(caCert, caKey))
	plainURL, err := url.Parse(pgtest.URL(t)) // the shared server: no TLS
	if err != nil {
		t.Fatal("the shared server's URL does not parse")
	}
	plain := plainURL.Host
	addr := func(s *pgtest.Server) string { return net.JoinHostPort(s.Host(), strconv.Itoa(s.Port())) }
	readHosts := plain + "," + addr(otherName) + "," + addr(otherAuthority)

	r := runDoctor(t, d.env("AWS_REQUIRE_SSL", "true", "AWS_SSLROOTCERT", ca.File, "AWS_DB_READ_HOST", readHosts))
	t.Logf("dbdoctor with replicas failing TLS:\n%s", r.text)
	r.want(t, 0, "tls", ok, "verified by file "+ca.File)
	r.want(t, 0, "store", ok)
	r.wantOn(t, "replica-tls", plain, warning, "does not offer TLS, and TLS is required (AWS_REQUIRE_SSL=true)",
		"out of rotation", "turn TLS on at the server")
	r.wantOn(t, "replica-tls", addr(otherName), warning, "is for replica.internal, not for 127.0.0.1",
		"out of rotation", "a name the certificate has", "AWS_DB_READ_HOST")
	r.wantOn(t, "replica-tls", addr(otherAuthority), warning, "issued by CN=replica-other-ca", "not among the roots in use",
		"AWS_SSLROOTCERT, 1 certificate): CN=doctor-test-ca", "out of rotation", "AWS_SSLROOTCERT names a file without the CA")
	for _, a := range []string{plain, addr(otherName), addr(otherAuthority)} {
		r.wantOn(t, "replica-tcp", a, ok)
		for _, step := range []string{"replica-auth", "replica-server"} {
			r.wantOn(t, step, a, skipped, "needs replica-tls")
		}
	}
	if r.code != 0 || !r.report.OK {
		t.Errorf("exit %d, ok %v; want 0, true (warnings only)", r.code, r.report.OK)
	}
	r.noSecret(t, d.password)
}

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

// TestDoctorReplicaOwnRootCert: DATABASE_READ_URL names its own
// sslrootcert, which the Manager trusts for the replica (besides
// AWS_SSLROOTCERT's file, as libpq would). With a file that does not hold
// the replica's CA, replica-tls says which roots were in use, both files,
// and its fix names DATABASE_READ_URL's sslrootcert; with the replica's CA
// there, replica-tls verifies by that file.
func TestDoctorReplicaOwnRootCert(t *testing.T) {
	writer, ca := tlsServer(t)
	d := newDB(t, writer.URL(t), true)
	replicaCA := testcert.NewCAValidFor(t, "replica-own-ca", 365*24*time.Hour)
	cert, key := replicaCA.ServerCert(t, nil, []net.IP{net.ParseIP("127.0.0.1")})
	replica := pgtest.NewServer(t, pgtest.WithTLS(cert, key))
	strangerCA := testcert.NewCAValidFor(t, "replica-stranger-ca", 365*24*time.Hour)
	addr := net.JoinHostPort(replica.Host(), strconv.Itoa(replica.Port()))
	readURL := func(rootCert string) string {
		u := url.URL{Scheme: "postgres", Host: addr, Path: "/" + d.name,
			RawQuery: url.Values{"sslmode": {"verify-full"}, "sslrootcert": {rootCert}}.Encode()}
		return u.String()
	}

	t.Run("without the replica's CA", func(t *testing.T) {
		r := runDoctor(t, d.env("AWS_REQUIRE_SSL", "true", "AWS_SSLROOTCERT", ca.File, "DATABASE_READ_URL", readURL(strangerCA.File)))
		t.Logf("dbdoctor with a replica whose own sslrootcert lacks its CA:\n%s", r.text)
		r.want(t, 0, "tls", ok, "verified by file "+ca.File)
		r.wantOn(t, "replica-tls", addr, warning, "issued by CN=replica-own-ca", "not among the roots in use",
			"AWS_SSLROOTCERT holds CN=doctor-test-ca; sslrootcert holds CN=replica-stranger-ca", "DATABASE_READ_URL's sslrootcert ("+strangerCA.File+") does not hold the CA")
		if r.code != 0 || !r.report.OK {
			t.Errorf("exit %d, ok %v; want 0, true (a replica's warning)", r.code, r.report.OK)
		}
		r.noSecret(t, d.password)
	})
	t.Run("with the replica's CA", func(t *testing.T) {
		r := runDoctor(t, d.env("AWS_REQUIRE_SSL", "true", "AWS_SSLROOTCERT", ca.File, "DATABASE_READ_URL", readURL(replicaCA.File)))
		r.wantOn(t, "replica-tls", addr, ok, "verified by file "+replicaCA.File)
	})
}

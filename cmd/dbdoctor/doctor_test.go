package main

import (
	"context"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatewaykit/dbmanager"
	"github.com/gatewaykit/dbmanager/internal/faultproxy"
	"github.com/gatewaykit/dbmanager/internal/pgtest"
	"github.com/gatewaykit/dbmanager/internal/testcert"
	"github.com/jackc/pgx/v5"
)

const (
	ok      = dbmanager.StepOK
	warning = dbmanager.StepWarning
	failed  = dbmanager.StepFailed
	skipped = dbmanager.StepSkipped
)

// tlsServer starts a server whose certificate, from a CA valid for a
// year, is for the IP address 127.0.0.1 only (not for "localhost").
func tlsServer(t *testing.T, opts ...pgtest.Option) (*pgtest.Server, *testcert.CA) {
	t.Helper()
	ca := testcert.NewCAValidFor(t, "doctor-test-ca", 365*24*time.Hour)
	cert, key := ca.ServerCert(t, nil, []net.IP{net.ParseIP("127.0.0.1")})
	return pgtest.NewServer(t, append([]pgtest.Option{pgtest.WithTLS(cert, key)}, opts...)...), ca
}

// TestDoctorOnTLSServer runs the scenarios of one verify-full TLS server:
// healthy (with and without the write test), another CA, a host name not
// on the certificate, a wrong password, a user without privileges, a
// black-holed network.
func TestDoctorOnTLSServer(t *testing.T) {
	srv, ca := tlsServer(t)
	d := newDB(t, srv.URL(t), true)
	tlsEnv := func(extra ...string) map[string]string {
		return d.env(append([]string{"AWS_REQUIRE_SSL", "true", "AWS_SSLROOTCERT", ca.File}, extra...)...)
	}

	t.Run("healthy", func(t *testing.T) {
		r := runDoctor(t, tlsEnv())
		t.Logf("dbdoctor on a healthy server:\n%s", r.text)
		r.wantAllOK(t)
		r.want(t, 0, "tls", ok, "TLS 1.3", "verified by file "+ca.File+" (root CA doctor-test-ca) for host name 127.0.0.1")
		r.want(t, 0, "config", ok, "trusting file "+ca.File+" (AWS_SSLROOTCERT, 1 certificate)")
		r.want(t, 0, "auth", ok, "logged in as "+d.user, "over TLS")
		r.want(t, 0, "server", ok, "PostgreSQL 15", "accepts writes", "the pool opens up to 15")
		r.want(t, 0, "store", ok, "does not exist yet", "nothing written")
		r.noSecret(t, d.password)
	})
	t.Run("write test", func(t *testing.T) {
		r := runDoctor(t, tlsEnv(), "-write-test")
		r.wantAllOK(t)
		r.want(t, 0, "store", ok, "written, read back and deleted")
		r.noSecret(t, d.password)
		// The second run found the schema the first one created, and
		// nothing of the scratch keys is left.
		r.want(t, 0, "store", ok, "layout version 1")
		var n int
		countRows(t, d.admin, `SELECT count(*) FROM dbmanager.records`, &n)
		if n != 0 {
			t.Errorf("%d scratch records left behind", n)
		}
	})
	t.Run("other CA", func(t *testing.T) {
		other := testcert.NewCAValidFor(t, "some-other-ca", 365*24*time.Hour)
		r := runDoctor(t, tlsEnv("AWS_SSLROOTCERT", other.File))
		r.want(t, 1, "tls", failed, "issued by CN=doctor-test-ca", "AWS_SSLROOTCERT, 1 certificate): CN=some-other-ca",
			"truststore.pki.rds.amazonaws.com", "unset AWS_SSLROOTCERT")
		r.want(t, 1, "auth", skipped)
		r.noSecret(t, d.password)
	})
	t.Run("default roots", func(t *testing.T) {
		env := tlsEnv()
		delete(env, "AWS_SSLROOTCERT")
		r := runDoctor(t, env)
		r.want(t, 1, "tls", failed, "issued by CN=doctor-test-ca", "system and embedded RDS bundle", "neither a system root nor an Amazon RDS root")
		r.noSecret(t, d.password)
	})
	t.Run("wrong host name", func(t *testing.T) {
		r := runDoctor(t, tlsEnv("AWS_DB_HOST", "localhost"))
		r.want(t, 1, "tls", failed, "is for 127.0.0.1, not for localhost", "name the certificate has")
		r.noSecret(t, d.password)
	})
	t.Run("wrong password", func(t *testing.T) {
		wrong := "wrong-" + marker
		r := runDoctor(t, tlsEnv("AWS_DB_PASSWORD", wrong))
		r.want(t, 1, "tls", ok)
		r.want(t, 1, "auth", failed, "wrong password for user "+d.user, "28P01", "AWS_DB_PASSWORD")
		r.want(t, 1, "server", skipped)
		r.want(t, 1, "store", skipped)
		r.noSecret(t, d.password, wrong)
	})
	t.Run("no privileges", func(t *testing.T) {
		bare := newDB(t, d.admin, false)
		r := runDoctor(t, bare.env("AWS_REQUIRE_SSL", "true", "AWS_SSLROOTCERT", ca.File))
		r.want(t, 1, "server", ok)
		r.want(t, 1, "store", failed, "lacks CREATE on database "+d.name, "GRANT CREATE ON DATABASE")
		r.noSecret(t, bare.password)
	})
	t.Run("no privileges on an existing schema", func(t *testing.T) {
		bare := newDB(t, d.admin, false)
		adminExec(t, d.admin, "GRANT CREATE ON DATABASE "+quote(d.name)+" TO "+quote(bare.user)+"; GRANT USAGE ON SCHEMA dbmanager TO "+quote(bare.user))
		r := runDoctor(t, bare.env("AWS_REQUIRE_SSL", "true", "AWS_SSLROOTCERT", ca.File))
		r.want(t, 1, "store", failed, "CREATE on schema dbmanager", "SELECT, INSERT, UPDATE, DELETE on table dbmanager.records",
			"SELECT, INSERT on table dbmanager.schema_version", `GRANT CREATE ON SCHEMA "dbmanager"`)
		r.noSecret(t, bare.password)
	})
	t.Run("least privilege on a current schema", func(t *testing.T) {
		bare := newDB(t, d.admin, false)
		adminExec(t, d.admin, "GRANT USAGE ON SCHEMA dbmanager TO "+quote(bare.user)+
			"; GRANT SELECT, INSERT, UPDATE, DELETE ON dbmanager.records TO "+quote(bare.user)+
			"; GRANT SELECT ON dbmanager.schema_version TO "+quote(bare.user))
		r := runDoctor(t, bare.env("AWS_REQUIRE_SSL", "true", "AWS_SSLROOTCERT", ca.File), "-write-test")
		r.want(t, 0, "store", ok, "no CREATE while the layout is current", "write test")
		r.noSecret(t, bare.password)
	})
	t.Run("black hole", func(t *testing.T) {
		proxy := faultproxy.New(t, net.JoinHostPort(srv.Host(), strconv.Itoa(srv.Port())))
		proxy.BlackHole()
		timeout := time.Second
		start := time.Now()
		r := runDoctor(t, tlsEnv("AWS_DB_PORT", strconv.Itoa(proxy.Port())), "-timeout", timeout.String())
		r.want(t, 1, "tcp", ok)
		s := r.want(t, 1, "tls", failed, "did not answer the TLS request", "security group")
		if s.Took > timeout+500*time.Millisecond {
			t.Errorf("tls step took %s with -timeout %s", s.Took, timeout)
		}
		r.want(t, 1, "auth", skipped)
		t.Logf("two runs through a black hole took %s", time.Since(start))
		r.noSecret(t, d.password)
	})
	t.Run("black hole without TLS", func(t *testing.T) {
		proxy := faultproxy.New(t, net.JoinHostPort(srv.Host(), strconv.Itoa(srv.Port())))
		proxy.BlackHole()
		url := "postgres://" + d.user + ":" + "x" + marker + "@127.0.0.1:" + strconv.Itoa(proxy.Port()) + "/" + d.name + "?sslmode=disable"
		r := runDoctor(t, map[string]string{"DATABASE_URL": url}, "-timeout", "1s")
		r.want(t, 1, "tls", warning, "sslmode=disable")
		r.want(t, 1, "auth", failed, "timed out: no answer to the login within", "security groups")
	})
}

// TestDoctorExpiringCertificate: a certificate that expires within 30
// days makes the tls step a warning, and the run still passes.
func TestDoctorExpiringCertificate(t *testing.T) {
	ca := testcert.NewCA(t, "short-lived-ca") // a day
	cert, key := ca.ServerCert(t, nil, []net.IP{net.ParseIP("127.0.0.1")})
	srv := pgtest.NewServer(t, pgtest.WithTLS(cert, key))
	d := newDB(t, srv.URL(t), true)
	r := runDoctor(t, d.env("AWS_REQUIRE_SSL", "true", "AWS_SSLROOTCERT", ca.File))
	r.want(t, 0, "tls", warning, "expires on", "less than a day", "renew")
	r.want(t, 0, "store", ok)
	if !r.report.OK {
		t.Error("a warning made the report fail")
	}
	r.noSecret(t, d.password)
}

// TestDoctorRefused: nothing listens on the port.
func TestDoctorRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	pw := "pw-" + marker
	r := runDoctor(t, map[string]string{"AWS_DB_HOST": "127.0.0.1", "AWS_DB_PORT": strconv.Itoa(port), "AWS_DB_USER": "app", "AWS_DB_PASSWORD": pw})
	r.want(t, 1, "config", ok, "AWS_DB_PASSWORD (set, hidden)", "source AWS_DB_*")
	r.want(t, 1, "dns", ok, "IP address")
	r.want(t, 1, "tcp", failed, "refused", "nothing listens on 127.0.0.1:"+strconv.Itoa(port))
	for _, name := range []string{"tls", "auth", "server", "store"} {
		r.want(t, 1, name, skipped)
	}
	r.noSecret(t, pw)
}

// TestDoctorPlainServer runs the scenarios of a server without TLS: TLS
// required but not offered, and the same server diagnosed without the
// requirement (plaintext is a warning, not a failure).
func TestDoctorPlainServer(t *testing.T) {
	d := newDB(t, pgtest.URL(t), true)
	t.Run("TLS required", func(t *testing.T) {
		r := runDoctor(t, d.env("AWS_REQUIRE_SSL", "true"))
		r.want(t, 1, "tls", failed, "does not offer TLS", "AWS_REQUIRE_SSL=true")
		r.want(t, 1, "auth", skipped)
		r.noSecret(t, d.password)
	})
	t.Run("plaintext allowed", func(t *testing.T) {
		r := runDoctor(t, d.env())
		r.want(t, 0, "tls", warning, "does not offer TLS", "plaintext")
		r.want(t, 0, "auth", ok, "in plaintext")
		r.want(t, 0, "store", ok)
		r.noSecret(t, d.password)
	})
}

// TestDoctorReadOnlyWriter: a primary fenced read-only in place (as
// Aurora fences a failed writer), as the writer.
func TestDoctorReadOnlyWriter(t *testing.T) {
	srv := pgtest.NewServer(t)
	d := newDB(t, srv.URL(t), true)
	srv.Fence(t)
	r := runDoctor(t, d.env())
	r.want(t, 1, "auth", ok)
	r.want(t, 1, "server", failed, "read-only: default_transaction_read_only is on", "no host of the writer accepts writes", "writer endpoint")
	r.want(t, 1, "store", skipped)
	r.noSecret(t, d.password)
}

// TestDoctorStandby: a streaming-replication standby as the writer fails
// the server step; listed before the primary in a multi-host URL with
// target_session_attrs=read-write, it is skipped by the pool and the
// diagnosis passes.
func TestDoctorStandby(t *testing.T) {
	c := pgtest.NewCluster(t, pgtest.WithStandbys(1))
	primary, standby := c.Primary(), c.Standbys()[0]
	name := c.Database(t)
	d := newDB(t, c.NodeURL(primary, name), true)
	c.WaitCaughtUp(t)

	t.Run("standby as the writer", func(t *testing.T) {
		r := runDoctor(t, d.env("AWS_DB_PORT", strconv.Itoa(standby.Port())))
		r.want(t, 1, "auth", ok)
		r.want(t, 1, "server", failed, "read-only: a standby (pg_is_in_recovery)", "cluster (writer) endpoint")
		r.want(t, 1, "store", skipped)
		r.noSecret(t, d.password)
	})
	t.Run("multi-host with target_session_attrs", func(t *testing.T) {
		hosts := net.JoinHostPort(standby.Host(), strconv.Itoa(standby.Port())) + "," + net.JoinHostPort(primary.Host(), strconv.Itoa(primary.Port()))
		u := "postgres://" + d.user + ":" + url.QueryEscape(d.password) + "@" + hosts + "/" + name + "?sslmode=disable&target_session_attrs=read-write"
		r := runDoctor(t, map[string]string{"DATABASE_URL": u})
		var servers []dbmanager.Step
		for _, s := range r.report.Steps {
			if s.Name == "server" {
				servers = append(servers, s)
			}
		}
		if len(servers) != 2 || servers[0].Status != ok || !strings.Contains(servers[0].Detail, "skips it") ||
			servers[1].Status != ok || !strings.Contains(servers[1].Detail, "accepts writes") {
			t.Errorf("server steps: %+v", servers)
		}
		r.want(t, 0, "store", ok)
		r.noSecret(t, d.password)
	})
}

// TestDoctorPgHBA: a pg_hba.conf that requires TLS for one user and has no
// line for another.
func TestDoctorPgHBA(t *testing.T) {
	dir := t.TempDir()
	for _, p := range []string{dir, filepath.Dir(dir)} { // the server runs as the postgres user
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	hba := filepath.Join(dir, "pg_hba.conf")
	// PostgreSQL cannot check an IAM token (RDS does): the IAM user is
	// trusted over TLS, and what is diagnosed is the path to it.
	rules := "hostssl all iam_doctor 127.0.0.1/32 trust\nhostssl all all 127.0.0.1/32 scram-sha-256\nhost all postgres 127.0.0.1/32 scram-sha-256\n"
	if err := os.WriteFile(hba, []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	srv, ca := tlsServer(t, pgtest.WithSetting("hba_file", hba))
	d := newDB(t, srv.URL(t), true)
	t.Run("IAM over verified TLS", func(t *testing.T) {
		srv.Exec(t, "CREATE ROLE iam_doctor LOGIN")
		adminExec(t, d.admin, "GRANT CREATE ON DATABASE "+quote(d.name)+" TO iam_doctor")
		empty := filepath.Join(t.TempDir(), "none")
		awsKey := "aws-secret-key-" + marker
		env := map[string]string{"AWS_DB_HOST": d.host, "AWS_DB_PORT": strconv.Itoa(d.port), "AWS_DB_NAME": d.name,
			"AWS_DB_USER": "iam_doctor", "AWS_DB_IAM_AUTH": "true", "AWS_REGION": "us-east-1", "AWS_SSLROOTCERT": ca.File,
			"AWS_ACCESS_KEY_ID": "AKIDDOCTORTEST", "AWS_SECRET_ACCESS_KEY": awsKey, "AWS_CONFIG_FILE": empty, "AWS_SHARED_CREDENTIALS_FILE": empty}
		r := runDoctor(t, env)
		r.wantAllOK(t)
		r.want(t, 0, "config", ok, "TLS verify-full required (AWS_DB_IAM_AUTH)", "IAM token")
		r.want(t, 0, "auth", ok, "with an IAM token", "over TLS")
		r.noSecret(t, awsKey, "X-Amz-Signature", "X-Amz-Credential")
		adminExec(t, d.admin, "DROP OWNED BY iam_doctor; DROP ROLE iam_doctor")
	})
	t.Run("TLS required by the server", func(t *testing.T) {
		url := "postgres://" + d.user + "@127.0.0.1:" + strconv.Itoa(d.port) + "/" + d.name + "?sslmode=disable"
		r := runDoctor(t, map[string]string{"DATABASE_URL": url, "PGPASSWORD": d.password})
		r.want(t, 1, "auth", failed, "only over TLS", "no encryption", "AWS_REQUIRE_SSL=true")
		r.noSecret(t, d.password)
	})
	t.Run("no line for the user", func(t *testing.T) {
		rules := "hostssl all postgres 127.0.0.1/32 scram-sha-256\nhost all postgres 127.0.0.1/32 scram-sha-256\n"
		if err := os.WriteFile(hba, []byte(rules), 0o644); err != nil {
			t.Fatal(err)
		}
		srv.Exec(t, "SELECT pg_reload_conf()")
		r := runDoctor(t, d.env("AWS_REQUIRE_SSL", "true", "AWS_SSLROOTCERT", ca.File))
		r.want(t, 1, "tls", ok)
		r.want(t, 1, "auth", failed, "pg_hba.conf has no line", "SSL encryption")
		r.noSecret(t, d.password)
	})
}

// TestDoctorConfigProblems: every problem of the environment at once,
// nothing else run; and nothing configured.
func TestDoctorConfigProblems(t *testing.T) {
	pw := "pw-" + marker
	r := runDoctor(t, map[string]string{"AWS_DB_HOST": "db.example.com", "AWS_DB_PASSWORD": pw, "AWS_DB_PORT": "abc", "DB_POOL_SIZE": "0",
		"DATABASE_URL": "mysql://u:" + pw + "@h/db"})
	s := r.want(t, 1, "config", failed, "AWS_DB_PORT", "DB_POOL_SIZE", "DATABASE_URL", "4 problems")
	if strings.Contains(s.Detail, "mysql://u") {
		t.Errorf("the rejected DATABASE_URL is shown: %s", s.Detail)
	}
	for _, name := range []string{"secret", "dns", "tcp", "tls", "auth", "server", "store"} {
		r.want(t, 1, name, skipped)
	}
	r.noSecret(t, pw)

	none := runDoctor(t, nil)
	none.want(t, 1, "config", failed, "no variable is set", "set DATABASE_URL")

	mem := runDoctor(t, map[string]string{"DATABASE_URL": "memory://"})
	mem.want(t, 0, "config", ok, "on purpose")
	mem.want(t, 0, "store", skipped)
}

// TestDoctorUsage: usage errors exit with 2 and diagnose nothing.
func TestDoctorUsage(t *testing.T) {
	for _, args := range [][]string{{"-bogus"}, {"extra"}, {"-timeout", "0s"}, {"-timeout", "soon"}} {
		out, stderr, code := execDoctor(t, map[string]string{"DATABASE_URL": "memory://"}, args...)
		if code != 2 || out != "" || !strings.Contains(stderr, "Usage") && !strings.Contains(stderr, "timeout") {
			t.Errorf("dbdoctor %v: exit %d, stdout %q, stderr %q; want exit 2 and a usage message", args, code, out, stderr)
		}
	}
	if _, _, code := execDoctor(t, nil, "-h"); code != 0 {
		t.Errorf("dbdoctor -h: exit %d, want 0", code)
	}
}

// countRows runs a one-value query as the admin.
func countRows(t *testing.T, adminURL, sql string, dst *int) {
	t.Helper()
	withAdmin(t, adminURL, func(ctx context.Context, c *pgx.Conn) {
		if err := c.QueryRow(ctx, sql).Scan(dst); err != nil {
			t.Fatal(err)
		}
	})
}

package main

import (
	"context"
	"net"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatewaykit/dbmanager"
	"github.com/gatewaykit/dbmanager/internal/faultproxy"
	"github.com/gatewaykit/dbmanager/internal/pgtest"
	"github.com/jackc/pgx/v5"
)

// TestDoctorReplicas runs the read replica scenarios on one streaming
// cluster (a primary and two standbys): replicas ok (from AWS_DB_READ_HOST
// and from DATABASE_READ_URL with its own password), none configured, a
// bad DATABASE_READ_URL, a "replica" that is the writer, a replica that
// lags (its replay paused), a writer nobody listens for (the replicas are
// still diagnosed), a replica black-holed by a faultproxy (with TLS
// requested and with sslmode=disable), a replica without TLS that
// DATABASE_READ_URL requires TLS of, and a replica that is down. A
// replica's trouble is a warning (exit 0): the Manager reads elsewhere
// meanwhile. TestDoctorReplicaTLS has the replicas whose certificates fail.
func TestDoctorReplicas(t *testing.T) {
	c := pgtest.NewCluster(t, pgtest.WithStandbys(2))
	name := c.Database(t)
	primary, standbys := c.Primary(), c.Standbys()
	d := newDB(t, c.NodeURL(primary, name), true)
	c.WaitCaughtUp(t) // the role, on the standbys too
	addr := func(s *pgtest.Server) string { return net.JoinHostPort(s.Host(), strconv.Itoa(s.Port())) }
	readHosts := addr(standbys[0]) + "," + addr(standbys[1])
	env := func(extra ...string) map[string]string {
		return d.env(append([]string{"AWS_DB_READ_HOST", readHosts}, extra...)...)
	}

	t.Run("replicas ok", func(t *testing.T) {
		r := runDoctor(t, env())
		t.Logf("dbdoctor with two read replicas:\n%s", r.text)
		r.want(t, 0, "config", ok, "AWS_DB_READ_HOST="+readHosts, "read replicas from AWS_DB_READ_HOST, 2 replicas: "+addr(standbys[0])+", "+addr(standbys[1]), "DB_READ_MAX_LAG 1s")
		r.want(t, 0, "server", ok, "accepts writes")
		r.want(t, 0, "store", ok)
		for _, s := range standbys {
			for _, step := range []string{"replica-dns", "replica-tcp", "replica-auth"} {
				r.wantOn(t, step, addr(s), ok)
			}
			r.wantOn(t, "replica-tls", addr(s), warning, "does not offer TLS") // the cluster runs without TLS
			r.wantOn(t, "replica-server", addr(s), ok, "PostgreSQL 15", "read-only: a standby (pg_is_in_recovery)", "DB_READ_MAX_LAG 1s", "lag")
		}
		if !r.report.OK {
			t.Errorf("report not ok")
		}
		if !strings.Contains(r.json, `"name": "replica-server"`) || !strings.Contains(r.json, `"target": "`+addr(standbys[1])+`"`) {
			t.Errorf("the JSON output has no replica-server step on %s:\n%s", addr(standbys[1]), r.json)
		}
		// The replica steps come after the writer's store step.
		if i, j := r.index("store"), r.index("replica-dns"); i < 0 || j < i {
			t.Errorf("replica-dns (step %d) is not after store (step %d)", j, i)
		}
		r.noSecret(t, d.password)
	})

	t.Run("DATABASE_READ_URL with a password", func(t *testing.T) {
		u := &url.URL{Scheme: "postgres", User: url.UserPassword(d.user, d.password), Path: "/" + name}
		writerURL := *u
		writerURL.Host = addr(primary)
		u.Host = readHosts
		r := runDoctor(t, map[string]string{"DATABASE_URL": writerURL.String(), "DATABASE_READ_URL": u.String(), "DB_CONNECT_TIMEOUT": "5"})
		r.want(t, 0, "config", ok, "DATABASE_READ_URL=postgres://"+d.user+":xxxxx@"+readHosts+"/"+name, "read replicas from DATABASE_READ_URL, 2 replicas")
		r.wantOn(t, "replica-auth", addr(standbys[0]), ok, "logged in as "+d.user, "the password in DATABASE_READ_URL")
		r.wantOn(t, "replica-server", addr(standbys[1]), ok, "a standby")
		r.noSecret(t, d.password, url.QueryEscape(d.password), url.PathEscape(d.password))
	})

	t.Run("none configured", func(t *testing.T) {
		r := runDoctor(t, d.env())
		r.want(t, 0, "config", ok, "read replicas: none configured")
		for _, s := range r.report.Steps {
			if strings.HasPrefix(s.Name, "replica-") {
				t.Errorf("a %s step without read replicas", s.Name)
			}
		}
		r.noSecret(t, d.password)
	})

	t.Run("bad DATABASE_READ_URL", func(t *testing.T) {
		bad := "postgres://" + d.user + ":" + url.PathEscape(d.password) + "@" + addr(standbys[0]) + ":5/" + name
		r := runDoctor(t, d.env("DATABASE_READ_URL", bad))
		r.want(t, 1, "config", failed, "DATABASE_READ_URL")
		r.want(t, 1, "dns", skipped)
		r.noSecret(t, d.password, url.PathEscape(d.password))
	})

	t.Run("replica is the writer", func(t *testing.T) {
		r := runDoctor(t, env("AWS_DB_READ_HOST", addr(primary)+","+addr(standbys[0])))
		r.wantOn(t, "replica-server", addr(primary), warning, "not in recovery", "keeps it out of the read rotation", "reader endpoint")
		r.wantOn(t, "replica-server", addr(standbys[0]), ok, "a standby")
		if r.code != 0 || !r.report.OK {
			t.Errorf("exit %d, ok %v; want 0, true (a warning)", r.code, r.report.OK)
		}
		r.noSecret(t, d.password)
	})

	t.Run("replica lagging", func(t *testing.T) {
		lagging := standbys[1]
		replay := func(fn string) {
			withAdmin(t, c.NodeURL(lagging, name), func(ctx context.Context, conn *pgx.Conn) {
				if _, err := conn.Exec(ctx, "SELECT "+fn+"()"); err != nil {
					t.Fatalf("%s on %s: %v", fn, lagging.Name(), err)
				}
			})
		}
		replay("pg_wal_replay_pause")
		t.Cleanup(func() { replay("pg_wal_replay_resume") })
		// Paused before the writer wrote anything more: caught up (unless
		// some WAL of the server's own came in) but a warning all the same.
		r := runDoctor(t, env())
		r.wantOn(t, "replica-server", addr(lagging), warning, "WAL replay is paused", "pg_wal_replay_resume()")
		adminExec(t, d.admin, "CREATE TABLE replica_lag_probe (i int)") // WAL the paused replica does not replay
		r = runDoctor(t, env())
		t.Logf("dbdoctor with a lagging replica:\n%s", r.text)
		r.wantOn(t, "replica-server", addr(lagging), warning, "lagging", "bytes of WAL behind the writer",
			"its lag is over DB_READ_MAX_LAG 1s", "WAL replay is paused", "pg_wal_replay_resume()", "raise DB_READ_MAX_LAG")
		r.wantOn(t, "replica-server", addr(standbys[0]), ok)
		if r.code != 0 || !r.report.OK {
			t.Errorf("exit %d, ok %v; want 0, true (a warning)", r.code, r.report.OK)
		}
		// With no lag limit the same replica is ok, its lag told.
		r = runDoctor(t, env("DB_READ_MAX_LAG", "-1"))
		r.wantOn(t, "replica-server", addr(lagging), ok, "bytes of WAL behind the writer", "no lag limit")
		r.noSecret(t, d.password)
	})

	t.Run("writer unreachable", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
		l.Close()
		// The replicas keep their ports (AWS_DB_READ_HOST names them).
		r := runDoctor(t, env("AWS_DB_PORT", port))
		r.want(t, 1, "tcp", failed, "refused")
		r.want(t, 1, "store", skipped)
		r.wantOn(t, "replica-server", addr(standbys[0]), ok, "a standby", "lag not measured: no writer node passed its steps")
		r.noSecret(t, d.password)
	})

	t.Run("replica black-holed", func(t *testing.T) {
		// A proxy or load balancer that accepts the connection and
		// forwards nothing: TCP connects, the TLS request gets no answer.
		proxy := faultproxy.New(t, addr(standbys[1]))
		proxy.BlackHole()
		holed := proxy.Addr()
		timeout := 2 * time.Second
		start := time.Now()
		r := runDoctor(t, env("AWS_DB_READ_HOST", addr(standbys[0])+","+holed), "-timeout", timeout.String())
		t.Logf("dbdoctor with a black-holed replica (two runs in %s):\n%s", time.Since(start).Round(time.Millisecond), r.text)
		r.want(t, 0, "store", ok)
		r.wantOn(t, "replica-tcp", holed, ok, "connected")
		s := r.wantOn(t, "replica-tls", holed, warning, "timed out", "did not answer the TLS request within",
			"out of rotation", "security group", "proxy or load balancer")
		// Bounded by the step's timeout (a generous margin for a loaded
		// machine), not hung.
		if s.Took < timeout/2 || s.Took > timeout+3*time.Second {
			t.Errorf("replica-tls took %s with -timeout %s", s.Took, timeout)
		}
		for _, step := range []string{"replica-auth", "replica-server"} {
			r.wantOn(t, step, holed, skipped, "needs replica-tls")
		}
		r.wantOn(t, "replica-server", addr(standbys[0]), ok, "a standby")
		if r.code != 0 || !r.report.OK {
			t.Errorf("exit %d, ok %v; want 0, true (a warning)", r.code, r.report.OK)
		}
		r.noSecret(t, d.password)
	})

	t.Run("replica black-holed without TLS", func(t *testing.T) {
		// With sslmode=disable nothing is asked before the login: the
		// login is what gets no answer.
		proxy := faultproxy.New(t, addr(standbys[1]))
		proxy.BlackHole()
		holed := proxy.Addr()
		u := &url.URL{Scheme: "postgres", Host: addr(standbys[0]) + "," + holed, Path: "/" + name, RawQuery: "sslmode=disable"}
		r := runDoctor(t, d.env("DATABASE_READ_URL", u.String()), "-timeout", "2s")
		r.wantOn(t, "replica-tls", holed, warning, "sslmode=disable")
		r.wantOn(t, "replica-auth", holed, warning, "timed out: no answer to the login within", "timeout", "out of rotation", "security group")
		r.wantOn(t, "replica-server", holed, skipped, "needs replica-auth")
		r.wantOn(t, "replica-server", addr(standbys[0]), ok, "a standby")
		if r.code != 0 || !r.report.OK {
			t.Errorf("exit %d, ok %v; want 0, true (a warning)", r.code, r.report.OK)
		}
		r.noSecret(t, d.password)
	})

	t.Run("replica without TLS, required by DATABASE_READ_URL", func(t *testing.T) {
		u := &url.URL{Scheme: "postgres", Host: readHosts, Path: "/" + name, RawQuery: "sslmode=verify-full"}
		r := runDoctor(t, d.env("DATABASE_READ_URL", u.String()))
		r.want(t, 0, "tls", warning, "does not offer TLS") // the writer: sslmode=prefer
		r.want(t, 0, "store", ok)
		for _, s := range standbys {
			r.wantOn(t, "replica-tls", addr(s), warning, "does not offer TLS, and TLS is required (DATABASE_READ_URL's sslmode=verify-full)",
				"out of rotation", "turn TLS on at the server")
			for _, step := range []string{"replica-auth", "replica-server"} {
				r.wantOn(t, step, addr(s), skipped, "needs replica-tls")
			}
		}
		if r.code != 0 || !r.report.OK {
			t.Errorf("exit %d, ok %v; want 0, true (a warning)", r.code, r.report.OK)
		}
		r.noSecret(t, d.password)
	})

	t.Run("replica down", func(t *testing.T) {
		down := standbys[1]
		down.Stop(t)
		t.Cleanup(func() { down.Start(t) })
		r := runDoctor(t, env())
		t.Logf("dbdoctor with a replica down:\n%s", r.text)
		r.wantOn(t, "replica-tcp", addr(down), warning, "refused", "out of rotation", "reads go to another replica or the writer",
			"nothing listens on "+addr(down), "the :port of the AWS_DB_READ_HOST entry")
		for _, step := range []string{"replica-tls", "replica-auth", "replica-server"} {
			r.wantOn(t, step, addr(down), skipped, "needs replica-tcp")
		}
		r.wantOn(t, "replica-server", addr(standbys[0]), ok, "a standby")
		r.want(t, 0, "store", ok)
		if r.code != 0 || !r.report.OK {
			t.Errorf("exit %d, ok %v; want 0, true (a warning)", r.code, r.report.OK)
		}
		r.noSecret(t, d.password)
	})
}

// wantOn checks that step name on target has status and a detail (or
// fix) containing every one of texts.
func (r doctorRun) wantOn(t *testing.T, name, target string, status dbmanager.StepStatus, texts ...string) dbmanager.Step {
	t.Helper()
	for _, s := range r.report.Steps {
		if s.Name != name || s.Target != target {
			continue
		}
		if s.Status != status {
			t.Errorf("step %s %s is %s, want %s: %s | fix: %s", name, target, s.Status, status, s.Detail, s.Fix)
		}
		for _, text := range texts {
			if !strings.Contains(s.Detail+" fix: "+s.Fix, text) {
				t.Errorf("step %s %s does not mention %q: %s | fix: %s", name, target, text, s.Detail, s.Fix)
			}
		}
		if status == warning && s.Fix == "" {
			t.Errorf("step %s %s is a warning without a fix", name, target)
		}
		if !strings.Contains(r.text, strings.ToUpper(string(status))+" ") && status != ok && status != skipped {
			t.Errorf("the output for people shows no %s", status)
		}
		return s
	}
	t.Errorf("no %s step on %s in the report:\n%s", name, target, r.text)
	return dbmanager.Step{}
}

// index is the position of the first step called name (-1 if none).
func (r doctorRun) index(name string) int {
	for i, s := range r.report.Steps {
		if s.Name == name {
			return i
		}
	}
	return -1
}

package dbmanager

import (
	"context"
	"github.com/gatewaykit/dbmanager/internal/connstr"
	"strings"
	"testing"
	"time"

	"github.com/gatewaykit/dbmanager/internal/pgtest"
)

// The read replica scenarios on a streaming cluster run the command
// (cmd/dbdoctor); these cover what the library call adds: a read
// configuration built by hand that LoadConfig would reject, and replicas
// resolved with a writer that comes from a secret.

// TestDiagnoseReadConfigProblems: a Config whose read configuration
// LoadConfig would reject fails the config step, naming the variable and
// showing no password; nothing is dialled.
func TestDiagnoseReadConfigProblems(t *testing.T) {
	base := envConfig(t, "DATABASE_URL", "postgres://u:pw-"+leakMarker+"@db.invalid:5432/app")
	badHosts := base
	badHosts.ReadHosts = []string{"r1:0"}
	badURL := base
	badURL.ReadURL = NewSecret("postgres://u:rpw-" + leakMarker + "@r1:99999/app")
	memory := envConfig(t, "DATABASE_URL", "memory://")
	memory.ReadHosts = []string{"r1"}
	for _, c := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"bad AWS_DB_READ_HOST", badHosts, "AWS_DB_READ_HOST: entry 1: the port is not a number"},
		{"bad DATABASE_READ_URL", badURL, "DATABASE_READ_URL"},
		{"replicas of memory", memory, "AWS_DB_READ_HOST: read replicas need a PostgreSQL writer"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := Diagnose(context.Background(), c.cfg, WithStepTimeout(time.Second))
			s := stepNamed(t, r, "config")
			if r.OK || s.Status != StepFailed || !strings.Contains(s.Detail, c.want) || s.Fix == "" {
				t.Errorf("config step %s: %s | fix: %s; want failed naming %q", s.Status, s.Detail, s.Fix, c.want)
			}
			for _, s := range r.Steps[1:] {
				if s.Status != StepSkipped {
					t.Errorf("step %s %s after a failed config", s.Name, s.Status)
				}
			}
			noLeak(t, r, "pw-"+leakMarker)
		})
	}
}

// TestDiagnoseReplicasOfSecretWriter: with the writer from a secret, the
// replicas are resolved once the secret is read, with its credentials. The
// one replica named here is the writer itself: replica-server warns (not
// in recovery), and the report stays ok.
func TestDiagnoseReplicasOfSecretWriter(t *testing.T) {
	admin := pgtest.URL(t)
	host, port, db := serverParts(t, admin)
	pw := "pw-" + leakMarker
	role := roleWithPassword(t, admin, pw)
	execURL(t, admin, "GRANT CREATE ON DATABASE "+quoteIdent(db)+" TO "+role)
	src := mapSecrets{"good": `{"username":"` + role + `","password":"` + pw + `","host":"` + host + `","port":` + itoa(port) + `,"dbname":"` + db + `"}`}
	cfg := envConfig(t, "AWS_DB_SECRET", "good", "AWS_DB_READ_HOST", host) // no port: the writer's
	r := Diagnose(context.Background(), cfg, WithSecretSource(src), WithStepTimeout(5*time.Second))
	addr := connstr.DisplayHostPort(host, port)
	if s := stepNamed(t, r, "config"); s.Status != StepOK || !strings.Contains(s.Detail, "read replicas from AWS_DB_READ_HOST, "+host+" (a port left out is the writer's)") {
		t.Errorf("config step: %+v", s)
	}
	if s := stepNamed(t, r, "secret"); s.Status != StepOK || !strings.Contains(s.Detail, "read replicas from AWS_DB_READ_HOST, 1 replica: "+addr) {
		t.Errorf("secret step: %+v", s)
	}
	if s := stepNamed(t, r, "replica-auth"); s.Status != StepOK || s.Target != addr || !strings.Contains(s.Detail, "the password of secret") {
		t.Errorf("replica-auth step: %+v", s)
	}
	if s := stepNamed(t, r, "replica-server"); s.Status != StepWarning || !strings.Contains(s.Detail, "not in recovery") || s.Fix != fixReplicaIsWriter {
		t.Errorf("replica-server step: %+v", s)
	}
	if !r.OK {
		t.Errorf("a replica's warning made the report not ok:\n%s", r)
	}
	noLeak(t, r, pw)
}

// TestDiagnoseRefusedReplicaNamesItsPort: a replica nobody listens on
// warns in replica-tcp (the writer's steps pass), and the fix names where
// a replica's port is set, not the writer's AWS_DB_PORT.
func TestDiagnoseRefusedReplicaNamesItsPort(t *testing.T) {
	admin := pgtest.URL(t)
	port := closedPort(t)
	cfg := envConfig(t, "DATABASE_URL", admin, "AWS_DB_READ_HOST", "127.0.0.1:"+itoa(port))
	r := Diagnose(context.Background(), cfg, WithStepTimeout(5*time.Second))
	s := stepNamed(t, r, "replica-tcp")
	if s.Status != StepWarning || !strings.Contains(s.Fix, "AWS_DB_READ_HOST entry") || strings.Contains(s.Fix, "AWS_DB_PORT") {
		t.Errorf("replica-tcp step: %+v; want a warning whose fix names the replica's port setting", s)
	}
	if w := stepNamed(t, r, "tcp"); w.Status != StepOK {
		t.Errorf("writer's tcp step: %+v", w)
	}
	if !r.OK {
		t.Errorf("a replica's warning made the report not ok:\n%s", r)
	}
}

// TestDiagnoseUnresolvableReplicaNamesItsSetting: a replica whose name
// does not resolve warns in replica-dns (the writer's steps pass), and
// the fix names where a replica's host is set, not the writer's
// AWS_DB_HOST.
func TestDiagnoseUnresolvableReplicaNamesItsSetting(t *testing.T) {
	admin := pgtest.URL(t)
	cfg := envConfig(t, "DATABASE_URL", admin, "AWS_DB_READ_HOST", "no-such-replica.invalid:5432")
	r := Diagnose(context.Background(), cfg, WithStepTimeout(5*time.Second))
	s := stepNamed(t, r, "replica-dns")
	if s.Status != StepWarning || !strings.Contains(s.Fix, "AWS_DB_READ_HOST") || strings.Contains(s.Fix, "AWS_DB_HOST") {
		t.Errorf("replica-dns step: %+v; want a warning whose fix names the replica's host setting", s)
	}
	for _, name := range []string{"replica-tcp", "replica-tls", "replica-auth", "replica-server"} {
		if s := stepNamed(t, r, name); s.Status != StepSkipped {
			t.Errorf("%s step after a failed replica-dns: %+v", name, s)
		}
	}
	if w := stepNamed(t, r, "dns"); w.Status != StepOK {
		t.Errorf("writer's dns step: %+v", w)
	}
	if !r.OK {
		t.Errorf("a replica's warning made the report not ok:\n%s", r)
	}
}

package dbmanager

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatewaykit/dbmanager/internal/pgtest"
	"github.com/gatewaykit/dbmanager/internal/safeerr"
	"github.com/gatewaykit/dbmanager/internal/testcert"
	"github.com/gatewaykit/dbmanager/internal/tlstrust"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The command's scenarios (cmd/dbdoctor) run the binary against real
// servers; these tests cover what the library call adds: the JSON form,
// a secret source given as an option, multi-host writers, the texts of
// login refusals the test servers cannot produce, and the Manager's
// pointer to the command.

func TestStepJSONShape(t *testing.T) {
	s := Step{Name: "tcp", Target: "db:5432", Status: StepFailed, Took: 1500 * time.Microsecond, Detail: "d", Fix: "f"}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"name":"tcp","target":"db:5432","status":"failed","took_ms":1.5,"detail":"d","fix":"f"}`; string(b) != want {
		t.Errorf("Step JSON\n got %s\nwant %s", b, want)
	}
	var back Step
	if err := json.Unmarshal(b, &back); err != nil || back != s {
		t.Errorf("round trip: %+v, %v", back, err)
	}
	b, _ = json.Marshal(Report{OK: true, Steps: []Step{}})
	if string(b) != `{"ok":true,"steps":[]}` {
		t.Errorf("Report JSON %s", b)
	}
}

// mapSecrets is a SecretSource holding secrets in memory.
type mapSecrets map[string]string

func (m mapSecrets) SecretString(_ context.Context, id string) (string, error) {
	v, ok := m[id]
	if !ok {
		return "", ErrSecretNotFound
	}
	return v, nil
}

func stepNamed(t *testing.T, r Report, name string) Step {
	t.Helper()
	for _, s := range r.Steps {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no step %s in\n%s", name, r)
	return Step{}
}

// noLeak fails if the report shows any of secrets.
func noLeak(t *testing.T, r Report, secrets ...string) {
	t.Helper()
	js, _ := json.Marshal(r)
	for _, out := range []string{r.String(), string(js)} {
		for _, s := range append(secrets, leakMarker) {
			if strings.Contains(out, s) {
				t.Errorf("the report shows a secret:\n%s", r)
			}
		}
	}
}

func TestDiagnoseWithSecretSource(t *testing.T) {
	admin := pgtest.URL(t)
	host, port, db := serverParts(t, admin)
	pw := "pw-" + leakMarker
	role := roleWithPassword(t, admin, pw)
	execURL(t, admin, "GRANT CREATE ON DATABASE "+quoteIdent(db)+" TO "+role)
	src := mapSecrets{
		"good": `{"username":"` + role + `","password":"` + pw + `","host":"` + host + `","port":` + itoa(port) + `,"dbname":"` + db + `"}`,
		"bad":  `{"username":"` + role + `","password":["` + pw + `"]}`,
	}
	ctx := context.Background()
	cfg := envConfig(t, "AWS_DB_SECRET", "good")
	r := Diagnose(ctx, cfg, WithSecretSource(src), WithStepTimeout(5*time.Second))
	if !r.OK {
		t.Fatalf("not ok:\n%s", r)
	}
	if s := stepNamed(t, r, "secret"); s.Status != StepOK || !strings.Contains(s.Detail, "fields: dbname, host, password, port, username") {
		t.Errorf("secret step: %+v", s)
	}
	if s := stepNamed(t, r, "store"); s.Status != StepOK {
		t.Errorf("store step: %+v", s)
	}
	noLeak(t, r, pw)

	r = Diagnose(ctx, envConfig(t, "AWS_DB_SECRET", "bad"), WithSecretSource(src))
	if s := stepNamed(t, r, "secret"); s.Status != StepFailed || !strings.Contains(s.Detail, `"password" must be a JSON string`) {
		t.Errorf("malformed secret: %+v", s)
	}
	if r.OK || stepNamed(t, r, "auth").Status != StepSkipped {
		t.Errorf("after a failed secret step:\n%s", r)
	}
	noLeak(t, r, pw)
}

// TestDiagnoseMultiHostWriter: a writer DSN that lists a read-only node
// and then the primary. The Manager's pool asks for a writer (by default,
// as with target_session_attrs=read-write), so it skips the read-only node
// and the diagnosis passes; with target_session_attrs=any, pgx stops at
// the first node that answers, and the diagnosis fails there.
func TestDiagnoseMultiHostWriter(t *testing.T) {
	fenced := pgtest.NewServer(t)
	primary := pgtest.NewServer(t)
	pw, role := "pw-"+leakMarker, "doctor_multi"
	for _, s := range []*pgtest.Server{fenced, primary} {
		s.Exec(t, "CREATE ROLE "+role+" LOGIN SUPERUSER PASSWORD '"+pw+"'")
	}
	fenced.Fence(t)
	url := "postgres://" + role + ":" + pw + "@" + fenced.Host() + ":" + itoa(fenced.Port()) + "," + primary.Host() + ":" + itoa(primary.Port()) + "/postgres?sslmode=disable"
	ctx := context.Background()

	for _, params := range []string{"", "&target_session_attrs=read-write"} {
		r := Diagnose(ctx, envConfig(t, "DATABASE_URL", url+params))
		if !r.OK {
			t.Fatalf("with %q:\n%s", params, r)
		}
		var servers []Step
		for _, s := range r.Steps {
			if s.Name == "server" {
				servers = append(servers, s)
			}
		}
		if len(servers) != 2 || !strings.Contains(servers[0].Detail, "skips it") || !strings.Contains(servers[1].Detail, "accepts writes") {
			t.Errorf("with %q, server steps: %+v", params, servers)
		}
		if s := stepNamed(t, r, "store"); s.Status != StepOK {
			t.Errorf("with %q, store: %+v", params, s)
		}
		noLeak(t, r, pw)
	}

	r := Diagnose(ctx, envConfig(t, "DATABASE_URL", url+"&target_session_attrs=any"))
	if s := stepNamed(t, r, "server"); s.Status != StepFailed || s.Target != fenced.Host()+":"+itoa(fenced.Port()) || !strings.Contains(s.Detail, "25006") {
		t.Errorf("with target_session_attrs=any, the first (read-only) node: %+v", s)
	}
	if s := stepNamed(t, r, "store"); s.Status != StepSkipped {
		t.Errorf("store: %+v", s)
	}
	noLeak(t, r, pw)
}

// TestDiagnoseEmbeddedRoots: the tls step says which roots verified the
// server: a throwaway CA added to the embedded RDS roots (the path a real
// RDS root takes) verifies with AWS_SSLROOTCERT unset, and does not with
// AWS_SSLROOTCERT=system.
func TestDiagnoseEmbeddedRoots(t *testing.T) {
	ca := testcert.NewCAValidFor(t, "doctor-embedded-ca", 365*24*time.Hour)
	cert, key := ca.ServerCert(t, nil, []net.IP{net.ParseIP("127.0.0.1")})
	srv := pgtest.NewServer(t, pgtest.WithTLS(cert, key))
	admin := srv.URL(t)
	_, port, db := serverParts(t, admin)
	pw := "pw-" + leakMarker
	role := roleWithPassword(t, admin, pw)
	trustAsEmbedded(t, ca)
	vars := []string{"AWS_DB_HOST", "127.0.0.1", "AWS_DB_PORT", itoa(port), "AWS_DB_NAME", db, "AWS_DB_USER", role,
		"AWS_DB_PASSWORD", pw, "AWS_REQUIRE_SSL", "true"}
	ctx := context.Background()
	r := Diagnose(ctx, envConfig(t, vars...))
	if s := stepNamed(t, r, "tls"); s.Status != StepOK || !strings.Contains(s.Detail, "verified by the "+tlstrust.EmbeddedBundleName()+" roots (root CA doctor-embedded-ca)") {
		t.Errorf("tls with the embedded roots: %+v", s)
	}
	r = Diagnose(ctx, envConfig(t, append(vars, "AWS_SSLROOTCERT", "system")...))
	if s := stepNamed(t, r, "tls"); s.Status != StepFailed || !strings.Contains(s.Detail, "system (AWS_SSLROOTCERT=system)") ||
		!strings.Contains(s.Fix, "unset it to trust the embedded Amazon RDS roots") {
		t.Errorf("tls with AWS_SSLROOTCERT=system: %+v", s)
	}
	noLeak(t, r, pw)
}

// TestExplainLoginRefusals: each kind of refused login has its own text
// and fix, including those only RDS produces (IAM).
func TestExplainLoginRefusals(t *testing.T) {
	cc, err := pgx.ParseConfig("postgres://app@db.example.com/gateway")
	if err != nil {
		t.Fatal(err)
	}
	pgErr := func(code, msg string) error {
		return safeerr.New("failed: "+msg, &pgconn.PgError{Code: code, Message: msg})
	}
	bouncerErr := func(msg string) error { // PgBouncer's own FATAL 08P01 (src/client.c)
		return safeerr.New("failed: "+msg, &pgconn.PgError{Severity: "FATAL", Code: "08P01", Message: msg})
	}
	iam := DefaultConfig()
	iam.IAMAuth = true
	plain := DefaultConfig()
	plain.DBHost = "db.example.com"
	fromSecret := DefaultConfig()
	fromSecret.SecretID = "prod/gateway/db"
	cases := []struct {
		name string
		cfg  Config
		err  error
		want []string
	}{
		{"missing rds_iam grant", iam, pgErr("28P01", `password authentication failed for user "app"`), []string{"GRANT rds_iam TO"}},
		{"IAM token refused", iam, pgErr("28000", `PAM authentication failed for user "app"`), []string{"rds-db:connect", "dbuser"}},
		{"wrong password", plain, pgErr("28P01", `password authentication failed for user "app"`), []string{"wrong password", "AWS_DB_PASSWORD"}},
		{"wrong password at PgBouncer (md5)", plain, bouncerErr("password authentication failed"), []string{"wrong password", "PgBouncer", "auth_file", "AWS_DB_PASSWORD", "SQLSTATE 08P01"}},
		{"wrong password at PgBouncer (scram), from a secret", fromSecret, bouncerErr("SASL authentication failed"), []string{"wrong password", "PgBouncer", "auth_query", `secret "prod/gateway/db"`, "just rotated"}},
		{"unknown user at PgBouncer (auth_query)", plain, bouncerErr("no such user"), []string{"no such user", "PgBouncer", "auth_query", "CREATE ROLE", "SQLSTATE 08P01"}},
		{"08P01 that is not a login refusal", plain, bouncerErr("unknown pkt"), []string{"refused the login", "server's log"}},
		{"TLS required", plain, pgErr("28000", `no pg_hba.conf entry for host "10.0.0.1", user "app", database "gateway", no encryption`), []string{"only over TLS", "AWS_REQUIRE_SSL=true"}},
		{"no pg_hba line", plain, pgErr("28000", `no pg_hba.conf entry for host "10.0.0.1", user "app", database "gateway", SSL encryption`), []string{"no line", "pg_hba.conf"}},
		{"pg_hba reject", plain, pgErr("28000", `pg_hba.conf rejects connection for host "10.0.0.1", user "app", database "gateway"`), []string{"rejects", "reject line"}},
		{"no role", plain, pgErr("28000", `role "app" does not exist`), []string{"no such user", "CREATE ROLE"}},
		{"no login", plain, pgErr("28000", `role "app" is not permitted to log in`), []string{"may not log in", "LOGIN"}},
		{"no database", plain, pgErr("3D000", `database "gateway" does not exist`), []string{"does not exist", "AWS_DB_NAME"}},
		{"no CONNECT", plain, pgErr("42501", `permission denied for database "gateway"`), []string{"GRANT CONNECT"}},
		{"too many connections", plain, pgErr("53300", "sorry, too many clients already"), []string{"no connection slot", "max_connections"}},
		{"starting", plain, pgErr("57P03", "the database system is starting up"), []string{"starting up"}},
		{"IAM without TLS", iam, ErrIAMRequiresTLS, []string{"verified TLS", "AWS_REQUIRE_SSL=true"}},
	}
	var fixes []string
	for _, c := range cases {
		d := newDiagnosis(c.cfg, nil)
		detail, fix := d.explainLogin(c.err, cc, d.loginMethod(&diagTarget{role: roleWriter}, cc), time.Millisecond)
		for _, w := range c.want {
			if !strings.Contains(detail+" "+fix, w) {
				t.Errorf("%s: %q | %q does not say %q", c.name, detail, fix, w)
			}
		}
		if slices.Contains(fixes, fix) {
			t.Errorf("%s: the same fix as another refusal: %q", c.name, fix)
		}
		fixes = append(fixes, fix)
	}
}

// TestManagerFallbackPointsAtDoctor: the fallback log line names the
// command that finds the failing step.
func TestManagerFallbackPointsAtDoctor(t *testing.T) {
	m, logs := newTestManager(t, envConfig(t, "DATABASE_URL", "postgres://u:pw@"+refusedAddr(t)+"/db?sslmode=disable", "DB_CONNECT_TIMEOUT", "2"))
	if err := m.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	assertLogged(t, logs, "Primary database connection failed. Falling back to in-memory storage.")
	if !strings.Contains(logs.String(), doctorCommand) {
		t.Errorf("the fallback log does not name %s:\n%s", doctorCommand, logs)
	}
}

// TestDiagnoseCancelled: a context that ends stops the diagnosis at once,
// and the report still has every step.
func TestDiagnoseCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := Diagnose(ctx, envConfig(t, "AWS_DB_HOST", "127.0.0.1", "AWS_DB_PORT", "1", "AWS_DB_USER", "u", "AWS_DB_PASSWORD", "p"+leakMarker))
	if r.OK || len(r.Steps) != 8 {
		t.Errorf("cancelled diagnosis:\n%s", r)
	}
	if !errors.Is(ctx.Err(), context.Canceled) {
		t.Fatal("context not cancelled")
	}
	noLeak(t, r)
}

func itoa(n int) string { return strconv.Itoa(n) }

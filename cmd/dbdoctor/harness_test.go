package main

// The test harness: the command is built once with go build and run as a
// real process, with exactly the environment a test gives it (plus PATH
// and HOME), against real servers from internal/pgtest. Every run is made
// twice, for people and with -json, and both outputs are searched for the
// test's passwords.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatewaykit/dbmanager"
	"github.com/gatewaykit/dbmanager/internal/pgtest"
	"github.com/jackc/pgx/v5"
)

// marker is part of every password and secret in these tests: it must
// appear in no output.
const marker = "Zq9DoctorSecret"

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "dbdoctor-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := pgtest.Main(m)
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

var (
	binDir    string
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// doctorBinary builds the command once per test run.
func doctorBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		goCmd, err := exec.LookPath("go")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(binDir, "dbdoctor")
		out, err := exec.Command(goCmd, "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// doctorRun is one diagnosis, run for people and with -json.
type doctorRun struct {
	code   int
	text   string // stdout of the run for people
	json   string // stdout of the -json run
	stderr string // both runs' stderr
	report dbmanager.Report
}

// runDoctor runs the command with env and flags, twice, and checks that
// both runs agree on the exit status and that the JSON has exactly the
// documented shape.
func runDoctor(t *testing.T, env map[string]string, flags ...string) doctorRun {
	t.Helper()
	doctorBinary(t) // built before the clock starts
	start := time.Now()
	text, errText, code := execDoctor(t, env, flags...)
	took := time.Since(start)
	js, errJSON, codeJSON := execDoctor(t, env, append([]string{"-json"}, flags...)...)
	t.Logf("dbdoctor %s: exit %d in %s (the -json run: %s)", strings.Join(flags, " "), code, took.Round(time.Millisecond), (time.Since(start) - took).Round(time.Millisecond))
	r := doctorRun{code: code, text: text, json: js, stderr: errText + errJSON}
	if code != codeJSON {
		t.Errorf("exit status %d for people, %d with -json", code, codeJSON)
	}
	checkJSONShape(t, js)
	if err := json.Unmarshal([]byte(js), &r.report); err != nil {
		t.Fatalf("-json output does not decode: %v\n%s", err, js)
	}
	if lines := strings.Count(text, "\n"); lines != len(r.report.Steps) {
		t.Errorf("%d lines for people, %d steps in the JSON:\n%s", lines, len(r.report.Steps), text)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("dbdoctor %s (exit %d):\n%s%s", strings.Join(flags, " "), code, text, r.stderr)
		}
	})
	return r
}

// execDoctor runs the binary once.
func execDoctor(t *testing.T, env map[string]string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, doctorBinary(t), args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "AWS_EC2_METADATA_DISABLED=true"}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		t.Fatalf("running dbdoctor: %v", err)
	}
	return out.String(), errb.String(), code
}

// checkJSONShape checks {"ok", "steps": [{"name", "target", "status",
// "took_ms", "detail", "fix"}]} and nothing else.
func checkJSONShape(t *testing.T, js string) {
	t.Helper()
	var top map[string]json.RawMessage
	if err := json.Unmarshal([]byte(js), &top); err != nil {
		t.Fatalf("-json output is not one object: %v\n%s", err, js)
	}
	if keys := sortedKeys(top); !slices.Equal(keys, []string{"ok", "steps"}) {
		t.Errorf("top-level keys %v, want [ok steps]", keys)
	}
	var steps []map[string]json.RawMessage
	if err := json.Unmarshal(top["steps"], &steps); err != nil {
		t.Fatalf("steps: %v", err)
	}
	want := []string{"detail", "fix", "name", "status", "target", "took_ms"}
	for i, s := range steps {
		if keys := sortedKeys(s); !slices.Equal(keys, want) {
			t.Errorf("step %d has keys %v, want %v", i, keys, want)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// step returns the first step called name.
func (r doctorRun) step(t *testing.T, name string) dbmanager.Step {
	t.Helper()
	for _, s := range r.report.Steps {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no %s step in the report:\n%s", name, r.text)
	return dbmanager.Step{}
}

// want checks the exit status and that step name has status and a detail
// (or fix) containing every one of texts.
func (r doctorRun) want(t *testing.T, code int, name string, status dbmanager.StepStatus, texts ...string) dbmanager.Step {
	t.Helper()
	if r.code != code {
		t.Errorf("exit status %d, want %d", r.code, code)
	}
	s := r.step(t, name)
	if s.Status != status {
		t.Errorf("step %s is %s, want %s: %s | fix: %s", name, s.Status, status, s.Detail, s.Fix)
	}
	for _, text := range texts {
		if !strings.Contains(s.Detail+" fix: "+s.Fix, text) {
			t.Errorf("step %s does not mention %q: %s | fix: %s", name, text, s.Detail, s.Fix)
		}
	}
	line := ""
	for _, l := range strings.Split(r.text, "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[1] == name {
			line = l
			break
		}
	}
	if !strings.Contains(strings.ToLower(line), string(status)) {
		t.Errorf("the line for people does not show %s %s: %q", status, name, line)
	}
	if status != dbmanager.StepOK && status != dbmanager.StepSkipped && s.Fix == "" {
		t.Errorf("step %s is %s without a fix", name, status)
	}
	return s
}

// wantAllOK checks that every step before and including last is ok.
func (r doctorRun) wantAllOK(t *testing.T) {
	t.Helper()
	if r.code != 0 || !r.report.OK {
		t.Errorf("exit %d, ok %v; want 0, true", r.code, r.report.OK)
	}
	for _, s := range r.report.Steps {
		if s.Status != dbmanager.StepOK && !(s.Name == "secret" && s.Status == dbmanager.StepSkipped) {
			t.Errorf("step %s %s is %s: %s | fix: %s", s.Name, s.Target, s.Status, s.Detail, s.Fix)
		}
	}
}

// noSecret fails if any of secrets (or the marker) appears in any output.
func (r doctorRun) noSecret(t *testing.T, secrets ...string) {
	t.Helper()
	for _, out := range []string{r.text, r.json, r.stderr} {
		for _, s := range append(secrets, marker) {
			if s != "" && strings.Contains(out, s) {
				t.Errorf("a secret (%d bytes) appears in the output", len(s))
			}
		}
	}
}

// db is a database on a test server, with a login role of its own.
type db struct {
	host     string
	port     int
	name     string
	user     string
	password string
	admin    string // superuser URL of the database
}

// env returns the AWS_DB_* variables for d, plus extra pairs.
func (d db) env(extra ...string) map[string]string {
	m := map[string]string{
		"AWS_DB_HOST": d.host, "AWS_DB_PORT": strconv.Itoa(d.port), "AWS_DB_NAME": d.name,
		"AWS_DB_USER": d.user, "AWS_DB_PASSWORD": d.password, "DB_CONNECT_TIMEOUT": "5",
	}
	for i := 0; i+1 < len(extra); i += 2 {
		m[extra[i]] = extra[i+1]
	}
	return m
}

var roleSeq struct {
	sync.Mutex
	n int
}

// newDB makes a login role with a recognisable password on the database of
// adminURL (a superuser URL) and grants it what the Store needs: CREATE on
// the database. Without grant, the role gets nothing.
func newDB(t *testing.T, adminURL string, grant bool) db {
	t.Helper()
	u, err := url.Parse(adminURL)
	if err != nil {
		t.Fatal("admin URL does not parse")
	}
	port, _ := strconv.Atoi(u.Port())
	roleSeq.Lock()
	roleSeq.n++
	n := roleSeq.n
	roleSeq.Unlock()
	d := db{host: u.Hostname(), port: port, name: strings.TrimPrefix(u.Path, "/"), admin: adminURL,
		user: fmt.Sprintf("doctor_%d_%d", os.Getpid(), n), password: "pw:@/" + marker + strconv.Itoa(n)}
	adminExec(t, adminURL, "CREATE ROLE "+quote(d.user)+" LOGIN PASSWORD '"+strings.ReplaceAll(d.password, "'", "''")+"'")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if c, err := pgx.Connect(ctx, adminURL); err == nil {
			_, _ = c.Exec(ctx, "DROP OWNED BY "+quote(d.user))
			_, _ = c.Exec(ctx, "DROP ROLE IF EXISTS "+quote(d.user))
			_ = c.Close(ctx)
		}
	})
	if grant {
		adminExec(t, adminURL, "GRANT CREATE ON DATABASE "+quote(d.name)+" TO "+quote(d.user))
	}
	return d
}

// adminExec runs sql on the database of adminURL.
func adminExec(t *testing.T, adminURL, sql string) {
	t.Helper()
	withAdmin(t, adminURL, func(ctx context.Context, c *pgx.Conn) {
		if _, err := c.Exec(ctx, sql); err != nil {
			t.Fatalf("admin exec: %v", err)
		}
	})
}

func quote(s string) string { return pgx.Identifier{s}.Sanitize() }

// withAdmin runs fn on a superuser connection to the database of adminURL.
func withAdmin(t *testing.T, adminURL string, fn func(context.Context, *pgx.Conn)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		t.Fatalf("admin connect: %v", err)
	}
	defer c.Close(ctx)
	fn(ctx, c)
}

package dbmanager

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/gatewaykit/dbmanager/internal/connstr"
	"github.com/jackc/pgx/v5"

	"github.com/gatewaykit/dbmanager/internal/credentials"
)

// Diagnosis: Diagnose walks the path the Manager walks to reach PostgreSQL
// (configuration, secret, then for every host name resolution, TCP, TLS,
// login and the server itself, then the Store's schema) with the library's
// own code, and reports each step with what it found and, when a step is
// not ok, how to fix it. cmd/dbdoctor prints the same report.

// doctorCommand is how a person runs the diagnosis (cmd/dbdoctor).
const doctorCommand = "go run github.com/gatewaykit/dbmanager/cmd/dbdoctor"

// DefaultStepTimeout bounds each step of a diagnosis (WithStepTimeout).
const DefaultStepTimeout = 10 * time.Second

// StepStatus is the outcome of one step of a diagnosis.
type StepStatus string

// Step outcomes. A step after a failed one it needs is skipped, as is a
// step that does not apply (no secret configured, memory on purpose).
const (
	StepOK      StepStatus = "ok"
	StepWarning StepStatus = "warning" // works, but something is likely to hurt (an expiring certificate, plaintext)
	StepFailed  StepStatus = "failed"  // the Manager cannot get past this step
	StepSkipped StepStatus = "skipped"
)

// Step is one check of a diagnosis. Its text never contains a password, a
// secret's value or a token.
type Step struct {
	// Name is the step: config, secret, dns, tcp, tls, auth, server,
	// store, and for each read replica replica-dns, replica-tcp,
	// replica-tls, replica-auth, replica-server.
	Name string
	// Target is the "host:port" a per-host step looked at ("" for config
	// and secret).
	Target string
	Status StepStatus
	// Took is how long the step ran.
	Took time.Duration
	// Detail is what the step found.
	Detail string
	// Fix says what to do when Status is warning or failed ("" otherwise).
	Fix string
}

// stepJSON is Step's JSON form.
type stepJSON struct {
	Name   string     `json:"name"`
	Target string     `json:"target"`
	Status StepStatus `json:"status"`
	TookMS float64    `json:"took_ms"`
	Detail string     `json:"detail"`
	Fix    string     `json:"fix"`
}

// MarshalJSON writes {"name", "target", "status", "took_ms", "detail",
// "fix"}, every key always present, took_ms in milliseconds.
func (s Step) MarshalJSON() ([]byte, error) {
	return json.Marshal(stepJSON{s.Name, s.Target, s.Status, float64(s.Took.Microseconds()) / 1000, s.Detail, s.Fix})
}

// UnmarshalJSON reads the form MarshalJSON writes.
func (s *Step) UnmarshalJSON(data []byte) error {
	var j stepJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	*s = Step{j.Name, j.Target, j.Status, time.Duration(j.TookMS * float64(time.Millisecond)), j.Detail, j.Fix}
	return nil
}

// String is the step's line for a person: status, name, target, what was
// found and, when not ok, the fix.
func (s Step) String() string {
	status := string(s.Status)
	if s.Status == StepFailed || s.Status == StepWarning {
		status = strings.ToUpper(status)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%-8s %-7s", status, s.Name)
	if s.Target != "" {
		b.WriteString(" " + s.Target)
	}
	if s.Detail != "" {
		b.WriteString("  " + s.Detail)
	}
	if s.Fix != "" && s.Status != StepOK {
		b.WriteString("  fix: " + s.Fix)
	}
	return b.String()
}

// Report is the result of a diagnosis: its JSON form is
// {"ok": bool, "steps": [...]}. OK is true when no step failed.
type Report struct {
	OK    bool   `json:"ok"`
	Steps []Step `json:"steps"`
}

// String is the report for a person: one line per step.
func (r Report) String() string {
	var b strings.Builder
	for _, s := range r.Steps {
		b.WriteString(s.String() + "\n")
	}
	return b.String()
}

// Problem returns the first failed step, else the first warning; ok is
// false when every step is ok or skipped.
func (r Report) Problem() (step Step, ok bool) {
	for _, want := range []StepStatus{StepFailed, StepWarning} {
		for _, s := range r.Steps {
			if s.Status == want {
				return s, true
			}
		}
	}
	return Step{}, false
}

// LogValue makes a Report one compact slog group: ok, the number of steps
// and the first problem (step, target, status, detail, fix).
func (r Report) LogValue() slog.Value {
	attrs := []slog.Attr{slog.Bool("ok", r.OK), slog.Int("steps", len(r.Steps))}
	if s, ok := r.Problem(); ok {
		attrs = append(attrs, slog.String("step", s.Name), slog.String("target", s.Target),
			slog.String("status", string(s.Status)), slog.String("detail", s.Detail), slog.String("fix", s.Fix))
	}
	return slog.GroupValue(attrs...)
}

// diagnoseOptions are what a diagnosis takes from its Options.
type diagnoseOptions struct {
	stepTimeout time.Duration
	writeTest   bool
	secrets     SecretSource
	schema      string
	now         func() time.Time
}

// Diagnose walks the path a Manager built with cfg walks to reach
// PostgreSQL and reports every step: config, secret, then for each host
// of the writer dns, tcp, tls, auth and server, then store, then for each
// read replica (DATABASE_READ_URL / AWS_DB_READ_HOST) replica-dns,
// replica-tcp, replica-tls, replica-auth and replica-server (see the
// README's Troubleshooting section for what each checks). It stops a
// chain at the step that fails (the steps that need it are skipped) and
// says how to fix it. A read replica that cannot be reached, or lags
// behind DB_READ_MAX_LAG, is a warning, not a failure: the Manager serves
// reads without it; a read configuration the Manager rejects fails the
// config step. It writes nothing unless WithWriteTest is given.
// Each step is bounded by the step timeout and all of it by ctx.
//
// Nothing secret (password, secret value, IAM token) appears in the
// report. A service can log the report when it falls back to memory:
// slog.Any("diagnosis", report).
func Diagnose(ctx context.Context, cfg Config, opts ...Option) Report {
	d := newDiagnosis(cfg, opts)
	d.run(ctx, func(ctx context.Context, s *Step) { d.checkConfig(ctx, s, nil) })
	return d.finish()
}

// DiagnoseEnv is Diagnose for the configuration LoadConfig reads through
// getenv (os.Getenv for the real environment): its config step lists the
// variables that are set (never a secret's value) and every problem
// LoadConfig found; when there is any, the other steps are skipped.
func DiagnoseEnv(ctx context.Context, getenv func(string) string, opts ...Option) Report {
	env := &envRecord{getenv: getenv, set: map[string]string{}}
	cfg, err := LoadConfig(env.get)
	env.err = err
	d := newDiagnosis(cfg, opts)
	d.addSecret(env.set["AWS_DB_PASSWORD"]) // also when LoadConfig rejected the environment
	for _, pw := range append(connstr.Passwords(env.set["DATABASE_URL"]), connstr.Passwords(env.set["DATABASE_READ_URL"])...) {
		d.addSecret(pw)
	}
	d.run(ctx, func(ctx context.Context, s *Step) { d.checkConfig(ctx, s, env) })
	return d.finish()
}

// diagnosis is one run of Diagnose.
type diagnosis struct {
	cfg   Config
	opts  diagnoseOptions
	steps []Step

	mu      sync.Mutex
	secrets []string // every secret value met, scrubbed from all text at the end

	writer     *diagTarget        // set once config (and secret) resolved it
	replicas   []*diagTarget      // the read replicas, set with the writer
	writerConn *pgx.Conn          // a connection to the node the Manager would write to, for the replicas' lag (nil without replicas)
	m          *Manager           // a Manager that never connects: its secret cache and credential hook
	cache      *credentials.Cache // the secret cache, for a secret source
	hook       *connHook          // the credential hook, built on first use
	cleanup    []func()
}

func newDiagnosis(cfg Config, opts []Option) *diagnosis {
	mo := applyOptions(opts)
	o := diagnoseOptions{stepTimeout: DefaultStepTimeout, writeTest: mo.writeTest, secrets: mo.secrets, schema: mo.schema, now: time.Now}
	if mo.stepTimeout > 0 {
		o.stepTimeout = mo.stepTimeout
	}
	if o.schema == "" {
		o.schema = defaultManagerOptions().schema
	}
	d := &diagnosis{cfg: cfg, opts: o}
	d.addSecret(cfg.DBPassword.Reveal())
	for _, pw := range append(connstr.Passwords(cfg.DatabaseURL.Reveal()), connstr.Passwords(cfg.ReadURL.Reveal())...) {
		d.addSecret(pw)
	}
	return d
}

// addSecret remembers a value that must not appear in the report.
func (d *diagnosis) addSecret(s string) {
	if s != "" {
		d.mu.Lock()
		d.secrets = append(d.secrets, s)
		d.mu.Unlock()
	}
}

// run runs the steps in order: config (by checkConfig), secret, the
// writer's per-host steps, store, then each read replica's per-host steps
// (replica-dns ... replica-server).
func (d *diagnosis) run(ctx context.Context, checkConfig func(context.Context, *Step)) {
	defer func() {
		for i := len(d.cleanup) - 1; i >= 0; i-- {
			d.cleanup[i]()
		}
	}()
	rest := []string{"secret", "dns", "tcp", "tls", "auth", "server", "store"}
	if d.step(ctx, "config", "", checkConfig) == StepFailed {
		d.skipAll(rest, "needs config, which failed")
		return
	}
	if d.cfg.Source() == SourceMemory {
		d.skipAll(rest, "DATABASE_URL=memory://: in-memory storage on purpose, nothing to connect to")
		return
	}
	if d.step(ctx, "secret", "", d.checkSecret) == StepFailed {
		d.skipAll(rest[1:], "needs secret, which failed")
		return
	}
	if d.hostSteps(ctx, d.writer) {
		d.step(ctx, "store", d.writer.addrs(), d.checkStore)
	} else {
		d.skip("store", d.writer.addrs(), "needs a writer that logs in and accepts writes, and none did")
	}
	// Then each read replica, whatever the writer's steps found: a
	// replica's steps only warn (replicaOutOfRotation).
	for _, t := range d.targets()[1:] {
		d.hostSteps(ctx, t)
	}
}

// step runs one step with its own timeout and records it.
func (d *diagnosis) step(ctx context.Context, name, target string, check func(context.Context, *Step)) StepStatus {
	sctx, cancel := context.WithTimeout(ctx, d.opts.stepTimeout)
	defer cancel()
	s := Step{Name: name, Target: target, Status: StepOK}
	start := time.Now()
	check(sctx, &s)
	s.Took = time.Since(start)
	if s.Status == StepOK {
		s.Fix = ""
	}
	d.steps = append(d.steps, s)
	return s.Status
}

// skip records a step that did not run.
func (d *diagnosis) skip(name, target, why string) {
	d.steps = append(d.steps, Step{Name: name, Target: target, Status: StepSkipped, Detail: why})
}

func (d *diagnosis) skipAll(names []string, why string) {
	for _, n := range names {
		d.skip(n, "", why)
	}
}

// finish scrubs every secret met from the report and decides OK.
func (d *diagnosis) finish() Report {
	r := Report{OK: true, Steps: d.steps}
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := range r.Steps {
		s := &r.Steps[i]
		s.Detail = oneLine(connstr.Scrub(s.Detail, d.secrets))
		s.Fix = oneLine(connstr.Scrub(s.Fix, d.secrets))
		if s.Status == StepFailed {
			r.OK = false
		}
	}
	if r.Steps == nil {
		r.Steps = []Step{}
	}
	return r
}

// fail, warn and found set a step's outcome.
func (s *Step) fail(detail, fix string) { s.Status, s.Detail, s.Fix = StepFailed, detail, fix }
func (s *Step) warn(detail, fix string) {
	if s.Status != StepFailed {
		s.Status = StepWarning
	}
	s.Detail, s.Fix = detail, fix
}
func (s *Step) found(detail string) { s.Detail = detail }

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// ms shows a duration rounded for a person ("3.2ms", "1.5s").
func ms(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return d.Round(10 * time.Microsecond).String()
	case d < time.Second:
		return d.Round(100 * time.Microsecond).String()
	}
	return d.Round(10 * time.Millisecond).String()
}

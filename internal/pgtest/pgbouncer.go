package pgtest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// PgBouncerEnv names the PgBouncer binary [NewPgBouncer] runs instead of
// Debian's /usr/sbin/pgbouncer (or pgbouncer in PATH).
const PgBouncerEnv = "PGTEST_PGBOUNCER"

// PgBouncer is a PgBouncer process of one test, in front of one backend
// server, listening on 127.0.0.1 and a free port. It is safe for
// concurrent use.
type PgBouncer struct {
	dir  string // private dir: ini, auth file, pidfile, log
	log  string
	port int
	env  *localEnv
	mu   sync.Mutex
	pid  int // 0 once stopped
	proc *os.Process
	// users are the auth file's logins and passwords (SetUserPassword
	// rewrites the file, authFileTimes times so far).
	users         [][2]string
	authFileTimes int
}

// BouncerOption configures a PgBouncer made by [NewPgBouncer].
type BouncerOption func(*bouncerConfig)

type bouncerConfig struct {
	poolMode  string
	poolSize  int
	users     [][2]string
	authType  string
	authQuery bool
}

// WithPoolMode sets pool_mode: "transaction" (the default), "session" or
// "statement".
func WithPoolMode(mode string) BouncerOption {
	return func(c *bouncerConfig) { c.poolMode = mode }
}

// WithBouncerPoolSize sets default_pool_size, the server connections per
// database and user (default 4, so server connections really are shared
// by clients; session pooling needs one per concurrent client).
func WithBouncerPoolSize(n int) BouncerOption {
	return func(c *bouncerConfig) { c.poolSize = n }
}

// WithBouncerUser adds a login besides the superuser "postgres": clients
// log in to PgBouncer as name with password, and PgBouncer logs in to the
// backend the same way, so the role must exist there with that password
// (CREATE ROLE name LOGIN PASSWORD ...).
func WithBouncerUser(name, password string) BouncerOption {
	return func(c *bouncerConfig) { c.users = append(c.users, [2]string{name, password}) }
}

// WithAuthType sets auth_type, how PgBouncer checks a client's password
// itself before it lends it a server connection: "scram-sha-256" (the
// default), "md5" or "plain" (cleartext). A wrong password is refused by
// PgBouncer, not PostgreSQL, with a FATAL ErrorResponse of SQLSTATE 08P01:
// "SASL authentication failed" for scram-sha-256, "password
// authentication failed" for md5 and plain. With md5 or plain, PgBouncer
// logs in to the backend with the auth file's password, so use them for
// the auth file's logins ([WithBouncerUser], "postgres"), not with
// [WithAuthQuery].
func WithAuthType(authType string) BouncerOption {
	return func(c *bouncerConfig) { c.authType = authType }
}

// WithAuthQuery makes PgBouncer look up a login that is not in its auth
// file on the backend, as the superuser "postgres" (auth_user) with
// auth_query "SELECT usename, passwd FROM pg_shadow WHERE usename=$1",
// on every client login: any LOGIN role of the backend can log in
// through PgBouncer, and a password changed there (ALTER ROLE ...
// PASSWORD) is the one PgBouncer checks from the next login on, while
// server connections already open stay in its pool. PgBouncer logs in to
// the backend with the SCRAM keys of the client's own login, so it needs
// the default auth_type, scram-sha-256.
func WithAuthQuery() BouncerOption {
	return func(c *bouncerConfig) { c.authQuery = true }
}

// bouncerStopTimeout bounds an immediate shutdown before SIGKILL.
const bouncerStopTimeout = 10 * time.Second

// NewPgBouncer starts a PgBouncer process of t's own (Debian's package
// binary /usr/sbin/pgbouncer, pgbouncer in PATH, or PGTEST_PGBOUNCER), as
// the postgres OS user when root, with an ini file and auth file of its own
// in pgtest's private temp dir, listening on a free 127.0.0.1 port (no
// unix socket), in front of backend ("host:port"): any database name is
// forwarded there (`* = host=... port=...`). It is never the system
// service. It is stopped (by its pid) when t ends, and killed by pgtest's
// reaper if the test binary dies.
//
// Clients log in with scram-sha-256 (or [WithAuthType]) as "postgres"
// (the local servers' superuser and password), a [WithBouncerUser] login,
// or with [WithAuthQuery] any role of the backend; the auth file holds
// the passwords in plain text, so PgBouncer logs in to the backend as the
// same user with the same password (SCRAM or md5, as the backend asks).
// The startup parameters extra_float_digits and options are ignored
// (PgBouncer refuses others it does not track). server_login_retry is 1 s,
// so a backend that comes back is used again within a second. Server
// connections never use TLS.
//
// Without the binary, t is skipped, or fails when
// DBMANAGER_REQUIRE_POSTGRES=1, saying to apt-get install pgbouncer. It
// also needs pgtest's local environment (the PostgreSQL binaries).
func NewPgBouncer(t testing.TB, backend string, opts ...BouncerOption) *PgBouncer {
	t.Helper()
	cfg := bouncerConfig{poolMode: "transaction", poolSize: 4, authType: "scram-sha-256"}
	for _, o := range opts {
		o(&cfg)
	}
	switch cfg.authType {
	case "scram-sha-256":
	case "md5", "plain":
		if cfg.authQuery {
			t.Fatalf("pgtest: NewPgBouncer: auth type %q with WithAuthQuery: PgBouncer could not log in to the backend (it needs the client's SCRAM keys)", cfg.authType)
		}
	default:
		t.Fatalf("pgtest: NewPgBouncer: auth type %q is not scram-sha-256, md5 or plain", cfg.authType)
	}
	switch cfg.poolMode {
	case "transaction", "session", "statement":
	default:
		t.Fatalf("pgtest: NewPgBouncer: pool mode %q is not transaction, session or statement", cfg.poolMode)
	}
	if cfg.poolSize < 1 {
		t.Fatalf("pgtest: NewPgBouncer: pool size %d", cfg.poolSize)
	}
	host, port, err := net.SplitHostPort(backend)
	if err != nil {
		t.Fatalf("pgtest: NewPgBouncer: backend %q is not host:port: %v", backend, err)
	}
	bin, err := findPgBouncer()
	if err != nil {
		unavailable(t, err)
	}
	env, err := localEnvironment()
	if err != nil {
		unavailable(t, fmt.Errorf("NewPgBouncer needs pgtest's local environment: %w", err))
	}
	b, err := startPgBouncer(env, bin, host, port, cfg)
	if err != nil {
		t.Fatalf("pgtest: NewPgBouncer: %v", err)
	}
	t.Cleanup(func() {
		err := b.stop()
		if rerr := os.RemoveAll(b.dir); err == nil {
			err = rerr
		}
		if err != nil {
			t.Errorf("pgtest: PgBouncer: %v", err)
		}
	})
	return b
}

// findPgBouncer returns PGTEST_PGBOUNCER, /usr/sbin/pgbouncer or pgbouncer
// in PATH.
func findPgBouncer() (string, error) {
	if p := os.Getenv(PgBouncerEnv); p != "" {
		if !isExecutable(p) {
			return "", fmt.Errorf("%s=%s is not an executable file", PgBouncerEnv, p)
		}
		return p, nil
	}
	if p := "/usr/sbin/pgbouncer"; isExecutable(p) {
		return p, nil
	}
	if p, err := exec.LookPath("pgbouncer"); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("no PgBouncer: /usr/sbin/pgbouncer not found, none in PATH, %s unset (on Debian: apt-get install pgbouncer)", PgBouncerEnv)
}

// startPgBouncer writes the files of a new PgBouncer and starts it,
// trying another free port if the one chosen was taken meanwhile.
func startPgBouncer(env *localEnv, bin, host, port string, cfg bouncerConfig) (*PgBouncer, error) {
	local.mu.Lock()
	local.seq++
	n := local.seq
	local.mu.Unlock()
	dir := filepath.Join(env.root, fmt.Sprintf("bouncer%d", n))
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, err
	}
	if err := own(dir, env.cred); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	b := &PgBouncer{dir: dir, log: filepath.Join(dir, "pgbouncer.log"), env: env,
		users: append([][2]string{{superuser, env.password}}, cfg.users...)}
	if err := b.writeAuthFile(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	var err error
	for attempt := 0; attempt < maxPortClashes; attempt++ {
		if b.port, err = freePort(); err != nil {
			break
		}
		if err = writeOwned(filepath.Join(dir, "pgbouncer.ini"), b.ini(host, port, cfg), env); err != nil {
			break
		}
		if err = b.start(env, bin); !errors.Is(err, errBusy) {
			break
		}
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return b, nil
}

// ini is the configuration file.
func (b *PgBouncer) ini(host, port string, cfg bouncerConfig) string {
	authQuery := ""
	if cfg.authQuery {
		authQuery = "auth_user = " + superuser + "\nauth_query = SELECT usename, passwd FROM pg_shadow WHERE usename=$1\n"
	}
	return fmt.Sprintf(`;; pgtest: a PgBouncer of one test.
[databases]
* = host=%s port=%s

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
pidfile = %s
logfile = %s
auth_type = %s
auth_file = %s
%spool_mode = %s
default_pool_size = %d
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = 1000
max_db_connections = 0
ignore_startup_parameters = extra_float_digits,options
server_login_retry = 1
server_connect_timeout = 5
server_tls_sslmode = disable
client_tls_sslmode = disable
log_connections = 0
log_disconnections = 0
`, host, port, b.port, filepath.Join(b.dir, "pgbouncer.pid"), b.log,
		cfg.authType, filepath.Join(b.dir, "userlist.txt"), authQuery, cfg.poolMode, cfg.poolSize)
}

// writeAuthFile writes b.users to the auth file. Call it with b.mu held,
// or before PgBouncer runs.
func (b *PgBouncer) writeAuthFile() error {
	var auth strings.Builder
	for _, u := range b.users {
		fmt.Fprintf(&auth, "%s %s\n", authQuote(u[0]), authQuote(u[1]))
	}
	return writeOwned(filepath.Join(b.dir, "userlist.txt"), auth.String(), b.env)
}

// SetUserPassword sets the password of login user in the auth file
// (adding the login if it has none) and makes PgBouncer reload its files
// (SIGHUP, what the admin console's RELOAD does): the PgBouncer half of a
// password rotation where PgBouncer checks passwords against an auth
// file. PgBouncer reloads asynchronously, within milliseconds of the
// return; until then it checks the old password. With [WithAuthQuery]
// the auth file matters only for its own logins.
func (b *PgBouncer) SetUserPassword(t testing.TB, user, password string) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	found := false
	for i := range b.users {
		if b.users[i][0] == user {
			b.users[i][1], found = password, true
		}
	}
	if !found {
		b.users = append(b.users, [2]string{user, password})
	}
	if err := b.writeAuthFile(); err != nil {
		t.Fatalf("pgtest: PgBouncer: writing the auth file: %v", err)
	}
	// PgBouncer skips re-reading an auth file whose modification time (in
	// seconds) and size look unchanged: a rewrite with a password of the
	// same length within the second was ignored. Each rewrite gets a
	// modification time of its own.
	b.authFileTimes++
	mtime := time.Now().Add(time.Duration(b.authFileTimes) * time.Second)
	if err := os.Chtimes(filepath.Join(b.dir, "userlist.txt"), mtime, mtime); err != nil {
		t.Fatalf("pgtest: PgBouncer: touching the auth file: %v", err)
	}
	if b.pid == 0 {
		t.Fatalf("pgtest: PgBouncer: SetUserPassword on a stopped PgBouncer")
	}
	if err := syscall.Kill(b.pid, syscall.SIGHUP); err != nil {
		t.Fatalf("pgtest: PgBouncer: reload: %v", err)
	}
}

// authQuote quotes a field of PgBouncer's auth file.
func authQuote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// start runs PgBouncer in the foreground (it is our child, reaped by us)
// and waits until it accepts connections.
func (b *PgBouncer) start(env *localEnv, bin string) error {
	out, err := os.OpenFile(filepath.Join(b.dir, "stderr.log"), os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	cmd := exec.Command(bin, filepath.Join(b.dir, "pgbouncer.ini"))
	cmd.Dir = b.dir
	cmd.Env = childEnv()
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = childAttr(env.cred)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", bin, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.pid, b.proc = cmd.Process.Pid, cmd.Process
	deadline := time.Now().Add(readyTimeout)
	for {
		if b.exitedLocked(false) {
			text := b.output()
			if strings.Contains(text, "Address already in use") {
				return fmt.Errorf("pgbouncer exited: %w\n%s", errBusy, text)
			}
			return fmt.Errorf("pgbouncer exited during start-up:\n%s", text)
		}
		if c, err := net.DialTimeout("tcp", b.Addr(), time.Second); err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			syscall.Kill(b.pid, syscall.SIGKILL)
			b.exitedLocked(true)
			return fmt.Errorf("pgbouncer not listening after %v:\n%s", readyTimeout, b.output())
		}
		time.Sleep(pollInterval)
	}
}

// output is the tail of PgBouncer's stderr and log, for errors.
func (b *PgBouncer) output() string {
	var buf bytes.Buffer
	for _, name := range []string{"stderr.log", "pgbouncer.log"} {
		if data, err := os.ReadFile(filepath.Join(b.dir, name)); err == nil {
			buf.Write(data)
		}
	}
	return tail(bytes.TrimSpace(buf.Bytes()), 4096)
}

// exitedLocked checks (or with block, waits) whether the process has
// exited, and forgets it if so. Callers hold b.mu.
func (b *PgBouncer) exitedLocked(block bool) bool {
	if b.pid == 0 {
		return true
	}
	opts := syscall.WNOHANG
	if block {
		opts = 0
	}
	for {
		var status syscall.WaitStatus
		pid, err := syscall.Wait4(b.pid, &status, opts, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil || pid == b.pid {
			b.proc.Release()
			b.pid, b.proc = 0, nil
			return true
		}
		return false
	}
}

// Addr returns the address clients dial: "127.0.0.1:port".
func (b *PgBouncer) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port)) }

// Port returns the port PgBouncer listens on.
func (b *PgBouncer) Port() int { return b.port }

// URL returns dbURL (a postgres:// URL, such as one from [URL] or
// [Cluster.NodeURL]) with its host:port replaced by the bouncer's, keeping
// user, password, database and parameters. It panics if dbURL is not a
// URL, rather than return one that bypasses the bouncer.
func (b *PgBouncer) URL(dbURL string) string {
	u, err := url.Parse(dbURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		panic("pgtest: PgBouncer.URL: not a postgres:// URL") // never echo it: it holds a password
	}
	u.Host = b.Addr()
	return u.String()
}

// Stop shuts PgBouncer down at once (SIGTERM: its client and server
// connections are closed), escalating to SIGKILL, and returns when the
// process is gone. Stopping again does nothing.
func (b *PgBouncer) Stop(t testing.TB) {
	t.Helper()
	if err := b.stop(); err != nil {
		t.Fatalf("pgtest: PgBouncer.Stop: %v", err)
	}
}

func (b *PgBouncer) stop() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.pid == 0 {
		return nil
	}
	syscall.Kill(b.pid, syscall.SIGTERM)
	deadline := time.Now().Add(bouncerStopTimeout)
	for !b.exitedLocked(false) {
		if time.Now().After(deadline) {
			syscall.Kill(b.pid, syscall.SIGKILL)
			b.exitedLocked(true)
			return fmt.Errorf("pgbouncer ignored SIGTERM for %v; killed it", bouncerStopTimeout)
		}
		time.Sleep(pollInterval)
	}
	return nil
}

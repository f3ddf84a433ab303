package pgtest

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
)

// Server is a PostgreSQL server run from the local binaries in a private
// temp dir, listening on 127.0.0.1 only. Its superuser "postgres" logs in
// with a random password over TCP (scram-sha-256). A Server is safe for
// concurrent use.
type Server struct {
	env  *localEnv
	dir  string // private dir: data dir, log
	data string
	log  string
	tls  bool
	host dbHost
	name string // cluster node name (cluster_name), "" outside a Cluster

	mu      sync.Mutex
	args    []string // extra postgres command-line arguments (-c name=value)
	port    int
	pid     int // postmaster pid; 0 when not running
	proc    *os.Process
	crashed bool // killed and not started since
}

// Option configures a server made by [NewServer].
type Option func(*serverConfig)

type serverConfig struct {
	certFile, keyFile string
	settings          [][2]string
}

// WithTLS turns on TLS with the given PEM certificate and private key
// files, which are copied into the data directory (the key with mode 0600,
// owned by the server's OS user). URLs of such a server use
// sslmode=require.
func WithTLS(certFile, keyFile string) Option {
	return func(c *serverConfig) { c.certFile, c.keyFile = certFile, keyFile }
}

// WithSetting adds the postgresql.conf setting name = 'value' (value is
// quoted for you). Later settings override earlier ones and pgtest's
// defaults.
func WithSetting(name, value string) Option {
	return func(c *serverConfig) { c.settings = append(c.settings, [2]string{name, value}) }
}

var settingName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.]*$`)

// NewServer starts a dedicated PostgreSQL server from the local binaries
// that t alone controls, for tests that stop, restart or kill it. It is
// stopped and its files removed when t ends. Unlike the shared server it
// runs with synchronous_commit on, so committed data survives Kill. It
// only uses the local binaries, never TEST_DATABASE_URL or Docker: without
// them it skips t saying fault tests need local binaries, or fails it when
// DBMANAGER_REQUIRE_POSTGRES=1.
func NewServer(t testing.TB, opts ...Option) *Server {
	t.Helper()
	// Committed data must survive Kill: with fsync off this only costs a
	// write to the page cache per commit.
	cfg := serverConfig{settings: [][2]string{{"synchronous_commit", "on"}}}
	for _, o := range opts {
		o(&cfg)
	}
	env, err := localEnvironment()
	if err != nil {
		unavailable(t, fmt.Errorf("NewServer needs the local PostgreSQL binaries: fault tests stop, restart and kill the server, which TEST_DATABASE_URL and Docker cannot offer: %w", err))
	}
	s, err := newServer(env, cfg)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		if err := s.destroy(); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	if err := s.start(true); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return s
}

// newServer prepares (but does not start) a server with its own copy of
// the pristine cluster.
func newServer(env *localEnv, cfg serverConfig) (*Server, error) {
	dir, data, err := env.newServerDir()
	if err != nil {
		return nil, err
	}
	s := &Server{env: env, dir: dir, data: data, log: filepath.Join(dir, "postgres.log")}
	s.host.running = s.isRunning
	if err := s.configure(cfg); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

// configure writes cfg into the data directory.
func (s *Server) configure(cfg serverConfig) error {
	var conf strings.Builder
	if cfg.certFile != "" || cfg.keyFile != "" {
		if err := s.installFile(cfg.certFile, "server.crt", 0o644); err != nil {
			return fmt.Errorf("TLS certificate: %w", err)
		}
		if err := s.installFile(cfg.keyFile, "server.key", 0o600); err != nil {
			return fmt.Errorf("TLS key: %w", err)
		}
		conf.WriteString("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")
		s.tls = true
	}
	for _, kv := range cfg.settings {
		if !settingName.MatchString(kv[0]) {
			return fmt.Errorf("WithSetting: %q is not a setting name", kv[0])
		}
		fmt.Fprintf(&conf, "%s = '%s'\n", kv[0], strings.ReplaceAll(kv[1], "'", "''"))
	}
	if conf.Len() == 0 {
		return nil
	}
	f, err := os.OpenFile(filepath.Join(s.data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString("\n# pgtest options\n" + conf.String())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// installFile copies src into the data directory as name with mode perm,
// owned by the server's OS user.
func (s *Server) installFile(src, name string, perm os.FileMode) error {
	dst := filepath.Join(s.data, name)
	if err := copyFile(src, dst, perm); err != nil {
		return err
	}
	if c := s.env.cred; c != nil {
		return os.Chown(dst, int(c.Uid), int(c.Gid))
	}
	return nil
}

// URL creates a fresh empty database on s for t and returns its postgres://
// URL, logging in as the superuser (sslmode=require with TLS, else
// sslmode=disable). The database is dropped when t ends, if s still runs.
// On a standby of a [Cluster] it fails t (a standby cannot create a
// database): use [Cluster.Database] there.
func (s *Server) URL(t testing.TB) string {
	t.Helper()
	if !s.isRunning() {
		t.Fatalf("pgtest: Server.URL: server on port %d is not running", s.Port())
	}
	return s.host.freshDatabase(t)
}

// AdminURL returns the URL of the "postgres" database, logging in as the
// superuser.
func (s *Server) AdminURL() string {
	return s.host.urlFor("postgres")
}

// Host returns the address the server listens on: "127.0.0.1".
func (s *Server) Host() string { return "127.0.0.1" }

// Port returns the TCP port the server listens on; it stays the same
// across Stop/Start and Kill/Start.
func (s *Server) Port() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.port
}

// Exec runs sql (with optional arguments) as the superuser on the
// "postgres" database and fails t on error. SQL without arguments may hold
// several statements; they then run in one implicit transaction, so
// statements like CREATE DATABASE need a call of their own. The SQL text is
// not repeated in failure messages (it may hold a password).
func (s *Server) Exec(t testing.TB, sql string, args ...any) {
	t.Helper()
	if !s.isRunning() {
		t.Fatalf("pgtest: Server.Exec: server on port %d is not running", s.Port())
	}
	err := s.host.exec(func(ctx context.Context, c *pgx.Conn) error {
		_, err := c.Exec(ctx, sql, args...)
		return err
	}, false)
	if err != nil {
		t.Fatalf("pgtest: Server.Exec: %v", err)
	}
}

// Stop shuts the server down fast (open sessions are ended, data is
// checkpointed). Data and port are kept for Start.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	if err := s.stop(); err != nil {
		t.Fatalf("pgtest: Server.Stop: %v", err)
	}
}

// Start starts a stopped or killed server again on the same port, retrying
// for a few seconds while the port or shared memory of a killed server is
// still in use.
func (s *Server) Start(t testing.TB) {
	t.Helper()
	if err := s.start(false); err != nil {
		t.Fatalf("pgtest: Server.Start: %v", err)
	}
}

// Kill crashes the server: the postmaster and all its backends get
// SIGKILL, and Kill returns when they are gone, so clients see broken
// connections at once. Committed data survives; Start runs crash recovery.
func (s *Server) Kill(t testing.TB) {
	t.Helper()
	if err := s.kill(); err != nil {
		t.Fatalf("pgtest: Server.Kill: %v", err)
	}
}

// setAddress records the port and the admin URL that goes with it.
func (s *Server) setAddress(port int) {
	s.port = port
	q := url.Values{}
	if s.tls {
		q.Set("sslmode", "require")
	} else {
		q.Set("sslmode", "disable")
	}
	s.host.admin = url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(superuser, s.env.password),
		Host:     net.JoinHostPort(s.Host(), strconv.Itoa(port)),
		Path:     "/postgres",
		RawQuery: q.Encode(),
	}
}

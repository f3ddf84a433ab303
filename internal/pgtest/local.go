package pgtest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// pristineDirEnv and pristinePasswordEnv let a test binary started by
// pgtest's own tests copy its parent's pristine cluster instead of running
// initdb again. Nothing else sets them.
const (
	pristineDirEnv      = "PGTEST_INTERNAL_PRISTINE_DIR"
	pristinePasswordEnv = "PGTEST_INTERNAL_PRISTINE_PASSWORD"
)

// superuser is the name of the bootstrap superuser of local clusters.
const superuser = "postgres"

// localEnv is what every local server of this test binary shares: the
// binaries, the OS user they run as, one private temp dir (with a pristine
// cluster made by initdb that each server copies) and the reaper.
type localEnv struct {
	binDir   string
	major    int
	cred     *syscall.Credential // nil unless running as root
	root     string              // private temp dir, removed at exit
	password string              // superuser password of every local cluster
	pristine string              // data dir made by initdb, never started
	icu      bool                // default collation is ICU en-US
	// initdbTime is how long initdb took, for TestTimings.
	initdbTime time.Duration
	reaper     *reaper
}

var local struct {
	mu    sync.Mutex
	tried bool
	env   *localEnv
	err   error
	seq   int
}

// localEnvironment prepares the local environment once per test binary
// and remembers the outcome (an error means "no local PostgreSQL").
func localEnvironment() (*localEnv, error) {
	local.mu.Lock()
	defer local.mu.Unlock()
	if !local.tried {
		local.tried = true
		local.env, local.err = newLocalEnv()
	}
	return local.env, local.err
}

func newLocalEnv() (*localEnv, error) {
	binDir, err := findBinDir()
	if err != nil {
		return nil, err
	}
	env := &localEnv{binDir: binDir, major: binaryMajor(binDir)}
	if os.Geteuid() == 0 {
		env.cred, err = postgresCredential()
		if err != nil {
			return nil, err
		}
	}
	env.root, err = makeRootDir(env.cred)
	if err != nil {
		return nil, err
	}
	env.reaper, err = startReaper(env.root)
	if err != nil {
		os.RemoveAll(env.root)
		return nil, err
	}
	env.password = randomHex(16)
	start := time.Now()
	if from, pw := os.Getenv(pristineDirEnv), os.Getenv(pristinePasswordEnv); from != "" && pw != "" {
		env.password, env.pristine = pw, filepath.Join(env.root, "pristine")
		err = copyTree(from, env.pristine, env.cred)
	} else {
		err = env.initdb()
	}
	env.initdbTime = time.Since(start)
	if err != nil {
		env.shutdown()
		return nil, err
	}
	return env, nil
}

// findBinDir returns the first directory holding both initdb and postgres:
// PGTEST_BINDIR, the newest /usr/lib/postgresql/*/bin, the directory of
// initdb in PATH, then pg_config --bindir.
func findBinDir() (string, error) {
	var candidates []string
	if d := os.Getenv("PGTEST_BINDIR"); d != "" {
		candidates = append(candidates, d)
	}
	versioned, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(versioned, func(i, j int) bool {
		return versionOf(versioned[i]) > versionOf(versioned[j])
	})
	candidates = append(candidates, versioned...)
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		candidates = append(candidates, filepath.Dir(p))
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		candidates = append(candidates, strings.TrimSpace(string(out)))
	}
	for _, dir := range candidates {
		if isExecutable(filepath.Join(dir, "initdb")) && isExecutable(filepath.Join(dir, "postgres")) {
			return dir, nil
		}
	}
	return "", errors.New("no PostgreSQL binaries: initdb and postgres not found in PGTEST_BINDIR, /usr/lib/postgresql/*/bin, PATH or pg_config --bindir (on Debian: apt-get install postgresql)")
}

func versionOf(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

var versionPattern = regexp.MustCompile(`\(PostgreSQL\) (\d+)`)

// binaryMajor returns the major version of the binaries, 0 if unknown.
func binaryMajor(binDir string) int {
	out, err := exec.Command(filepath.Join(binDir, "postgres"), "--version").Output()
	if err != nil {
		return 0
	}
	m := versionPattern.FindSubmatch(out)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// postgresCredential is the OS user that initdb and postgres run as when
// the tests run as root (both refuse to run as root).
func postgresCredential() (*syscall.Credential, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, and initdb/postgres refuse root, but there is no \"postgres\" OS user to run them as: %w", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("postgres OS user has non-numeric ids %q/%q", u.Uid, u.Gid)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
}

// makeRootDir makes the private temp dir of this test binary (a unique
// name from os.MkdirTemp) in the first usable base: PGTEST_TMPDIR if set,
// else /dev/shm (tmpfs: creating a cluster's ~1000 files there is several
// times faster than on disk), else os.TempDir(), else /tmp. As root, the
// base must be reachable by the postgres user.
func makeRootDir(cred *syscall.Credential) (string, error) {
	var bases []string
	if d := os.Getenv("PGTEST_TMPDIR"); d != "" {
		bases = append(bases, d)
	} else {
		if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
			bases = append(bases, "/dev/shm")
		}
		bases = append(bases, os.TempDir())
		if os.TempDir() != "/tmp" {
			bases = append(bases, "/tmp")
		}
	}
	var errs []error
	for _, base := range bases {
		if cred != nil && !reachableBy(base, cred) {
			errs = append(errs, fmt.Errorf("%s is not reachable by the postgres user", base))
			continue
		}
		dir, err := os.MkdirTemp(base, "pgtest-")
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if dir, err = filepath.Abs(dir); err == nil {
			err = own(dir, cred)
		}
		if err != nil {
			os.RemoveAll(dir)
			errs = append(errs, err)
			continue
		}
		return dir, nil
	}
	return "", fmt.Errorf("no usable temp dir: %w", errors.Join(errs...))
}

// reachableBy reports whether every directory from / down to dir can be
// traversed by the user of cred.
func reachableBy(dir string, cred *syscall.Credential) bool {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	for {
		fi, err := os.Stat(dir)
		if err != nil {
			return false
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		mode := fi.Mode().Perm()
		switch {
		case ok && st.Uid == cred.Uid:
			if mode&0o100 == 0 {
				return false
			}
		case ok && st.Gid == cred.Gid:
			if mode&0o010 == 0 {
				return false
			}
		default:
			if mode&0o001 == 0 {
				return false
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return true
		}
		dir = parent
	}
}

// own gives path to the postgres user (when running as root) with mode 0700.
func own(path string, cred *syscall.Credential) error {
	if err := os.Chmod(path, 0o700); err != nil {
		return err
	}
	if cred == nil {
		return nil
	}
	return os.Chown(path, int(cred.Uid), int(cred.Gid))
}

// initdb makes the pristine cluster: superuser "postgres" with a random
// password, scram-sha-256 for every connection, speed settings.
func (e *localEnv) initdb() error {
	pwfile := filepath.Join(e.root, "pwfile")
	if err := os.WriteFile(pwfile, []byte(e.password+"\n"), 0o600); err != nil {
		return err
	}
	defer os.Remove(pwfile)
	if e.cred != nil {
		if err := os.Chown(pwfile, int(e.cred.Uid), int(e.cred.Gid)); err != nil {
			return err
		}
	}
	e.pristine = filepath.Join(e.root, "pristine")
	args := []string{
		"-D", e.pristine, "-U", superuser, "--pwfile=" + pwfile,
		"--auth-host=scram-sha-256", "--auth-local=scram-sha-256",
		"--encoding=UTF8", "--locale=C", "--no-sync",
	}
	if e.major >= 14 || e.major == 0 {
		args = append(args, "--no-instructions")
	}
	var out []byte
	var err error
	if e.major >= 15 {
		// A linguistic default collation makes code that forgets
		// COLLATE "C" fail its ordering tests.
		out, err = e.run("initdb", append(args, "--locale-provider=icu", "--icu-locale=en-US")...)
		e.icu = err == nil
	}
	if !e.icu {
		os.RemoveAll(e.pristine)
		out, err = e.run("initdb", args...)
	}
	if err != nil {
		return fmt.Errorf("initdb failed: %w\n%s", err, tail(out, 2000))
	}
	conf := `
# pgtest: throwaway test cluster, speed over durability.
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 300
shared_buffers = 32MB
autovacuum = off
jit = off
password_encryption = 'scram-sha-256'
`
	f, err := os.OpenFile(filepath.Join(e.pristine, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(conf)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// run runs one of the PostgreSQL binaries to completion as the postgres
// user, returning its combined output.
func (e *localEnv) run(name string, args ...string) ([]byte, error) {
	return e.runEnv(nil, name, args...)
}

// runEnv is run with extra environment variables (such as PGPASSWORD, so
// no password shows on a command line).
func (e *localEnv) runEnv(extra []string, name string, args ...string) ([]byte, error) {
	cmd := exec.Command(filepath.Join(e.binDir, name), args...)
	cmd.Dir = e.root
	cmd.Env = append(childEnv(), extra...)
	var buf bytes.Buffer
	cmd.Stdout = &buf
	cmd.Stderr = &buf
	cmd.SysProcAttr = childAttr(e.cred)
	err := cmd.Run()
	return buf.Bytes(), err
}

// newServerDir copies the pristine cluster into a fresh server dir.
func (e *localEnv) newServerDir() (dir, data string, err error) {
	dir, data, err = e.newEmptyServerDir()
	if err != nil {
		return "", "", err
	}
	if err := copyTree(e.pristine, data, e.cred); err != nil {
		os.RemoveAll(dir)
		return "", "", fmt.Errorf("copy pristine cluster: %w", err)
	}
	return dir, data, nil
}

// newEmptyServerDir makes a fresh server dir, owned by the postgres user,
// whose data dir (not created) a tool such as pg_basebackup fills.
func (e *localEnv) newEmptyServerDir() (dir, data string, err error) {
	local.mu.Lock()
	local.seq++
	n := local.seq
	local.mu.Unlock()
	dir = filepath.Join(e.root, fmt.Sprintf("srv%d", n))
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", "", err
	}
	if err := own(dir, e.cred); err != nil {
		os.RemoveAll(dir)
		return "", "", err
	}
	return dir, filepath.Join(dir, "data"), nil
}

// shutdown removes the private temp dir and ends the reaper, which kills
// any postmaster still running in it.
func (e *localEnv) shutdown() error {
	return e.reaper.finish()
}

// childEnv is the environment for PostgreSQL processes: ours without PG*
// variables and locale overrides that could change their behaviour.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "LC_ALL=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LC_ALL=C")
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

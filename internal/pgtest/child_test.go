package pgtest

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// childModeEnv makes the test binary a child that starts servers and then
// dies in the given way, without running Main's cleanup.
const childModeEnv = "PGTEST_CHILD_MODE"

// runChild runs the tests without Main, so only the reaper, Pdeathsig and
// t.Cleanup can clean up.
func runChild(m *testing.M, mode string) int { return m.Run() }

// TestChildProcess is the child's body; it does nothing in a normal run.
func TestChildProcess(t *testing.T) {
	mode := os.Getenv(childModeEnv)
	if mode == "" {
		t.Skip("helper for TestNothingLeftBehindWhenTestBinaryDies")
	}
	URL(t)
	s := NewServer(t)
	s.URL(t)
	pids := []string{strconv.Itoa(shared.server.pid), strconv.Itoa(s.pid)}
	c := NewCluster(t, WithStandbys(1))
	for _, n := range c.Nodes() {
		pids = append(pids, strconv.Itoa(n.pid))
	}
	if _, err := findPgBouncer(); err == nil {
		b := NewPgBouncer(t, s.host.admin.Host)
		pids = append(pids, strconv.Itoa(b.pid))
	}
	fmt.Printf("PGTEST_CHILD root=%s pids=%s\n", s.env.root, strings.Join(pids, ","))
	os.Stdout.Sync()
	switch mode {
	case "panic":
		panic("pgtest child: deliberate panic")
	case "sigkill":
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		time.Sleep(time.Minute)
	}
}

func TestNothingLeftBehindWhenTestBinaryDies(t *testing.T) {
	env, err := localEnvironment()
	if err != nil {
		unavailable(t, err)
	}
	for _, mode := range []string{"panic", "sigkill"} {
		t.Run(mode, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestChildProcess$", "-test.count=1")
			cmd.Env = append(os.Environ(), childModeEnv+"="+mode,
				pristineDirEnv+"="+env.pristine, pristinePasswordEnv+"="+env.password)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err == nil {
				t.Fatalf("child in mode %s exited 0", mode)
			}
			root, pids := parseChild(t, out, stderr.String())
			// The reaper works after the child is gone: wait for it,
			// generously (it needs well under a second here).
			deadline := time.Now().Add(20 * time.Second)
			for {
				_, statErr := os.Stat(root)
				alive := alivePids(pids)
				if os.IsNotExist(statErr) && len(alive) == 0 {
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("after child died (%s): dir %s stat=%v, postmasters or pgbouncers alive=%v", mode, root, statErr, alive)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

func parseChild(t *testing.T, out []byte, stderr string) (root string, pids []int) {
	t.Helper()
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "PGTEST_CHILD ")
		if !ok {
			continue
		}
		for _, field := range strings.Fields(line) {
			k, v, _ := strings.Cut(field, "=")
			switch k {
			case "root":
				root = v
			case "pids":
				for _, p := range strings.Split(v, ",") {
					n, err := strconv.Atoi(p)
					if err != nil || n <= 0 {
						t.Fatalf("bad pid %q", p)
					}
					pids = append(pids, n)
				}
			}
		}
	}
	if root == "" || len(pids) < 4 {
		t.Fatalf("child did not report its servers; stdout:\n%s\nstderr:\n%s", out, stderr)
	}
	return root, pids
}

// alivePids returns the pids that still run (zombies count as gone).
func alivePids(pids []int) []int { return alive(pids) }

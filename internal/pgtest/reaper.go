package pgtest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
)

// reaperScript runs in a separate sh process. It blocks reading its stdin,
// a pipe whose only writer is the test binary. The pipe closes when the
// test binary finishes or dies in any way (panic, os.Exit, SIGKILL); then
// the script stops every postmaster whose data dir is under $1 (checked
// against the process's command line, so a stale pid is never killed),
// every PgBouncer whose pidfile is $1/*/pgbouncer.pid (checked the same way
// against its ini file), and removes $1.
const reaperScript = `
trap '' HUP INT QUIT TERM PIPE
root=$1
while read -r _; do :; done
pids=
for f in "$root"/*/data/postmaster.pid; do
	[ -f "$f" ] || continue
	pid=$(head -n 1 "$f")
	case "$pid" in ''|*[!0-9]*) continue ;; esac
	if tr '\0' '\n' < "/proc/$pid/cmdline" 2>/dev/null | grep -qxF "${f%/postmaster.pid}"; then
		kill -QUIT "$pid" 2>/dev/null && pids="$pids $pid"
	fi
done
for f in "$root"/*/pgbouncer.pid; do
	[ -f "$f" ] || continue
	pid=$(head -n 1 "$f")
	case "$pid" in ''|*[!0-9]*) continue ;; esac
	if tr '\0' '\n' < "/proc/$pid/cmdline" 2>/dev/null | grep -qxF "${f%/pgbouncer.pid}/pgbouncer.ini"; then
		kill -TERM "$pid" 2>/dev/null && pids="$pids $pid"
	fi
done
i=0
while [ -n "$pids" ] && [ $i -lt 50 ]; do
	alive=
	for p in $pids; do
		# Gone once /proc/PID vanishes or is a zombie (state Z).
		state=$(sed 's/.*) \(.\).*/\1/' "/proc/$p/stat" 2>/dev/null)
		[ -n "$state" ] && [ "$state" != Z ] && alive="$alive $p"
	done
	pids=$alive
	[ -n "$pids" ] && sleep 0.1
	i=$((i+1))
done
for p in $pids; do kill -KILL "$p" 2>/dev/null; done
rm -rf "$root"
`

// reaper is the handle on the reaper process of one test binary.
type reaper struct {
	root string
	proc *os.Process
	pipe *os.File // write end; held open for the life of the test binary

	once sync.Once
	err  error
}

// startReaper starts the reaper for root.
func startReaper(root string) (*reaper, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	cmd := exec.Command("/bin/sh", "-c", reaperScript, "pgtest-reaper", root)
	cmd.Stdin = r
	// Own process group, no Pdeathsig: it must outlive the test binary.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return nil, fmt.Errorf("start reaper: %w", err)
	}
	return &reaper{root: root, proc: cmd.Process, pipe: w}, nil
}

// finish closes the pipe, waits for the reaper to clean up and checks that
// the root dir is gone. It is idempotent.
func (r *reaper) finish() error {
	r.once.Do(func() {
		r.pipe.Close()
		_, err := r.proc.Wait()
		if err != nil {
			r.err = fmt.Errorf("wait for reaper: %w", err)
			return
		}
		if _, err := os.Stat(r.root); !errors.Is(err, os.ErrNotExist) {
			r.err = fmt.Errorf("reaper left %s behind (%v)", r.root, err)
		}
	})
	return r.err
}

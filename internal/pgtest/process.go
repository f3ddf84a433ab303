package pgtest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	readyTimeout   = 60 * time.Second // start-up, including crash recovery
	restartRetry   = 10 * time.Second // port or shared memory still busy after Kill
	stopTimeout    = 30 * time.Second // fast shutdown before escalating
	pollInterval   = 10 * time.Millisecond
	maxPortClashes = 5
)

// errBusy means the postmaster exited because its port or the shared
// memory of a previous postmaster was still in use: worth retrying.
var errBusy = errors.New("port or shared memory in use")

func (s *Server) isRunning() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pid != 0
}

// start runs the postmaster and waits until it accepts connections. On the
// first start (pickPort) a port clash makes it try another free port; a
// restart keeps the port and retries it for up to restartRetry.
func (s *Server) start(pickPort bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pid != 0 {
		return fmt.Errorf("server on port %d is already running", s.port)
	}
	deadline := time.Now().Add(restartRetry)
	clashes := 0
	for {
		if pickPort {
			port, err := freePort()
			if err != nil {
				return err
			}
			s.setAddress(port)
		}
		err := s.startOnce()
		if err == nil || !errors.Is(err, errBusy) {
			return err
		}
		if pickPort {
			if clashes++; clashes >= maxPortClashes {
				return err
			}
			continue
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// startOnce runs the postmaster once and waits for it to be ready.
func (s *Server) startOnce() error {
	logf, err := os.OpenFile(s.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	logStart, _ := logf.Seek(0, 2)
	args := append([]string{"-D", s.data, "-p", strconv.Itoa(s.port)}, s.args...)
	cmd := exec.Command(filepath.Join(s.env.binDir, "postgres"), args...)
	cmd.Dir = s.dir
	cmd.Env = childEnv()
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = postmasterAttr(s.env.cred)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	pid := cmd.Process.Pid
	s.pid, s.proc, s.crashed = pid, cmd.Process, false
	deadline := time.Now().Add(readyTimeout)
	for {
		if exited, status := s.reap(false); exited {
			out := s.logSince(logStart)
			if busyLog(out) {
				return fmt.Errorf("postgres exited (%v): %w\n%s", status, errBusy, out)
			}
			return fmt.Errorf("postgres exited during start-up (%v); log:\n%s", status, out)
		}
		if postmasterReady(s.data, pid) {
			return nil
		}
		if time.Now().After(deadline) {
			s.signal(syscall.SIGKILL)
			s.reap(true)
			return fmt.Errorf("postgres not ready after %v; log:\n%s", readyTimeout, s.logSince(logStart))
		}
		time.Sleep(pollInterval)
	}
}

// reap checks (or with block, waits) whether the postmaster has exited,
// and if so forgets it. Callers hold s.mu. pgtest reaps its children with
// wait4 itself, so no goroutine waits on a server for its whole life.
func (s *Server) reap(block bool) (exited bool, status syscall.WaitStatus) {
	if s.pid == 0 {
		return true, 0
	}
	opts := syscall.WNOHANG
	if block {
		opts = 0
	}
	for {
		pid, err := syscall.Wait4(s.pid, &status, opts, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil || pid == s.pid { // ECHILD: already gone
			s.proc.Release()
			s.pid, s.proc = 0, nil
			return true, status
		}
		return false, status
	}
}

// signal sends sig to the postmaster, if running. Callers hold s.mu; the
// pid cannot be reused before reap, so this never hits another process.
func (s *Server) signal(sig syscall.Signal) {
	if s.pid != 0 {
		syscall.Kill(s.pid, sig)
	}
}

// stop does a fast shutdown (SIGINT) and waits, escalating to immediate
// shutdown and SIGKILL if the server does not go.
func (s *Server) stop() error {
	s.host.closeConn()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pid == 0 {
		return nil
	}
	s.signal(syscall.SIGINT)
	if s.waitExit(stopTimeout) {
		return nil
	}
	s.signal(syscall.SIGQUIT)
	if s.waitExit(5 * time.Second) {
		return fmt.Errorf("postgres ignored fast shutdown for %v; stopped it with SIGQUIT", stopTimeout)
	}
	s.signal(syscall.SIGKILL)
	s.reap(true)
	return fmt.Errorf("postgres ignored shutdown requests; killed it")
}

// waitExit polls for the postmaster's exit for up to d.
func (s *Server) waitExit(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if exited, _ := s.reap(false); exited {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pollInterval)
	}
}

// kill crashes the server deterministically: it freezes the postmaster
// (SIGSTOP, so it forks no more), SIGKILLs it and every child it has, and
// waits until all are gone, so nothing of the server runs when it returns.
func (s *Server) kill() error {
	s.host.closeConn()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pid == 0 {
		return errors.New("server is not running")
	}
	s.signal(syscall.SIGSTOP)
	children := childrenOf(s.pid)
	s.signal(syscall.SIGKILL)
	for _, c := range children {
		syscall.Kill(c, syscall.SIGKILL)
	}
	s.reap(true)
	s.crashed = true
	deadline := time.Now().Add(stopTimeout)
	for len(alive(children)) > 0 {
		if time.Now().After(deadline) {
			return fmt.Errorf("backends %v still running %v after SIGKILL", alive(children), stopTimeout)
		}
		time.Sleep(pollInterval)
	}
	return nil
}

// destroy stops the server and removes its files. A server left crashed by
// Kill is started and stopped once first, so PostgreSQL itself removes the
// shared memory segments a crash leaves behind.
func (s *Server) destroy() error {
	s.mu.Lock()
	crashed := s.crashed && s.pid == 0
	s.mu.Unlock()
	var err error
	if crashed {
		err = s.start(false)
	}
	err = errors.Join(err, s.stop())
	if rerr := os.RemoveAll(s.dir); rerr != nil {
		err = errors.Join(err, rerr)
	}
	return err
}

// childrenOf lists the processes whose parent is pid.
func childrenOf(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	var kids []int
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, _ := procStat(p); ppid == pid {
			kids = append(kids, p)
		}
	}
	return kids
}

// alive returns the pids that still run; zombies count as gone.
func alive(pids []int) []int {
	var out []int
	for _, p := range pids {
		if _, state := procStat(p); state != 0 && state != 'Z' {
			out = append(out, p)
		}
	}
	return out
}

// procStat reads the parent pid and state of pid from /proc (0, 0 if it
// does not exist).
func procStat(pid int) (ppid int, state byte) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0
	}
	// Format: pid (comm) state ppid ...; comm may hold spaces and parens.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0
	}
	fields := strings.Fields(string(b[i+1:]))
	if len(fields) < 2 || len(fields[0]) != 1 {
		return 0, 0
	}
	ppid, _ = strconv.Atoi(fields[1])
	return ppid, fields[0][0]
}

// postmasterReady reports whether postmaster.pid in data names pid and
// says "ready" (the status line pg_ctl -w waits for).
func postmasterReady(data string, pid int) bool {
	b, err := os.ReadFile(filepath.Join(data, "postmaster.pid"))
	if err != nil {
		return false
	}
	lines := strings.Split(string(b), "\n")
	return len(lines) >= 8 && strings.TrimSpace(lines[0]) == strconv.Itoa(pid) &&
		strings.TrimSpace(lines[7]) == "ready"
}

// busyLog reports whether a start-up log shows a clash worth retrying.
func busyLog(log string) bool {
	for _, s := range []string{
		"Address already in use",
		"could not create any TCP/IP sockets",
		"pre-existing shared memory block",
		"is another postmaster",
	} {
		if strings.Contains(log, s) {
			return true
		}
	}
	return false
}

// logSince returns the server log written since offset (at most 4 KB).
func (s *Server) logSince(offset int64) string {
	b, err := os.ReadFile(s.log)
	if err != nil || int64(len(b)) < offset {
		return ""
	}
	return tail(bytes.TrimSpace(b[offset:]), 4096)
}

// freePort asks the kernel for a free port on 127.0.0.1. Another process
// may take it before postgres binds it; start then tries another.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

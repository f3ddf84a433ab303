//go:build linux

package pgtest

import "syscall"

// childAttr runs a PostgreSQL tool as cred's user (nil: as us), in its own
// process group (so a Ctrl-C aimed at go test does not reach it first), and
// has the kernel send it SIGKILL if the test binary dies. (Linux sends the
// Pdeathsig when the forking OS thread ends; Go ends threads only when a
// goroutine exits while locked to one, which pgtest's callers do not do,
// and the reaper covers the rest.)
func childAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// postmasterAttr is childAttr for the postmaster, which gets SIGQUIT
// (immediate shutdown: it stops its backends, then exits) instead.
func postmasterAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Setpgid: true, Pdeathsig: syscall.SIGQUIT}
}

//go:build !linux

package pgtest

import "syscall"

// childAttr runs a PostgreSQL tool as cred's user (nil: as us) in its own
// process group. Without Pdeathsig on this OS, only the reaper cleans up
// after a test binary that dies.
func childAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Setpgid: true}
}

// postmasterAttr is childAttr for the postmaster.
func postmasterAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return childAttr(cred)
}

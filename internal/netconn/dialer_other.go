//go:build !linux

package netconn

import (
	"syscall"
	"time"
)

// setUserTimeout does nothing: TCP_USER_TIMEOUT is Linux's. Keepalives
// and deadlines still bound a silent node.
func setUserTimeout(syscall.RawConn, time.Duration) error { return nil }

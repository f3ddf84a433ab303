//go:build !linux

package netconn

import "net"

// peeker cannot look without Linux's MSG_PEEK|MSG_DONTWAIT here.
type peeker struct{}

func newPeeker(net.Conn) *peeker { return &peeker{} }

func (*peeker) hasClosed() bool { return false }

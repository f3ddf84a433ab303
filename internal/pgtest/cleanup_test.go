package pgtest

import (
	"os"
	"testing"
	"time"
)

func TestNewServerCleanupLeavesNothing(t *testing.T) {
	var dir string
	var pid int
	t.Run("server", func(t *testing.T) {
		s := NewServer(t)
		s.URL(t)
		dir, pid = s.dir, s.pid
	})
	if dir == "" {
		t.Skip("no server")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("server dir %s still exists (stat: %v)", dir, err)
	}
	if alive := alivePids([]int{pid}); len(alive) != 0 {
		t.Errorf("postmaster %d still running", pid)
	}
}

// TestTimings logs how long pgtest's steps take; it asserts nothing.
func TestTimings(t *testing.T) {
	start := time.Now()
	s := NewServer(t)
	started := time.Since(start)
	start = time.Now()
	s.URL(t)
	fresh := time.Since(start)
	start = time.Now()
	s.Stop(t)
	stopped := time.Since(start)
	start = time.Now()
	s.Start(t)
	restarted := time.Since(start)
	t.Logf("initdb (once per test binary) %v; NewServer (copy cluster + start) %v; fresh database %v; Stop %v; Start %v",
		local.env.initdbTime, started, fresh, stopped, restarted)
}

package pgtest

import (
	"testing"

	"go.uber.org/goleak"
)

// Other packages check for leaked goroutines with goleak; pgtest must not
// leave any running between calls, even while servers run.
func TestNoBackgroundGoroutines(t *testing.T) {
	URL(t)
	s := NewServer(t)
	s.URL(t)
	s.Exec(t, "SELECT 1")
	c := NewCluster(t, WithStandbys(1))
	c.Database(t)
	c.Standbys()[0].Fence(t)
	NewPgBouncer(t, s.host.admin.Host)
	goleak.VerifyNone(t)
}

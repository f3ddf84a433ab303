package pgpipe

import (
	"os"
	"testing"

	"github.com/gatewaykit/dbmanager/internal/pgtest"
)

// TestMain runs the package's tests and stops the PostgreSQL server they
// started (see internal/pgtest).
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

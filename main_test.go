package dbmanager

import (
	"os"
	"testing"

	"github.com/gatewaykit/dbmanager/internal/pgtest"
)

// TestMain runs the package's tests with one shared PostgreSQL server (see
// internal/pgtest), stopped when they end.
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

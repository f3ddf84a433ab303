package pgtest

import (
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(childModeEnv); mode != "" {
		os.Exit(runChild(m, mode))
	}
	os.Exit(Main(m))
}

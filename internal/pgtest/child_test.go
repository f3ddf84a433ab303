package pgtest

import "testing"

const childModeEnv = "PGTEST_CHILD_MODE"

func runChild(m *testing.M, mode string) int { return m.Run() }

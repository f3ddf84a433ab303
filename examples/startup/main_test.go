package main

import (
	"os"
	"strings"
	"testing"

	"github.com/gatewaykit/dbmanager/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// clearDatabaseEnv makes ConfigFromEnv see no database, whatever the
// environment of the test run.
func clearDatabaseEnv(t *testing.T) {
	for _, v := range []string{"DATABASE_URL", "AWS_DB_SECRET", "AWS_SECRET_NAME", "AWS_DB_HOST", "DB_FALLBACK"} {
		t.Setenv(v, "")
	}
}

func TestStartupInMemory(t *testing.T) {
	clearDatabaseEnv(t)
	var out strings.Builder
	if err := run(t.Context(), &out); err != nil {
		t.Fatal(err)
	}
	if want := `stored "Hello, world" (version 1) in in-memory` + "\n"; out.String() != want {
		t.Errorf("output %q, want %q", out.String(), want)
	}
}

func TestStartupOnPostgreSQL(t *testing.T) {
	clearDatabaseEnv(t)
	t.Setenv("DATABASE_URL", pgtest.URL(t))
	var out strings.Builder
	if err := run(t.Context(), &out); err != nil {
		t.Fatal(err)
	}
	if want := `stored "Hello, world" (version 1) in postgresql` + "\n"; out.String() != want {
		t.Errorf("output %q, want %q", out.String(), want)
	}
}

func TestStartupFailsWithoutFallback(t *testing.T) {
	clearDatabaseEnv(t)
	t.Setenv("DATABASE_URL", "postgres://nobody:secret-pw@127.0.0.1:1/none?connect_timeout=2")
	t.Setenv("DB_FALLBACK", "none")
	var out strings.Builder
	err := run(t.Context(), &out)
	if err == nil {
		t.Fatalf("run succeeded without a database and with DB_FALLBACK=none: %q", out.String())
	}
	if strings.Contains(err.Error(), "secret-pw") {
		t.Errorf("the error shows the password: %v", err)
	}
}

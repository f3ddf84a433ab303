package dbmanager

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/gatewaykit/dbmanager/internal/pgtest"
)

// TestMeasureDefaults measures, with the default settings, what the README
// reports: how long Init takes against an unreachable primary, and how long
// after the primary answers again the Store serves from it. It prints
// numbers and asserts nothing about time; set DBMANAGER_MEASURE=1 to run
// it (it takes about a minute).
func TestMeasureDefaults(t *testing.T) {
	if os.Getenv("DBMANAGER_MEASURE") == "" {
		t.Skip("set DBMANAGER_MEASURE=1 to measure start-up and recovery times")
	}
	ctx := context.Background()
	quiet := WithLogger(slog.New(slog.DiscardHandler))
	startup := func(name, dsn string) {
		m := New(envConfig(t, "DATABASE_URL", dsn), quiet)
		start := time.Now()
		if err := m.Init(ctx); err != nil {
			t.Fatal(err)
		}
		took := time.Since(start)
		m.Close(ctx)
		fmt.Printf("start-up, %s: Init returned after %s (%s)\n", name, took.Round(time.Millisecond), m.Info().FallbackReason)
	}
	startup("refused port", "postgres://u:p@"+refusedAddr(t)+"/db")
	startup("unknown host", "postgres://u:p@db.example.invalid/db")
	startup("silent host (accepts TCP, never answers)", "postgres://u:p@"+silentServer(t)+"/db")

	for _, outage := range []time.Duration{time.Second, 5 * time.Second, 20 * time.Second} {
		srv := pgtest.NewServer(t)
		url := srv.URL(t)
		srv.Stop(t)
		m := New(envConfig(t, "DATABASE_URL", url), quiet)
		if err := m.Init(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(outage)
		srv.Start(t)
		answered := time.Now()
		for !m.Info().UsingPrimary {
			time.Sleep(time.Millisecond)
		}
		fmt.Printf("recovery after a %s outage: Store on PostgreSQL %s after the server answered\n",
			outage, time.Since(answered).Round(time.Millisecond))
		m.Close(ctx)
	}
}

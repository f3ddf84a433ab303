package dbmanager_test

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/gatewaykit/dbmanager"
)

// Diagnose walks the Manager's path to PostgreSQL and says which step
// breaks and how to fix it: here nothing listens on the configured port.
// A service can log the report when it falls back to memory
// (slog.Any("diagnosis", report) logs the first problem and its fix).
func ExampleDiagnose() {
	cfg, err := dbmanager.LoadConfig(env{ // a service: dbmanager.ConfigFromEnv()
		"AWS_DB_HOST": "127.0.0.1", "AWS_DB_PORT": "1", "AWS_DB_USER": "app", "AWS_DB_PASSWORD": "secret",
	}.get)
	if err != nil {
		fmt.Println(err)
		return
	}
	report := dbmanager.Diagnose(context.Background(), cfg, dbmanager.WithStepTimeout(5*time.Second))
	for _, s := range report.Steps {
		fmt.Println(s.Status, s.Name)
	}
	if p, found := report.Problem(); found {
		fix, _, _ := strings.Cut(p.Fix, ": ")
		fmt.Printf("first problem: %s %s at %s; fix: %s: ...\n", p.Status, p.Name, p.Target, fix)
	}
	fmt.Println("ok:", report.OK)
	// Output:
	// ok config
	// skipped secret
	// ok dns
	// failed tcp
	// skipped tls
	// skipped auth
	// skipped server
	// skipped store
	// first problem: failed tcp at 127.0.0.1:1; fix: nothing listens on 127.0.0.1:1: ...
	// ok: false
}

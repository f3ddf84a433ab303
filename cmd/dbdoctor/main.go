// Command dbdoctor walks the path a dbmanager Manager walks to reach
// PostgreSQL, with the same environment and the library's own code, and
// says which step fails and how to fix it:
//
//	go run github.com/gatewaykit/dbmanager/cmd/dbdoctor [-json] [-timeout 10s] [-write-test] [-schema dbmanager]
//
// The steps, in order: config (the variables set, the source that wins,
// the read replicas), secret (Secrets Manager, when configured), then for
// each host of the writer dns, tcp, tls, auth and server, then store (the
// Store's schema and privileges), then for each read replica
// (DATABASE_READ_URL / AWS_DB_READ_HOST) replica-dns, replica-tcp,
// replica-tls, replica-auth and replica-server (a standby, and its lag
// against DB_READ_MAX_LAG). Each is ok, warning, failed or skipped; a step
// after a failed one it needs is skipped. A read replica that is down,
// lags, or accepts writes is a warning, not a failure: the Manager takes it
// out of the read rotation and reads go to another replica or the writer.
// A read configuration the Manager rejects fails the config step. It reads exactly the environment ConfigFromEnv reads
// (and the AWS SDK's own variables, as the Manager does), writes nothing
// unless -write-test is given, and never prints a password, a secret's
// value or a token.
//
// Output: one line per step (status, name, host, what was found, the fix
// when not ok), or with -json one object
// {"ok": bool, "steps": [{"name", "target", "status", "took_ms", "detail", "fix"}]}.
//
// Exit status: 0 when no step failed (warnings included), 1 when one did,
// 2 on a usage error.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/gatewaykit/dbmanager"
)

// Exit statuses.
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

// run is the command with its arguments, outputs and environment.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	flags := flag.NewFlagSet("dbdoctor", flag.ContinueOnError)
	flags.SetOutput(stderr)
	asJSON := flags.Bool("json", false, "print the report as one JSON object")
	timeout := flags.Duration("timeout", dbmanager.DefaultStepTimeout, "the longest each step may take")
	writeTest := flags.Bool("write-test", false, "also write, read back and delete a scratch key (creates the Store's schema if missing)")
	schema := flags.String("schema", "dbmanager", "the Store's schema, if the service sets another with WithStoreSchema")
	flags.Usage = func() {
		fmt.Fprintf(stderr, "Usage: dbdoctor [-json] [-timeout 10s] [-write-test] [-schema dbmanager]\n\n"+
			"Checks, step by step, the database connection the environment describes\n"+
			"(DATABASE_URL, AWS_DB_SECRET or AWS_DB_HOST, ...) and says how to fix the step that fails.\n"+
			"Exit status: 0 no step failed (warnings, e.g. a read replica down, included), 1 a step failed, 2 usage error.\n\n")
		flags.PrintDefaults()
	}
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if flags.NArg() > 0 {
		fmt.Fprintf(stderr, "dbdoctor: unexpected argument %q (it reads its configuration from the environment)\n", flags.Arg(0))
		flags.Usage()
		return exitUsage
	}
	if *timeout <= 0 {
		fmt.Fprintln(stderr, "dbdoctor: -timeout must be positive")
		return exitUsage
	}
	if *schema == "" {
		fmt.Fprintln(stderr, "dbdoctor: -schema must not be empty")
		return exitUsage
	}
	opts := []dbmanager.Option{dbmanager.WithStepTimeout(*timeout), dbmanager.WithStoreSchema(*schema)}
	if *writeTest {
		opts = append(opts, dbmanager.WithWriteTest())
	}
	report := dbmanager.DiagnoseEnv(ctx, getenv, opts...)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(report); err != nil {
			fmt.Fprintf(stderr, "dbdoctor: %v\n", err)
			return exitFailed
		}
	} else {
		fmt.Fprint(stdout, report.String())
	}
	if !report.OK {
		return exitFailed
	}
	return exitOK
}

// Command startup is the start-up code of a service that uses dbmanager:
// read the configuration from the environment, start the Manager, hand
// its Store to the service, close it on the way out. With DATABASE_URL
// (or the AWS_* variables) set it stores in PostgreSQL, otherwise in
// memory.
//
//	go run ./examples/startup
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"

	"github.com/gatewaykit/dbmanager"
)

func main() {
	if err := run(context.Background(), os.Stdout); err != nil {
		log.Fatal(err)
	}
}

// greeting is what this example stores.
type greeting struct {
	Text string `json:"text"`
}

// run is a service's whole database start-up, then one write to show the
// Store working.
func run(ctx context.Context, out io.Writer) (err error) {
	cfg, err := dbmanager.ConfigFromEnv() // DATABASE_URL, AWS_DB_SECRET, AWS_DB_*, pool and TLS settings
	if err != nil {
		return err
	}
	m := dbmanager.New(cfg) // logs with slog.Default(); dbmanager.WithLogger to change
	if err := m.Init(ctx); err != nil {
		return err // only with DB_FALLBACK=none: otherwise it falls back to memory
	}
	defer func() { err = errors.Join(err, m.Close(context.WithoutCancel(ctx))) }()
	store := m.Store() // give this to your handlers: it follows fallback and recovery

	greetings := dbmanager.NewCollection[greeting](store, "greetings")
	doc, err := greetings.Put(ctx, "hello", greeting{Text: "Hello, world"})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(out, "stored %q (version %d) in %s\n", doc.Value.Text, doc.Version, store.Backend())
	return err
}

package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/testcontainers/testcontainers-go"
	tcpostgres "github.com/testcontainers/testcontainers-go/modules/postgres"
)

// ImageEnv names the PostgreSQL image of the Docker source, replacing
// [DefaultImage]. It must be an official-style postgres image (POSTGRES_*
// variables, docker-entrypoint) of PostgreSQL 15 or newer, because the
// cluster is made with an ICU default collation as local clusters are.
const ImageEnv = "PGTEST_IMAGE"

// DefaultImage is the image the Docker source runs unless PGTEST_IMAGE
// names another.
const DefaultImage = "postgres:15-alpine"

// dockerProbeTimeout bounds the check that a Docker engine answers, so a
// machine without one (or with a socket nobody serves) skips quickly.
const dockerProbeTimeout = 5 * time.Second

// containerStartTimeout bounds pulling the image and starting PostgreSQL.
const containerStartTimeout = 5 * time.Minute

// probeDocker asks testcontainers' own provider whether a container
// engine answers, within dockerProbeTimeout. It returns nil when one does.
func probeDocker() error {
	return probeWithin(dockerProbeTimeout, func(ctx context.Context) error {
		p, err := testcontainers.ProviderDefault.GetProvider()
		if err != nil {
			return err
		}
		return p.Health(ctx) // Health closes the provider
	})
}

// probeWithin runs check and returns its result, or an error once timeout
// has passed, whatever check does. A check that ignores its context is left
// to finish in the background (one goroutine, only when the engine hangs).
func probeWithin(timeout time.Duration, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				done <- fmt.Errorf("testcontainers panicked: %v", r)
			}
		}()
		done <- check(ctx)
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("no answer within %v", timeout)
	}
}

// containerImage is the image of the Docker source.
func containerImage() string {
	if img := os.Getenv(ImageEnv); img != "" {
		return img
	}
	return DefaultImage
}

// startContainer runs one PostgreSQL container for the test binary, set up
// like a local cluster: superuser "postgres" with a random password (over
// scram-sha-256, the official image's default for TCP), ICU en-US default
// collation, speed over durability, max_connections 300. testcontainers'
// reaper container (Ryuk) removes it if the test binary dies before [Main]
// terminates it.
func startContainer() (*sharedServer, error) {
	image := containerImage()
	password := randomHex(16)
	ctx, cancel := context.WithTimeout(context.Background(), containerStartTimeout)
	defer cancel()
	ctr, err := tcpostgres.Run(ctx, image,
		tcpostgres.WithUsername(superuser),
		tcpostgres.WithPassword(password),
		tcpostgres.WithDatabase("postgres"),
		tcpostgres.BasicWaitStrategies(),
		testcontainers.WithEnv(map[string]string{
			"POSTGRES_INITDB_ARGS": "--locale-provider=icu --icu-locale=en-US --encoding=UTF8",
		}),
		testcontainers.WithCmdArgs(
			"-c", "synchronous_commit=off",
			"-c", "full_page_writes=off",
			"-c", "max_connections=300",
			"-c", "autovacuum=off",
			"-c", "jit=off",
		),
	)
	if err != nil {
		// Run may return a container that started but never became
		// ready: end it too.
		terr := testcontainers.TerminateContainer(ctr)
		return nil, scrub(fmt.Errorf("start %s: %w", image, errors.Join(err, terr)), password)
	}
	endpoint, err := ctr.PortEndpoint(ctx, "5432/tcp", "")
	if err != nil {
		terr := testcontainers.TerminateContainer(ctr)
		return nil, scrub(fmt.Errorf("address of %s container: %w", image, errors.Join(err, terr)), password)
	}
	admin := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(superuser, password),
		Host:     endpoint,
		Path:     "/postgres",
		RawQuery: "sslmode=disable",
	}
	stop := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := ctr.Terminate(ctx); err != nil {
			return scrub(fmt.Errorf("terminate %s container: %w", image, err), password)
		}
		return nil
	}
	return &sharedServer{host: &dbHost{admin: admin}, stop: stop, source: "Docker container " + image}, nil
}

// scrub replaces secret in err's message, which may quote the container's
// environment, and keeps err for errors.Is/As.
func scrub(err error, secret string) error {
	if err == nil || !strings.Contains(err.Error(), secret) {
		return err
	}
	return &scrubbedError{msg: strings.ReplaceAll(err.Error(), secret, "xxxxx"), err: err}
}

// scrubbedError is err with a message that hides a secret.
type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.err }

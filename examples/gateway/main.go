// Command gateway is the Gateway Management API of the seed design, built
// on dbmanager: CRUD over API definitions at /apis and a health check at
// /health, and its metrics (pool, SQL, Store, fallback) in the Prometheus
// text format at /metrics. With DATABASE_URL (or the AWS_* variables) set it keeps the
// APIs in PostgreSQL; without, or while PostgreSQL is down, it serves from
// memory and moves back when PostgreSQL returns.
//
//	go run ./examples/gateway                       # in memory, port 8000
//	DATABASE_URL=postgres://... PORT=8080 go run ./examples/gateway
//
// Environment: PORT (default 8000), LOG_FORMAT (text or json, default
// text), and every variable dbmanager.ConfigFromEnv reads.
package main

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gatewaykit/dbmanager"
)

// shutdownTimeout bounds the wait for requests in flight and for the
// Manager to close after SIGINT or SIGTERM.
const shutdownTimeout = 10 * time.Second

func main() { os.Exit(run()) }

// run starts the service and returns the process exit code: 0 after a
// clean shutdown on a signal, 1 when it could not start or serve.
func run() int {
	logger := newLogger(os.Getenv("LOG_FORMAT"))
	addr := ":" + cmp.Or(os.Getenv("PORT"), "8000")

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	cfg, err := dbmanager.ConfigFromEnv()
	if err != nil {
		logger.Error("invalid database configuration", "err", err)
		return 1
	}
	mp, metrics, shutdownMetrics, err := newMetrics()
	if err != nil {
		logger.Error("cannot set up metrics", "err", err)
		return 1
	}
	defer func() { _ = shutdownMetrics(context.Background()) }()
	m := dbmanager.New(cfg, dbmanager.WithLogger(logger), dbmanager.WithMeterProvider(mp))
	if err := m.Init(ctx); err != nil {
		logger.Error("database initialisation failed", "err", err)
		return 1
	}

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		logger.Error("cannot listen", "addr", addr, "err", err)
		closeManager(logger, m)
		return 1
	}
	srv := &http.Server{
		Handler:           withMetrics(metrics, newServer(m.Store(), dbmanager.HealthHandler(m, serviceName, serviceVersion), logger)),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	logger.Info(serviceName+" listening", "addr", ln.Addr().String(), "version", serviceVersion, "backend", m.Store().Backend())

	code := 0
	select {
	case <-ctx.Done():
		logger.Info("shutting down", "reason", "signal")
	case err := <-served:
		logger.Error("server stopped", "err", err)
		code = 1
	}
	stop() // a second signal now kills the process at once

	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		logger.Error("HTTP shutdown incomplete", "err", err)
		code = 1
	}
	if err := m.Close(sctx); err != nil {
		logger.Error("database shutdown incomplete", "err", err)
		code = 1
	}
	logger.Info("stopped")
	return code
}

// closeManager closes m within shutdownTimeout, logging a failure.
func closeManager(logger *slog.Logger, m *dbmanager.Manager) {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := m.Close(ctx); err != nil {
		logger.Error("database shutdown incomplete", "err", err)
	}
}

// newLogger logs to stderr as JSON when format is "json", as text
// otherwise.
func newLogger(format string) *slog.Logger {
	if format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, nil))
}

// Package customstore shows how to write your own dbmanager.Store and
// prove it keeps the Store contract with storetest.Run.
//
// LoggingStore wraps any Store and logs every call (operation, collection,
// key, outcome, duration) without ever logging a value, which may hold
// secrets.
package customstore

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/gatewaykit/dbmanager"
)

// LoggingStore is a dbmanager.Store that forwards every call to another
// Store and logs it at Debug (at Warn when it fails for a reason other than
// a missing key or a failed condition). Values are never logged.
type LoggingStore struct {
	next dbmanager.Store
	log  *slog.Logger
}

// New returns a LoggingStore in front of next that logs to log.
func New(next dbmanager.Store, log *slog.Logger) *LoggingStore {
	return &LoggingStore{next: next, log: log}
}

// Get forwards to the wrapped store and logs the call.
func (s *LoggingStore) Get(ctx context.Context, collection, key string) (dbmanager.Record, error) {
	start := time.Now()
	r, err := s.next.Get(ctx, collection, key)
	s.logCall(ctx, "get", collection, key, start, err, slog.Int64("version", r.Version))
	return r, err
}

// Put forwards to the wrapped store and logs the call, with the value's
// size but not its content.
func (s *LoggingStore) Put(ctx context.Context, collection, key string, value []byte, opts ...dbmanager.WriteOption) (dbmanager.Record, error) {
	start := time.Now()
	r, err := s.next.Put(ctx, collection, key, value, opts...)
	s.logCall(ctx, "put", collection, key, start, err, slog.Int("bytes", len(value)), slog.Int64("version", r.Version))
	return r, err
}

// Delete forwards to the wrapped store and logs the call.
func (s *LoggingStore) Delete(ctx context.Context, collection, key string, opts ...dbmanager.WriteOption) error {
	start := time.Now()
	err := s.next.Delete(ctx, collection, key, opts...)
	s.logCall(ctx, "delete", collection, key, start, err)
	return err
}

// List forwards to the wrapped store and logs the call.
func (s *LoggingStore) List(ctx context.Context, collection string, opts dbmanager.ListOptions) (dbmanager.Page, error) {
	start := time.Now()
	p, err := s.next.List(ctx, collection, opts)
	s.logCall(ctx, "list", collection, "", start, err, slog.Int("records", len(p.Records)))
	return p, err
}

// Ping forwards to the wrapped store and logs the call.
func (s *LoggingStore) Ping(ctx context.Context) error {
	start := time.Now()
	err := s.next.Ping(ctx)
	s.logCall(ctx, "ping", "", "", start, err)
	return err
}

// Backend names the wrapped store's backend.
func (s *LoggingStore) Backend() string { return s.next.Backend() }

// Close closes the wrapped store if it can be closed.
func (s *LoggingStore) Close() error {
	if c, ok := s.next.(interface{ Close() error }); ok {
		return c.Close()
	}
	return nil
}

// logCall writes one log line for a call.
func (s *LoggingStore) logCall(ctx context.Context, op, collection, key string, start time.Time, err error, extra ...slog.Attr) {
	level := slog.LevelDebug
	attrs := []slog.Attr{slog.String("op", op), slog.Duration("duration", time.Since(start))}
	if collection != "" {
		attrs = append(attrs, slog.String("collection", collection))
	}
	if key != "" {
		attrs = append(attrs, slog.String("key", key))
	}
	if err != nil {
		attrs = append(attrs, slog.String("err", err.Error()))
		if !errors.Is(err, dbmanager.ErrNotFound) && !errors.Is(err, dbmanager.ErrConflict) {
			level = slog.LevelWarn
		}
	} else {
		attrs = append(attrs, extra...)
	}
	s.log.LogAttrs(ctx, level, "store call", attrs...)
}

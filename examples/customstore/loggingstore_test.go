package customstore

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/gatewaykit/dbmanager"
	"github.com/gatewaykit/dbmanager/storetest"
)

// TestLoggingStoreKeepsTheContract runs the whole Store conformance suite
// against a LoggingStore in front of a MemStore.
func TestLoggingStoreKeepsTheContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) dbmanager.Store {
		s := New(dbmanager.NewMemStore(), slog.New(slog.DiscardHandler))
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}

func TestLoggingStoreLogsCallsButNotValues(t *testing.T) {
	var buf syncBuffer
	s := New(dbmanager.NewMemStore(), slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	ctx := t.Context()

	if _, err := s.Put(ctx, "users", "u1", []byte(`{"password":"hunter2-SECRET"}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "users", "missing"); !errors.Is(err, dbmanager.ErrNotFound) {
		t.Fatalf("Get of a missing key: %v", err)
	}
	log := buf.String()
	for _, want := range []string{"op=put", "collection=users", "key=u1", "bytes=29", "version=1", "op=get", "level=DEBUG"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if strings.Contains(log, "hunter2-SECRET") {
		t.Errorf("the log shows a stored value:\n%s", log)
	}
}

// syncBuffer is a bytes.Buffer that concurrent loggers may share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

package dbmanager

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatewaykit/dbmanager/internal/pgtest"
)

func TestInitNothingConfiguredServesMemoryDegraded(t *testing.T) {
	ctx := context.Background()
	m, logs := newTestManager(t, envConfig(t))
	if err := m.Init(ctx); err != nil {
		t.Fatalf("Init: %v", err)
	}
	if _, err := m.Store().Put(ctx, "apis", "a", []byte(`{}`)); err != nil {
		t.Fatalf("Put on memory: %v", err)
	}
	h := m.Health(ctx)
	if h.Status != StatusDegraded || h.Type != BackendMemory || h.UsingPrimary {
		t.Errorf("Health = %+v; want degraded in-memory", h)
	}
	if info := m.Info(); info.Source != SourceNone || info.UsingPrimary || info.Recovering {
		t.Errorf("Info = %+v; want source none, not recovering", info)
	}
	assertLogged(t, logs, "No database URL configured", "Database initialized: in-memory (primary=False)")
}

func TestInitMemoryOnPurposeIsHealthy(t *testing.T) {
	ctx := context.Background()
	m, _ := newTestManager(t, envConfig(t, "DATABASE_URL", "memory://"))
	if err := m.Init(ctx); err != nil {
		t.Fatalf("Init: %v", err)
	}
	if h := m.Health(ctx); h.Status != StatusHealthy || h.Type != BackendMemory {
		t.Errorf("Health = %+v; want healthy in-memory", h)
	}
	if _, ok := m.Pool(); ok {
		t.Error("Pool() reports a pool while serving from memory")
	}
}

func TestInitReachablePrimary(t *testing.T) {
	ctx := context.Background()
	m, logs := newTestManager(t, envConfig(t, "DATABASE_URL", pgtest.URL(t)))
	if err := m.Init(ctx); err != nil {
		t.Fatalf("Init: %v", err)
	}
	rec, err := m.Store().Put(ctx, "apis", "a", []byte(`{"n": 1}`))
	if err != nil || rec.Version != 1 {
		t.Fatalf("Put = %+v, %v", rec, err)
	}
	if m.Store().Backend() != BackendPostgreSQL {
		t.Errorf("Backend() = %q", m.Store().Backend())
	}
	h := m.Health(ctx)
	if h.Status != StatusHealthy || !h.UsingPrimary || h.Message != "Primary database connection is healthy" || h.Pool == nil {
		t.Errorf("Health = %+v", h)
	}
	if pool, ok := m.Pool(); !ok || pool == nil {
		t.Error("Pool() = nil, false on the primary")
	}
	info := m.Info()
	if !info.UsingPrimary || info.DatabaseType != BackendPostgreSQL || info.Source != SourceDatabaseURL || info.Host != "127.0.0.1" || info.Port == 0 || info.User == "" {
		t.Errorf("Info = %+v", info)
	}
	assertLogged(t, logs, "DatabaseManager initialized", "Primary database initialized successfully",
		"Database initialized: postgresql (primary=True)", "Database health: healthy - Primary database connection is healthy")
}

func TestInitUnreachableFallsBackOrFails(t *testing.T) {
	ctx := context.Background()
	url := "postgres://app:s3cret-pw@" + refusedAddr(t) + "/app?sslmode=disable"

	m, logs := newTestManager(t, envConfig(t, "DATABASE_URL", url))
	if err := m.Init(ctx); err != nil {
		t.Fatalf("Init with fallback: %v", err)
	}
	h := m.Health(ctx)
	if h.Status != StatusDegraded || h.UsingPrimary || !strings.Contains(h.Message, "refused") {
		t.Errorf("Health = %+v; want degraded, reason refused", h)
	}
	if info := m.Info(); !info.Recovering || info.FallbackReason == "" || info.Host != "127.0.0.1" || info.User != "app" {
		t.Errorf("Info = %+v; want recovering with a reason, showing the target it retries", info)
	}
	assertLogged(t, logs, "Primary database connection failed. Falling back to in-memory storage.", "refused")

	strict, _ := newTestManager(t, envConfig(t, "DATABASE_URL", url, "DB_FALLBACK", "none"))
	err := strict.Init(ctx)
	var ce *ConnectionError
	if !errors.Is(err, ErrUnavailable) || !errors.As(err, &ce) || ce.Reason != ReasonRefused {
		t.Fatalf("Init with DB_FALLBACK=none = %v; want a refused *ConnectionError", err)
	}
	for _, out := range []string{err.Error(), logs.String()} {
		if strings.Contains(out, "s3cret-pw") {
			t.Errorf("password shown: %s", out)
		}
	}
}

func TestInitMisconfigurationFailsWhateverTheFallback(t *testing.T) {
	ctx := context.Background()
	url := "postgres://app:pw@" + refusedAddr(t) + "/app"
	cfg := envConfig(t, "DATABASE_URL", url, "AWS_REQUIRE_SSL", "true", "AWS_SSLROOTCERT", t.TempDir()+"/missing.pem")
	m, _ := newTestManager(t, cfg)
	err := m.Init(ctx)
	if err == nil || !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "missing.pem") {
		t.Fatalf("Init with a missing CA file = %v; want ErrConfig naming the file", err)
	}
	if again := m.Init(ctx); again != err {
		t.Errorf("second Init = %v; want the first result %v", again, err)
	}
	if _, err := m.Store().Get(ctx, "c", "k"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Store after failed Init: %v; want ErrUnavailable", err)
	}
}

func TestInitSilentServerReturnsWithinConnectTimeout(t *testing.T) {
	ctx := context.Background()
	url := "postgres://app:pw@" + silentServer(t) + "/app?sslmode=disable"
	m, _ := newTestManager(t, envConfig(t, "DATABASE_URL", url, "DB_CONNECT_TIMEOUT", "1"))
	start := time.Now()
	if err := m.Init(ctx); err != nil {
		t.Fatalf("Init: %v", err)
	}
	took := time.Since(start)
	t.Logf("Init against a silent server took %s (DB_CONNECT_TIMEOUT=1)", took)
	// Bounded by the connect timeout, not a multiple of it (a retry or a
	// second wait would take 2 s or more); the slack is for scheduling on
	// a busy machine under -race.
	if took > 1500*time.Millisecond {
		t.Errorf("Init took %s; want about DB_CONNECT_TIMEOUT (1 s), at most 1.5 s", took)
	}
	if h := m.Health(ctx); h.Status != StatusDegraded || !strings.Contains(h.Message, "timeout") {
		t.Errorf("Health = %+v; want degraded by timeout", h)
	}
}

func TestInitConcurrentCallsInitialiseOnce(t *testing.T) {
	ctx := context.Background()
	m, logs := newTestManager(t, envConfig(t, "DATABASE_URL", pgtest.URL(t)))
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := m.Init(ctx); err != nil {
				t.Errorf("Init: %v", err)
			}
		}()
	}
	wg.Wait()
	if n := strings.Count(logs.String(), "Primary database initialized successfully"); n != 1 {
		t.Errorf("initialised %d times; want once", n)
	}
}

func TestStoreBeforeInitAndAfterClose(t *testing.T) {
	ctx := context.Background()
	m, _ := newTestManager(t, envConfig(t, "DATABASE_URL", "memory://"))
	s := m.Store()
	if _, err := s.Get(ctx, "c", "k"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Get before Init: %v; want ErrUnavailable", err)
	}
	if err := m.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, "c", "k", []byte(`1`)); err != nil {
		t.Fatalf("Put through the handle taken before Init: %v", err)
	}
	if err := m.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "c", "k"); !errors.Is(err, ErrClosed) {
		t.Errorf("Get after Close: %v; want ErrClosed", err)
	}
	if err := m.Init(ctx); err != nil {
		t.Errorf("Init after Close returned %v; want the first result (nil)", err)
	}
	if h := m.Health(ctx); h.Status != StatusUnhealthy {
		t.Errorf("Health after Close = %+v; want unhealthy", h)
	}
}

func TestDefaultIsOneManager(t *testing.T) {
	t.Setenv("DATABASE_URL", "memory://")
	SetDefault(nil)
	t.Cleanup(func() { SetDefault(nil) })
	got := make(chan *Manager, 10)
	for range 10 {
		go func() { got <- Default() }()
	}
	first := <-got
	for range 9 {
		if m := <-got; m != first {
			t.Fatal("Default returned two different Managers")
		}
	}
	if err := first.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer first.Close(context.Background())
	other := New(DefaultConfig())
	SetDefault(other)
	if Default() != other {
		t.Error("SetDefault did not replace the default")
	}
}

func TestDefaultReportsConfigErrorAtInit(t *testing.T) {
	t.Setenv("AWS_DB_PORT", "abc")
	SetDefault(nil)
	t.Cleanup(func() { SetDefault(nil) })
	err := Default().Init(context.Background())
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "AWS_DB_PORT") {
		t.Fatalf("Init of a Default with AWS_DB_PORT=abc = %v; want ErrConfig naming the variable", err)
	}
}

func TestHealthHandlerJSON(t *testing.T) {
	ctx := context.Background()
	m, _ := newTestManager(t, envConfig(t, "DATABASE_URL", pgtest.URL(t)))
	if err := m.Init(ctx); err != nil {
		t.Fatal(err)
	}
	h := HealthHandler(m, "Gateway Management API", "1.0.0")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/health", nil))
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, content type %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	var got map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"status": "healthy", "service": "Gateway Management API", "version": "1.0.0",
		"database": map[string]any{"status": "healthy", "type": "postgresql",
			"message": "Primary database connection is healthy", "using_primary": true},
	}
	if a, b := mustJSON(t, got), mustJSON(t, want); a != b {
		t.Errorf("health JSON = %s; want %s", a, b)
	}

	if err := m.Close(ctx); err != nil {
		t.Fatal(err)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/health", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("status after Close = %d; want 503", rec.Code)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestInitWithCancelledContextDecidesNothing(t *testing.T) {
	m, _ := newTestManager(t, envConfig(t, "DATABASE_URL", pgtest.URL(t)))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := m.Init(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Init with a cancelled context = %v; want context.Canceled", err)
	}
	if info := m.Info(); info.Recovering || info.UsingPrimary {
		t.Fatalf("Info after a cancelled Init = %+v; want nothing decided", info)
	}
	if err := m.Init(context.Background()); err != nil {
		t.Fatalf("Init after a cancelled one: %v", err)
	}
	if !m.Info().UsingPrimary {
		t.Error("the second Init did not reach the primary")
	}
}

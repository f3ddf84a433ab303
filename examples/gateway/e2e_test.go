package main

// End-to-end tests: build the gateway binary once, start it as a real
// process with PORT and DATABASE_URL set, and drive it over HTTP, with
// memory and with a real PostgreSQL from internal/pgtest.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gatewaykit/dbmanager/internal/pgtest"
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gateway-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := pgtest.Main(m)
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

var (
	binDir    string // made by TestMain, removed when the tests end
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// gatewayBinary builds the gateway once per test run and returns its path.
func gatewayBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		goCmd, err := exec.LookPath("go")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(binDir, "gateway")
		out, err := exec.Command(goCmd, "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// gatewayProc is one running gateway process.
type gatewayProc struct {
	t    *testing.T
	cmd  *exec.Cmd
	base string // http://127.0.0.1:port
	logs *lockedBuffer
	done chan struct{} // closed when the process has exited
	err  error         // cmd.Wait's result, once done
}

// startGateway starts the binary with a clean environment (PATH, HOME and
// the given variables, so nothing from the test's own environment picks a
// database) and waits until /health answers.
func startGateway(t *testing.T, env ...string) *gatewayProc {
	t.Helper()
	port := freePort(t)
	cmd := exec.Command(gatewayBinary(t))
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "PORT=" + strconv.Itoa(port), "AWS_EC2_METADATA_DISABLED=true"}, env...)
	g := &gatewayProc{t: t, cmd: cmd, base: "http://127.0.0.1:" + strconv.Itoa(port), logs: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stdout = g.logs
	cmd.Stderr = g.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { g.err = cmd.Wait(); close(g.done) }()
	t.Cleanup(func() {
		select {
		case <-g.done:
		default:
			_ = cmd.Process.Kill()
			<-g.done
		}
		if t.Failed() {
			t.Logf("gateway log (%s):\n%s", g.base, g.logs.String())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-g.done:
			t.Fatalf("gateway exited before serving: %v\n%s", g.err, g.logs.String())
		default:
		}
		resp, err := http.Get(g.base + "/health")
		if err == nil {
			resp.Body.Close()
			return g
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway did not answer /health within 20 s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM and checks that the process exits with code 0.
func (g *gatewayProc) stop() {
	g.t.Helper()
	if err := g.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		g.t.Fatal(err)
	}
	select {
	case <-g.done:
	case <-time.After(20 * time.Second):
		g.t.Fatal("gateway did not exit within 20 s of SIGTERM")
	}
	if g.err != nil {
		g.t.Fatalf("gateway exit after SIGTERM: %v, want exit code 0", g.err)
	}
	if !strings.Contains(g.logs.String(), "stopped") {
		g.t.Errorf("no shutdown log line")
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// call sends a request (body: nil, a string, or anything else as JSON) with
// optional header pairs.
func (g *gatewayProc) call(method, path string, body any, headers ...string) response {
	g.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			g.t.Fatal(err)
		}
		r = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(g.t.Context(), method, g.base+path, r)
	if err != nil {
		g.t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		g.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		g.t.Fatal(err)
	}
	return response{Code: resp.StatusCode, Header: resp.Header, Body: b}
}

// healthBody is the seed's health JSON.
type healthBody struct {
	Status   string `json:"status"`
	Service  string `json:"service"`
	Version  string `json:"version"`
	Database struct {
		Status       string `json:"status"`
		Type         string `json:"type"`
		Message      string `json:"message"`
		UsingPrimary bool   `json:"using_primary"`
	} `json:"database"`
}

// health fetches /health and checks its exact shape: these keys and no
// others, with the service's name and version.
func (g *gatewayProc) health() (int, healthBody) {
	g.t.Helper()
	r := g.call("GET", "/health", nil)
	var top map[string]json.RawMessage
	if err := json.Unmarshal(r.Body, &top); err != nil {
		g.t.Fatalf("health is not a JSON object: %s", r.Body)
	}
	if keys := slices.Sorted(maps.Keys(top)); !slices.Equal(keys, []string{"database", "service", "status", "version"}) {
		g.t.Errorf("health keys %v, want database, service, status, version: %s", keys, r.Body)
	}
	var db map[string]json.RawMessage
	if err := json.Unmarshal(top["database"], &db); err != nil {
		g.t.Fatalf("health.database is not an object: %s", r.Body)
	}
	if keys := slices.Sorted(maps.Keys(db)); !slices.Equal(keys, []string{"message", "status", "type", "using_primary"}) {
		g.t.Errorf("health.database keys %v, want message, status, type, using_primary: %s", keys, r.Body)
	}
	var h healthBody
	if err := json.Unmarshal(r.Body, &h); err != nil {
		g.t.Fatalf("health: %v: %s", err, r.Body)
	}
	if h.Service != "Gateway Management API" || h.Version != "1.0.0" || h.Status != h.Database.Status || h.Database.Message == "" {
		g.t.Errorf("health %s: want service %q, version %q, a message, and status = database.status", r.Body, "Gateway Management API", "1.0.0")
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		g.t.Errorf("health Content-Type %q", ct)
	}
	return r.Code, h
}

// wantHealth checks the health status, backend and HTTP code.
func (g *gatewayProc) wantHealth(status, backend string, primary bool) {
	g.t.Helper()
	code, h := g.health()
	if code != http.StatusOK || h.Status != status || h.Database.Type != backend || h.Database.UsingPrimary != primary {
		g.t.Fatalf("health %d %+v, want 200 %s on %s (using_primary %v)", code, h, status, backend, primary)
	}
}

// crudFlow drives the whole API over HTTP and returns the id of an API it
// leaves stored (at version 2, named "orders v2").
func crudFlow(t *testing.T, g *gatewayProc) string {
	t.Helper()
	created := g.call("POST", "/apis", validBody())
	if created.Code != http.StatusCreated {
		t.Fatalf("POST /apis: %d %s", created.Code, created.Body)
	}
	a := created.api(t)
	if created.Header.Get("Location") != "/apis/"+a.ID || created.Header.Get("ETag") != `"1"` || a.Version != 1 ||
		!slices.Equal(a.Methods, []string{"GET"}) || !a.Enabled || a.CreatedAt.IsZero() {
		t.Fatalf("POST /apis: headers %v body %s", created.Header, created.Body)
	}
	if r := g.call("GET", "/apis/"+a.ID, nil); r.Code != 200 || r.api(t).Name != "orders" || r.Header.Get("ETag") != `"1"` {
		t.Fatalf("GET: %d %s", r.Code, r.Body)
	}
	if r := g.call("PUT", "/apis/"+a.ID, with("name", "orders v2", "methods", []string{"GET", "POST"}), "If-Match", `"1"`); r.Code != 200 || r.api(t).Version != 2 || r.Header.Get("ETag") != `"2"` {
		t.Fatalf("PUT If-Match 1: %d %s", r.Code, r.Body)
	}
	g.call("PUT", "/apis/"+a.ID, with("name", "stale"), "If-Match", `W/"1"`).wantError(t, 412, "version")
	g.call("DELETE", "/apis/"+a.ID, nil, "If-Match", "1").wantError(t, 412, "version")

	// A second API, then paging through both one at a time.
	b := g.call("POST", "/apis", with("name", "billing", "base_path", "/v1/billing")).api(t)
	var seen []string
	cursor := ""
	for range 5 {
		r := g.call("GET", "/apis?limit=1&cursor="+cursor, nil)
		var page listPage
		if err := json.Unmarshal(r.Body, &page); r.Code != 200 || err != nil {
			t.Fatalf("GET /apis: %d %s", r.Code, r.Body)
		}
		for _, it := range page.Items {
			seen = append(seen, it.ID)
		}
		if cursor = page.NextCursor; cursor == "" {
			break
		}
	}
	want := []string{a.ID, b.ID}
	slices.Sort(want)
	if !slices.Equal(seen, want) {
		t.Fatalf("paged ids %v, want %v", seen, want)
	}

	if r := g.call("DELETE", "/apis/"+b.ID, nil, "If-Match", `"1"`); r.Code != 204 {
		t.Fatalf("DELETE: %d %s", r.Code, r.Body)
	}
	g.call("GET", "/apis/"+b.ID, nil).wantError(t, 404, "not found")
	g.call("DELETE", "/apis/"+b.ID, nil).wantError(t, 404, "not found")

	// The errors a client can provoke.
	g.call("POST", "/apis", `{"name":`).wantError(t, 400, "malformed JSON")
	g.call("POST", "/apis", without("upstream_url")).wantError(t, 400, "upstream_url")
	g.call("POST", "/apis", with("base_path", "v1")).wantError(t, 400, "base_path")
	g.call("POST", "/apis", with("colour", "red")).wantError(t, 400, "unknown field")
	g.call("POST", "/apis", with("name", strings.Repeat("x", maxBodyBytes))).wantError(t, 413)
	g.call("GET", "/apis/"+newID(), nil).wantError(t, 404)
	g.call("GET", "/apis?limit=0", nil).wantError(t, 400, "limit")
	return a.ID
}

func TestE2EMemory(t *testing.T) {
	g := startGateway(t)
	g.wantHealth("degraded", "in-memory", false)
	crudFlow(t, g)
	g.stop()
	if !strings.Contains(g.logs.String(), "No database URL configured") {
		t.Errorf("the log does not say why it serves from memory")
	}
}

func TestE2EPostgreSQLSurvivesRestart(t *testing.T) {
	dsn := pgtest.URL(t)
	g := startGateway(t, "DATABASE_URL="+dsn)
	g.wantHealth("healthy", "postgresql", true)
	if _, h := g.health(); h.Database.Message != "Primary database connection is healthy" {
		t.Errorf("health message %q", h.Database.Message)
	}
	id := crudFlow(t, g)
	g.stop()

	g2 := startGateway(t, "DATABASE_URL="+dsn)
	r := g2.call("GET", "/apis/"+id, nil)
	if r.Code != 200 || r.api(t).Name != "orders v2" || r.api(t).Version != 2 {
		t.Fatalf("after a restart: %d %s, want the API at version 2", r.Code, r.Body)
	}
	g2.stop()
	if strings.Contains(g.logs.String()+g2.logs.String(), passwordOf(t, dsn)) {
		t.Error("the gateway logged the database password")
	}
}

func TestE2EFallbackThenRecovery(t *testing.T) {
	srv := pgtest.NewServer(t)
	dsn := srv.URL(t)
	srv.Stop(t)

	g := startGateway(t, "DATABASE_URL="+dsn)
	g.wantHealth("degraded", "in-memory", false)
	if body := g.call("GET", "/health", nil).Body; strings.Contains(string(body), passwordOf(t, dsn)) {
		t.Errorf("health shows the database password: %s", body)
	}
	if !strings.Contains(g.logs.String(), "Primary database connection failed. Falling back to in-memory storage.") {
		t.Errorf("the log lacks the seed's fallback message")
	}
	a := g.call("POST", "/apis", validBody())
	if a.Code != http.StatusCreated {
		t.Fatalf("POST during the outage: %d %s", a.Code, a.Body)
	}
	id := a.api(t).ID

	srv.Start(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, h := g.health()
		if h.Status == "healthy" && h.Database.Type == "postgresql" && h.Database.UsingPrimary {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("30 s after PostgreSQL came back, health is still %+v", h)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if r := g.call("GET", "/apis/"+id, nil); r.Code != 200 || r.api(t).Name != "orders" {
		t.Fatalf("the API written during the outage, after recovery: %d %s", r.Code, r.Body)
	}
	g.stop()

	// It is in PostgreSQL, not only in the old process's memory.
	g2 := startGateway(t, "DATABASE_URL="+dsn)
	g2.wantHealth("healthy", "postgresql", true)
	if r := g2.call("GET", "/apis/"+id, nil); r.Code != 200 {
		t.Fatalf("after recovery and restart: %d %s", r.Code, r.Body)
	}
	g2.stop()
	if strings.Contains(g.logs.String()+g2.logs.String(), passwordOf(t, dsn)) {
		t.Error("the gateway logged the database password")
	}
}

// passwordOf returns the password in a postgres:// URL.
func passwordOf(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal("unparsable database URL")
	}
	pw, ok := u.User.Password()
	if !ok || pw == "" {
		t.Fatal("database URL without a password")
	}
	return pw
}

// TestE2EOutageWhileOnPostgreSQL: PostgreSQL goes away under a running
// gateway. Calls fail with 503 and Retry-After (the seed's "operation fails
// with proper error"), nothing is half-written, and the gateway serves
// again once PostgreSQL is back.
func TestE2EOutageWhileOnPostgreSQL(t *testing.T) {
	srv := pgtest.NewServer(t)
	g := startGateway(t, "DATABASE_URL="+srv.URL(t))
	g.wantHealth("healthy", "postgresql", true)
	id := g.call("POST", "/apis", validBody()).api(t).ID

	srv.Stop(t)
	for _, r := range []response{
		g.call("GET", "/apis", nil),
		g.call("POST", "/apis", with("name", "during the outage")),
		g.call("PUT", "/apis/"+id, with("name", "changed during the outage"), "If-Match", `"1"`),
	} {
		r.wantError(t, http.StatusServiceUnavailable, "unavailable")
		if r.Header.Get("Retry-After") == "" {
			t.Error("503 without Retry-After")
		}
	}
	if code, h := g.health(); code != http.StatusServiceUnavailable || h.Status != "unhealthy" {
		t.Errorf("health during the outage: %d %+v, want 503 unhealthy", code, h)
	}

	srv.Start(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := g.call("GET", "/apis", nil)
		if r.Code == http.StatusOK {
			var page listPage
			if err := json.Unmarshal(r.Body, &page); err != nil || len(page.Items) != 1 || page.Items[0].Version != 1 || page.Items[0].Name != "orders" {
				t.Fatalf("after the outage: %s, want the one API unchanged at version 1", r.Body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("30 s after PostgreSQL came back, GET /apis is still %d %s", r.Code, r.Body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	g.wantHealth("healthy", "postgresql", true)
	g.stop()
}

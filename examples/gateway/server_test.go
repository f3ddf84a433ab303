package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/gatewaykit/dbmanager"
)

// fakeHealth stands in for dbmanager.HealthHandler in handler tests.
var fakeHealth = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "healthy"})
})

// testServer is the handler over a fresh MemStore, with its log in a buffer.
type testServer struct {
	t     *testing.T
	h     http.Handler
	store dbmanager.Store
	log   *lockedBuffer
}

func newTestServer(t *testing.T) *testServer {
	t.Helper()
	return newTestServerOn(t, dbmanager.NewMemStore())
}

func newTestServerOn(t *testing.T, store dbmanager.Store) *testServer {
	t.Helper()
	buf := &lockedBuffer{}
	logger := slog.New(slog.NewTextHandler(buf, nil))
	return &testServer{t: t, h: newServer(store, fakeHealth, logger), store: store, log: buf}
}

// response is what a request got back.
type response struct {
	Code   int
	Header http.Header
	Body   []byte
}

// do sends a request with the body (a string, or anything else as JSON) and
// optional header pairs.
func (s *testServer) do(method, path string, body any, headers ...string) response {
	s.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			s.t.Fatal(err)
		}
		r = bytes.NewReader(j)
	}
	req := httptest.NewRequestWithContext(s.t.Context(), method, path, r)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	rec := httptest.NewRecorder()
	s.h.ServeHTTP(rec, req)
	return response{Code: rec.Code, Header: rec.Header(), Body: rec.Body.Bytes()}
}

// api decodes the body as an API.
func (r response) api(t *testing.T) API {
	t.Helper()
	var a API
	if err := json.Unmarshal(r.Body, &a); err != nil {
		t.Fatalf("body is not an API: %v: %s", err, r.Body)
	}
	return a
}

// wantError checks the status code and that the body is {"error": "..."}
// containing every fragment.
func (r response) wantError(t *testing.T, code int, fragments ...string) {
	t.Helper()
	if r.Code != code {
		t.Fatalf("status %d, want %d; body %s", r.Code, code, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var e map[string]any
	if err := json.Unmarshal(r.Body, &e); err != nil || len(e) != 1 {
		t.Fatalf(`body is not {"error": "..."}: %s`, r.Body)
	}
	msg, ok := e["error"].(string)
	if !ok || msg == "" {
		t.Fatalf(`body is not {"error": "..."}: %s`, r.Body)
	}
	for _, f := range fragments {
		if !strings.Contains(msg, f) {
			t.Errorf("error %q does not mention %q", msg, f)
		}
	}
}

func validBody() map[string]any {
	return map[string]any{"name": "orders", "base_path": "/v1/orders", "upstream_url": "http://orders.internal:8080"}
}

func with(kv ...any) map[string]any {
	b := validBody()
	for i := 0; i+1 < len(kv); i += 2 {
		b[kv[i].(string)] = kv[i+1]
	}
	return b
}

func without(field string) map[string]any {
	b := validBody()
	delete(b, field)
	return b
}

func TestCreateGetReplaceDelete(t *testing.T) {
	s := newTestServer(t)

	created := s.do("POST", "/apis", validBody())
	if created.Code != http.StatusCreated {
		t.Fatalf("POST: status %d: %s", created.Code, created.Body)
	}
	a := created.api(t)
	if !validID(a.ID) {
		t.Errorf("id %q is not 32 hex digits", a.ID)
	}
	if got := created.Header.Get("Location"); got != "/apis/"+a.ID {
		t.Errorf("Location %q, want /apis/%s", got, a.ID)
	}
	if got := created.Header.Get("ETag"); got != `"1"` {
		t.Errorf(`ETag %q, want "1"`, got)
	}
	want := APISpec{Name: "orders", BasePath: "/v1/orders", UpstreamURL: "http://orders.internal:8080", Methods: []string{"GET"}, RateLimitPerMinute: 0, Enabled: true}
	if a.Version != 1 || !apiSpecEqual(a.APISpec, want) || a.CreatedAt.IsZero() || !a.UpdatedAt.Equal(a.CreatedAt) {
		t.Errorf("created %+v, want spec %+v, version 1, created_at = updated_at", a, want)
	}

	got := s.do("GET", "/apis/"+a.ID, nil)
	if got.Code != 200 || got.Header.Get("ETag") != `"1"` {
		t.Fatalf("GET: status %d ETag %q: %s", got.Code, got.Header.Get("ETag"), got.Body)
	}
	if g := got.api(t); !apiSpecEqual(g.APISpec, want) || g.ID != a.ID || !g.CreatedAt.Equal(a.CreatedAt) {
		t.Errorf("GET %+v, want %+v", g, a)
	}

	replaced := s.do("PUT", "/apis/"+a.ID, with("methods", []string{"GET", "POST"}, "rate_limit_per_minute", 600, "enabled", false), "If-Match", `"1"`)
	if replaced.Code != 200 || replaced.Header.Get("ETag") != `"2"` {
		t.Fatalf("PUT: status %d ETag %q: %s", replaced.Code, replaced.Header.Get("ETag"), replaced.Body)
	}
	r := replaced.api(t)
	want2 := APISpec{Name: "orders", BasePath: "/v1/orders", UpstreamURL: "http://orders.internal:8080", Methods: []string{"GET", "POST"}, RateLimitPerMinute: 600, Enabled: false}
	if r.Version != 2 || !apiSpecEqual(r.APISpec, want2) || !r.CreatedAt.Equal(a.CreatedAt) || r.UpdatedAt.Before(a.UpdatedAt) {
		t.Errorf("PUT %+v, want spec %+v, version 2, same created_at", r, want2)
	}
	// PUT replaces: fields left out go back to their defaults.
	again := s.do("PUT", "/apis/"+a.ID, validBody()).api(t)
	if again.Version != 3 || !apiSpecEqual(again.APISpec, want) {
		t.Errorf("PUT without optional fields: %+v, want defaults %+v at version 3", again, want)
	}

	if del := s.do("DELETE", "/apis/"+a.ID, nil); del.Code != http.StatusNoContent || len(del.Body) != 0 {
		t.Fatalf("DELETE: status %d body %q", del.Code, del.Body)
	}
	s.do("GET", "/apis/"+a.ID, nil).wantError(t, 404, "not found")
	s.do("DELETE", "/apis/"+a.ID, nil).wantError(t, 404, "not found")
	s.do("PUT", "/apis/"+a.ID, validBody()).wantError(t, 404, "not found")
}

func apiSpecEqual(a, b APISpec) bool {
	return a.Name == b.Name && a.BasePath == b.BasePath && a.UpstreamURL == b.UpstreamURL &&
		slices.Equal(a.Methods, b.Methods) && a.RateLimitPerMinute == b.RateLimitPerMinute && a.Enabled == b.Enabled
}

func TestBadRequests(t *testing.T) {
	tests := []struct {
		name      string
		body      any
		code      int
		fragments []string
	}{
		{"malformed JSON", `{"name": "x",`, 400, []string{"malformed JSON"}},
		{"not JSON", `name=x`, 400, []string{"malformed JSON"}},
		{"empty body", ``, 400, []string{"empty"}},
		{"array", `[]`, 400, []string{"JSON object"}},
		{"trailing data", `{"name":"a","base_path":"/a","upstream_url":"http://a"} {}`, 400, []string{"after the JSON object"}},
		{"unknown field", with("upstream", "x"), 400, []string{"unknown field", "upstream"}},
		{"name missing", without("name"), 400, []string{"name", "required"}},
		{"name null", with("name", nil), 400, []string{"name", "required"}},
		{"name empty", with("name", ""), 400, []string{"name"}},
		{"name blank", with("name", "   "), 400, []string{"name", "blank"}},
		{"name too long", with("name", strings.Repeat("n", maxNameLen+1)), 400, []string{"name", "at most"}},
		{"name a number", with("name", 7), 400, []string{"name", "a string"}},
		{"base_path missing", without("base_path"), 400, []string{"base_path", "required"}},
		{"base_path relative", with("base_path", "v1/orders"), 400, []string{"base_path", `start with "/"`}},
		{"base_path with query", with("base_path", "/v1?x=1"), 400, []string{"base_path"}},
		{"base_path with space", with("base_path", "/v1 x"), 400, []string{"base_path"}},
		{"upstream_url missing", without("upstream_url"), 400, []string{"upstream_url", "required"}},
		{"upstream_url relative", with("upstream_url", "/orders"), 400, []string{"upstream_url", "absolute"}},
		{"upstream_url ftp", with("upstream_url", "ftp://files.internal"), 400, []string{"upstream_url", "http or https"}},
		{"upstream_url no host", with("upstream_url", "http://"), 400, []string{"upstream_url", "host"}},
		{"upstream_url garbage", with("upstream_url", "http://a b"), 400, []string{"upstream_url"}},
		{"methods empty", with("methods", []string{}), 400, []string{"methods", "at least one"}},
		{"methods lower-case", with("methods", []string{"GET", "post"}), 400, []string{"methods[1]", `"post"`}},
		{"methods unknown", with("methods", []string{"FETCH"}), 400, []string{"methods[0]", `"FETCH"`}},
		{"methods duplicate", with("methods", []string{"GET", "GET"}), 400, []string{"methods[1]", "twice"}},
		{"methods not a list", with("methods", "GET"), 400, []string{"methods", "an array"}},
		{"rate limit negative", with("rate_limit_per_minute", -1), 400, []string{"rate_limit_per_minute", "between 0"}},
		{"rate limit fraction", with("rate_limit_per_minute", 1.5), 400, []string{"rate_limit_per_minute", "an integer"}},
		{"rate limit string", with("rate_limit_per_minute", "10"), 400, []string{"rate_limit_per_minute", "an integer"}},
		{"enabled string", with("enabled", "yes"), 400, []string{"enabled", "true or false"}},
		{"id chosen by client", with("id", "0123456789abcdef0123456789abcdef"), 400, []string{"id"}},
		{"too large", with("name", strings.Repeat("x", maxBodyBytes)), 413, []string{"larger than"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestServer(t)
			s.do("POST", "/apis", tc.body).wantError(t, tc.code, tc.fragments...)
			// Nothing was stored.
			page, err := s.store.List(t.Context(), apisCollection, dbmanager.ListOptions{})
			if err != nil || len(page.Records) != 0 {
				t.Errorf("after a rejected POST the store holds %d records (err %v), want 0", len(page.Records), err)
			}
		})
	}
}

func TestBadPutLeavesAPIUnchanged(t *testing.T) {
	s := newTestServer(t)
	a := s.do("POST", "/apis", validBody()).api(t)
	s.do("PUT", "/apis/"+a.ID, with("upstream_url", "nope")).wantError(t, 400, "upstream_url")
	s.do("PUT", "/apis/"+a.ID, with("id", newID())).wantError(t, 400, "id", "does not match")
	s.do("PUT", "/apis/"+a.ID, `{"name":`).wantError(t, 400, "malformed")
	s.do("PUT", "/apis/"+a.ID, validBody(), "If-Match", "three").wantError(t, 400, "If-Match")
	if got := s.do("GET", "/apis/"+a.ID, nil).api(t); got.Version != 1 {
		t.Errorf("after rejected PUTs the API is at version %d, want 1", got.Version)
	}
	// The body a GET returned can be sent back as it is.
	body := s.do("GET", "/apis/"+a.ID, nil).Body
	if r := s.do("PUT", "/apis/"+a.ID, string(body), "If-Match", `"1"`); r.Code != 200 {
		t.Errorf("PUT of the GET body: status %d: %s", r.Code, r.Body)
	}
}

func TestUnknownID(t *testing.T) {
	s := newTestServer(t)
	for _, id := range []string{newID(), "nope", "0123456789ABCDEF0123456789ABCDEF", strings.Repeat("a", 600)} {
		s.do("GET", "/apis/"+id, nil).wantError(t, 404, "API not found")
		s.do("PUT", "/apis/"+id, validBody()).wantError(t, 404, "API not found")
		s.do("PUT", "/apis/"+id, validBody(), "If-Match", `"1"`).wantError(t, 404, "API not found")
		s.do("DELETE", "/apis/"+id, nil).wantError(t, 404, "API not found")
		s.do("DELETE", "/apis/"+id, nil, "If-Match", `"1"`).wantError(t, 404, "API not found")
	}
}

func TestIfMatch(t *testing.T) {
	s := newTestServer(t)
	a := s.do("POST", "/apis", validBody()).api(t)
	path := "/apis/" + a.ID
	// Every accepted spelling of the current version works.
	for i, tag := range []string{`"1"`, `2`, `W/"3"`, ` "4" `, `*`} {
		r := s.do("PUT", path, validBody(), "If-Match", tag)
		if r.Code != 200 || r.api(t).Version != int64(i+2) {
			t.Fatalf("If-Match %s: status %d: %s", tag, r.Code, r.Body)
		}
	}
	// A stale version is 412 and changes nothing, for PUT and DELETE.
	s.do("PUT", path, with("name", "stale"), "If-Match", `"5"`).wantError(t, 412, "version")
	s.do("DELETE", path, nil, "If-Match", `W/"1"`).wantError(t, 412, "version")
	if got := s.do("GET", path, nil).api(t); got.Version != 6 || got.Name != "orders" {
		t.Fatalf("after stale writes: %+v, want version 6 named orders", got)
	}
	for _, bad := range []string{`"abc"`, `"0"`, `-1`, `"1", "2"`, `W/`} {
		s.do("PUT", path, validBody(), "If-Match", bad).wantError(t, 400, "If-Match")
		s.do("DELETE", path, nil, "If-Match", bad).wantError(t, 400, "If-Match")
	}
	if r := s.do("DELETE", path, nil, "If-Match", `"6"`); r.Code != 204 {
		t.Fatalf("DELETE with the current version: status %d: %s", r.Code, r.Body)
	}
}

func TestConcurrentPutsWithSameVersion(t *testing.T) {
	s := newTestServer(t)
	a := s.do("POST", "/apis", validBody()).api(t)
	const writers = 8
	var ok, stale atomic.Int32
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			r := s.do("PUT", "/apis/"+a.ID, with("name", fmt.Sprint("writer ", i)), "If-Match", `"1"`)
			switch r.Code {
			case 200:
				ok.Add(1)
			case 412:
				stale.Add(1)
			default:
				t.Errorf("status %d: %s", r.Code, r.Body)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 1 || stale.Load() != writers-1 {
		t.Errorf("%d PUTs won and %d got 412; want exactly 1 winner", ok.Load(), stale.Load())
	}
}

func TestListPaging(t *testing.T) {
	s := newTestServer(t)
	var ids []string
	for i := range 25 {
		ids = append(ids, s.do("POST", "/apis", with("name", fmt.Sprint("api ", i))).api(t).ID)
	}
	slices.Sort(ids)

	var got []string
	cursor, pages := "", 0
	for {
		path := "/apis?limit=10"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		r := s.do("GET", path, nil)
		if r.Code != 200 {
			t.Fatalf("GET %s: status %d: %s", path, r.Code, r.Body)
		}
		var page struct {
			Items      []API   `json:"items"`
			NextCursor *string `json:"next_cursor"`
		}
		if err := json.Unmarshal(r.Body, &page); err != nil || page.NextCursor == nil || page.Items == nil {
			t.Fatalf(`page is not {"items":[...],"next_cursor":"..."}: %s`, r.Body)
		}
		pages++
		for _, a := range page.Items {
			got = append(got, a.ID)
		}
		if cursor = *page.NextCursor; cursor == "" {
			break
		}
		if pages > 5 {
			t.Fatal("paging does not end")
		}
	}
	if pages != 3 || !slices.Equal(got, ids) {
		t.Errorf("%d pages with ids %v, want 3 pages with %v", pages, got, ids)
	}

	// Without limit: everything (default page size 100) on one page.
	var all listPage
	if err := json.Unmarshal(s.do("GET", "/apis", nil).Body, &all); err != nil || len(all.Items) != 25 || all.NextCursor != "" {
		t.Errorf("GET /apis: %d items, next %q (err %v), want 25 and no cursor", len(all.Items), all.NextCursor, err)
	}
	for _, bad := range []string{"0", "-1", "x", "1001", "1.5"} {
		s.do("GET", "/apis?limit="+bad, nil).wantError(t, 400, "limit")
	}
	s.do("GET", "/apis?cursor=zz", nil).wantError(t, 400, "cursor")
}

func TestEmptyListIsAnArray(t *testing.T) {
	s := newTestServer(t)
	r := s.do("GET", "/apis", nil)
	if r.Code != 200 || strings.TrimSpace(string(r.Body)) != `{"items":[],"next_cursor":""}` {
		t.Errorf("empty list: status %d body %s", r.Code, r.Body)
	}
}

func TestRoutingErrorsAreJSON(t *testing.T) {
	s := newTestServer(t)
	r := s.do("PATCH", "/apis", nil)
	r.wantError(t, 405, "PATCH")
	if r.Header.Get("Allow") == "" {
		t.Error("405 without Allow header")
	}
	s.do("POST", "/apis/"+newID(), validBody()).wantError(t, 405, "POST")
	s.do("DELETE", "/health", nil).wantError(t, 405)
	s.do("GET", "/nowhere", nil).wantError(t, 404, "/nowhere")
	if r := s.do("GET", "/health", nil); r.Code != 200 {
		t.Errorf("GET /health: status %d", r.Code)
	}
}

func TestRequestsAreLogged(t *testing.T) {
	s := newTestServer(t)
	s.do("GET", "/apis/"+newID(), nil)
	line := s.log.String()
	for _, want := range []string{"msg=request", "method=GET", "path=/apis/", "status=404", "duration="} {
		if !strings.Contains(line, want) {
			t.Errorf("log %q lacks %q", line, want)
		}
	}
}

// flakyStore is a MemStore that fails every call with ErrUnavailable while
// down is set, as a PostgreSQL store does during an outage.
type flakyStore struct {
	*dbmanager.MemStore
	down atomic.Bool
}

func (f *flakyStore) fail(op string) error {
	return &dbmanager.OpError{Op: op, Collection: apisCollection, Err: fmt.Errorf("%w: connection refused", dbmanager.ErrUnavailable)}
}

func (f *flakyStore) Get(ctx context.Context, c, k string) (dbmanager.Record, error) {
	if f.down.Load() {
		return dbmanager.Record{}, f.fail("get")
	}
	return f.MemStore.Get(ctx, c, k)
}

func (f *flakyStore) Put(ctx context.Context, c, k string, v []byte, opts ...dbmanager.WriteOption) (dbmanager.Record, error) {
	if f.down.Load() {
		return dbmanager.Record{}, f.fail("put")
	}
	return f.MemStore.Put(ctx, c, k, v, opts...)
}

func (f *flakyStore) Delete(ctx context.Context, c, k string, opts ...dbmanager.WriteOption) error {
	if f.down.Load() {
		return f.fail("delete")
	}
	return f.MemStore.Delete(ctx, c, k, opts...)
}

func (f *flakyStore) List(ctx context.Context, c string, o dbmanager.ListOptions) (dbmanager.Page, error) {
	if f.down.Load() {
		return dbmanager.Page{}, f.fail("list")
	}
	return f.MemStore.List(ctx, c, o)
}

func TestStoreOutageIs503(t *testing.T) {
	store := &flakyStore{MemStore: dbmanager.NewMemStore()}
	s := newTestServerOn(t, store)
	a := s.do("POST", "/apis", validBody()).api(t)
	path := "/apis/" + a.ID

	store.down.Store(true)
	for _, r := range []response{
		s.do("POST", "/apis", validBody()),
		s.do("GET", "/apis", nil),
		s.do("GET", path, nil),
		s.do("PUT", path, with("name", "changed")),
		s.do("PUT", path, with("name", "changed"), "If-Match", `"1"`),
		s.do("DELETE", path, nil),
	} {
		r.wantError(t, 503, "unavailable")
		if r.Header.Get("Retry-After") == "" {
			t.Error("503 without Retry-After")
		}
	}
	if strings.Contains(s.log.String(), "level=ERROR msg=\"store call failed\"") {
		t.Error("an outage was logged as an internal error")
	}
	store.down.Store(false)

	// Nothing was half-written: the one API is as it was.
	var page listPage
	if err := json.Unmarshal(s.do("GET", "/apis", nil).Body, &page); err != nil {
		t.Fatal(err)
	}
	if len(page.Items) != 1 || page.Items[0].Version != 1 || page.Items[0].Name != "orders" {
		t.Errorf("after the outage: %+v, want the one API at version 1", page.Items)
	}
}

// lockedBuffer is a bytes.Buffer safe for concurrent writers.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

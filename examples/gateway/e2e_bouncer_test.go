package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatewaykit/dbmanager/internal/pgtest"
)

// TestE2EBehindPgBouncerTransactionPooling: the gateway with the library's
// defaults and a DATABASE_URL that points at PgBouncer 1.18 in
// transaction pooling (which breaks pgx's default prepared statements):
// the whole API flow works, and 16 clients creating, reading, replacing
// and listing APIs at once get only 201 and 200, never a 500.
func TestE2EBehindPgBouncerTransactionPooling(t *testing.T) {
	dsn := pgtest.URL(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal("pgtest URL does not parse")
	}
	b := pgtest.NewPgBouncer(t, u.Host, pgtest.WithPoolMode("transaction"))
	g := startGateway(t, "DATABASE_URL="+b.URL(dsn))
	g.wantHealth("healthy", "postgresql", true)
	crudFlow(t, g)

	const clients, rounds = 16, 15
	var mu sync.Mutex
	codes := map[string]int{} // "POST 201", ...
	bodies := map[string]string{}
	count := func(method string, code int, body []byte) {
		mu.Lock()
		defer mu.Unlock()
		k := fmt.Sprintf("%s %d", method, code)
		codes[k]++
		if code != http.StatusOK && code != http.StatusCreated {
			bodies[k] = string(body)
		}
	}
	client := &http.Client{Timeout: 30 * time.Second}
	send := func(method, path string, body any, headers ...string) (int, []byte) {
		var r io.Reader
		if body != nil {
			j, _ := json.Marshal(body)
			r = bytes.NewReader(j)
		}
		req, _ := http.NewRequest(method, g.base+path, r)
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			count(method, 0, []byte(err.Error()))
			return 0, nil
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		count(method, resp.StatusCode, out)
		return resp.StatusCode, out
	}
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				code, body := send("POST", "/apis", with("name", fmt.Sprintf("api %d-%d", c, i)))
				var a API
				if code != http.StatusCreated || json.Unmarshal(body, &a) != nil {
					continue
				}
				send("GET", "/apis/"+a.ID, nil)
				send("PUT", "/apis/"+a.ID, with("name", fmt.Sprintf("api %d-%d v2", c, i)), "If-Match", `"1"`)
				send("GET", "/apis?limit=5", nil)
			}
		}()
	}
	wg.Wait()
	var keys []string
	for k := range codes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	t.Logf("%d clients × %d rounds through PgBouncer: %v", clients, rounds, codes)
	for _, k := range keys {
		if !strings.HasSuffix(k, " 200") && !strings.HasSuffix(k, " 201") {
			t.Errorf("%d × %s (e.g. %s)", codes[k], k, bodies[k])
		}
	}
	if codes["POST 201"] != clients*rounds || codes["PUT 200"] != clients*rounds {
		t.Errorf("not every create and replace succeeded: %v", codes)
	}
	g.wantHealth("healthy", "postgresql", true)
	g.stop()
	logs := g.logs.String()
	if !strings.Contains(logs, "PostgreSQL is reached through a connection pooler or proxy") {
		t.Errorf("the log does not say a pooler was found")
	}
	if strings.Contains(logs, passwordOf(t, dsn)) {
		t.Error("the gateway logged the database password")
	}
}

package main

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/gatewaykit/dbmanager"
)

// FuzzCreateAPI: whatever the body and If-Match header, the service
// answers 201 with an API that passes validation, or a 4xx JSON error and
// stores nothing; never a 5xx.
func FuzzCreateAPI(f *testing.F) {
	f.Add(`{"name":"orders","base_path":"/v1/orders","upstream_url":"http://orders.internal:8080"}`, `"1"`)
	f.Add(`{"name":"a","base_path":"/","upstream_url":"https://h","methods":["GET","POST"],"rate_limit_per_minute":0,"enabled":false}`, `W/"2"`)
	f.Add(`{"name":"x","base_path":"/x","upstream_url":"http://[::1]:80/p?q#f","methods":null}`, `*`)
	f.Add(`{"name":"\u0000","base_path":"/\u007f","upstream_url":"http://a b"}`, ``)
	f.Add(`[1,2]`, `3`)
	f.Add(`{"rate_limit_per_minute":1e3}`, `""`)
	f.Fuzz(func(t *testing.T, body, ifMatchHeader string) {
		store := dbmanager.NewMemStore()
		s := newTestServerOn(t, store)
		r := s.do("POST", "/apis", body)
		switch {
		case r.Code == http.StatusCreated:
			a := r.api(t)
			req := apiRequest{Name: &a.Name, BasePath: &a.BasePath, UpstreamURL: &a.UpstreamURL, Methods: &a.Methods, RateLimitPerMinute: &a.RateLimitPerMinute, Enabled: &a.Enabled}
			if _, err := req.spec(); err != nil {
				t.Fatalf("stored an API that fails validation (%v): %s", err, r.Body)
			}
			// PUT of the same body with any If-Match: 200, 400 or 412.
			p := s.do("PUT", "/apis/"+a.ID, body, "If-Match", ifMatchHeader)
			if p.Code != 200 && p.Code != 400 && p.Code != 412 {
				t.Fatalf("PUT with If-Match %q: %d %s", ifMatchHeader, p.Code, p.Body)
			}
		case r.Code >= 400 && r.Code < 500:
			var e errorBody
			if err := json.Unmarshal(r.Body, &e); err != nil || e.Error == "" {
				t.Fatalf("%d without a JSON error: %s", r.Code, r.Body)
			}
			page, err := store.List(t.Context(), apisCollection, dbmanager.ListOptions{})
			if err != nil || len(page.Records) != 0 {
				t.Fatalf("a rejected POST stored %d records", len(page.Records))
			}
		default:
			t.Fatalf("status %d for body %q: %s", r.Code, body, r.Body)
		}
	})
}

package main

import (
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/gatewaykit/dbmanager/internal/pgtest"
)

// metricLine finds the first sample of the Prometheus text that matches
// pattern (a regular expression over one line).
func metricLine(body, pattern string) string {
	return regexp.MustCompile(`(?m)^` + pattern + `.*$`).FindString(body)
}

// TestE2EMetricsOnPostgreSQL scrapes /metrics of the running binary on
// PostgreSQL: the pool's and the Store's metrics are there at once, under
// the names the Prometheus exporter gives OpenTelemetry's, and the
// database password is not.
func TestE2EMetricsOnPostgreSQL(t *testing.T) {
	dsn := pgtest.URL(t)
	g := startGateway(t, "DATABASE_URL="+dsn)
	g.wantHealth("healthy", "postgresql", true)
	crudFlow(t, g)
	r := g.call("GET", "/metrics", nil)
	if r.Code != http.StatusOK || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /metrics: %d %s", r.Code, r.Header.Get("Content-Type"))
	}
	body := string(r.Body)
	for _, pattern := range []string{
		`db_client_connection_count\{.*db_client_connection_state="idle"`,
		`db_client_connection_max\{.*db_client_connection_pool_name="`,
		`db_client_connection_pending_requests\{`,
		`db_client_connection_timeouts_total\{`,
		`db_client_connection_wait_time_seconds_bucket\{`,
		`db_client_connection_use_time_seconds_count\{`,
		`db_client_connection_create_time_seconds_count\{`,
		`db_client_operation_duration_seconds_bucket\{.*db_query_summary="SELECT dbmanager.records"`,
		`dbmanager_store_operations_total\{.*dbmanager_backend="postgresql".*dbmanager_operation="put".*dbmanager_outcome="ok"`,
		`dbmanager_store_operations_total\{.*dbmanager_outcome="not_found"`,
		`dbmanager_store_operation_duration_seconds_count\{`,
		`dbmanager_store_backend\{.*dbmanager_backend="postgresql".*\} 1`,
	} {
		if metricLine(body, pattern) == "" {
			t.Errorf("/metrics has no line matching %s", pattern)
		}
	}
	if strings.Contains(body, passwordOf(t, dsn)) {
		t.Error("/metrics shows the database password")
	}
	g.stop()
}

// TestE2EMetricsOnMemory: without a database, /metrics shows the Store
// serving from memory.
func TestE2EMetricsOnMemory(t *testing.T) {
	g := startGateway(t)
	g.call("POST", "/apis", validBody())
	body := string(g.call("GET", "/metrics", nil).Body)
	for _, pattern := range []string{
		`dbmanager_store_operations_total\{.*dbmanager_backend="in-memory".*dbmanager_operation="put"`,
		`dbmanager_store_backend\{.*dbmanager_backend="in-memory".*\} 1`,
	} {
		if metricLine(body, pattern) == "" {
			t.Errorf("/metrics has no line matching %s:\n%s", pattern, body)
		}
	}
	if strings.Contains(body, "db_client_connection_count") {
		t.Error("pool metrics without a pool")
	}
	g.stop()
}

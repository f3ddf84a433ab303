package dbmanager

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatewaykit/dbmanager/internal/pgtest"
)

// testHealthInfoAndSecrets: with one replica answering and one refusing,
// Health stays healthy and says which is out and why; Info and the health
// endpoint list both; nothing shows the password, neither the writer's
// nor a wrong one in DATABASE_READ_URL.
func testHealthInfoAndSecrets(t *testing.T, c *pgtest.Cluster) {
	pw := "pw-" + leakMarker
	role := "replica_" + strings.ToLower(leakMarker[:2]) + strconv.FormatInt(time.Now().UnixNano()%1e6, 10)
	c.Primary().Exec(t, "CREATE ROLE "+role+" LOGIN SUPERUSER PASSWORD "+sqlLiteral(pw))
	t.Cleanup(func() {
		if p := c.Primary(); p != nil {
			p.Exec(t, "DROP ROLE IF EXISTS "+role)
		}
	})
	db := c.Database(t) // dropped before the role that owns its schema
	good := c.Nodes()[1]
	refused := refusedAddr(t)
	writer := BuildURL(role, pw, c.Primary().Host(), c.Primary().Port(), db) + "?sslmode=disable"

	m, logs := newReplicaManager(t, []string{"DATABASE_URL", writer, "AWS_DB_READ_HOST", nodeAddr(good) + "," + refused})
	eventually(t, 10*time.Second, "one replica in rotation, the other out", func() bool {
		a, _ := replicaState(m, nodeAddr(good))
		b, _ := replicaState(m, refused)
		return a == ReplicaInRotation && b == ReplicaOutOfRotation
	})
	if _, err := m.Store().Put(t.Context(), "c", "k", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Store().Get(t.Context(), "c", "k"); err != nil {
		t.Fatal(err)
	}
	h := m.Health(t.Context())
	t.Logf("health: %s: %s", h.Status, h.Message)
	if h.Status != StatusHealthy || len(h.Replicas) != 2 ||
		!strings.Contains(h.Message, "Primary database connection is healthy; read replicas: 1 of 2 in rotation (out: "+refused+" failing checks: ") ||
		!strings.Contains(h.Message, "reads go to the others or the primary") {
		t.Fatalf("health with a replica down: %+v", h)
	}
	info := m.Info()
	if len(info.Replicas) != 2 || info.Replicas[0].Address != nodeAddr(good) || info.Replicas[1].Address != refused ||
		info.Replicas[0].State != ReplicaInRotation || !strings.Contains(info.Replicas[1].Reason, "refused") {
		t.Fatalf("Info replicas: %+v", info.Replicas)
	}
	rec := httptest.NewRecorder()
	HealthHandler(m, "svc", "1").ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/health", nil))
	body, _ := io.ReadAll(rec.Body)
	if rec.Code != http.StatusOK || !strings.Contains(string(body), `"replicas":[{"address":"`+nodeAddr(good)+`","state":"in rotation"`) {
		t.Fatalf("health endpoint: %d %s", rec.Code, body)
	}
	assertLogged(t, logs, `msg="Read replica in rotation" replica=`+nodeAddr(good),
		`level=WARN msg="Read replica out of rotation" replica=`+refused+` reason="failing checks: `)

	// A wrong password in DATABASE_READ_URL: the replica refuses the
	// login, and says so without the password.
	wrong := "postgres://" + role + ":wrong-" + leakMarker + "@" + nodeAddr(good) + "/" + db + "?sslmode=disable"
	m2, logs2 := newReplicaManager(t, []string{"DATABASE_URL", writer, "DATABASE_READ_URL", wrong})
	eventually(t, 10*time.Second, "the replica with the wrong password out of rotation", func() bool {
		st, _ := replicaState(m2, nodeAddr(good))
		return st == ReplicaOutOfRotation
	})
	if _, err := m2.Store().Get(t.Context(), "c", "k"); err != nil {
		t.Fatalf("Get with the replica refusing logins: %v", err)
	}
	h2 := m2.Health(t.Context())
	t.Logf("health: %s: %s", h2.Status, h2.Message)
	if h2.Status != StatusHealthy || !strings.Contains(h2.Message, "reads go to the primary") {
		t.Fatalf("health with the only replica refusing logins: %+v", h2)
	}
	for what, v := range map[string]any{"health": h, "info": info, "endpoint": string(body), "log": logs.String(),
		"health 2": h2, "info 2": m2.Info(), "log 2": logs2.String(), "config": m2.cfg} {
		assertNothingLeaks(t, what, v)
	}
}

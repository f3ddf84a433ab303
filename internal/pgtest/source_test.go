package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestExternalSource drives the TEST_DATABASE_URL path against a server of
// our own, as if it were an existing server.
func TestExternalSource(t *testing.T) {
	s := NewServer(t)
	h, err := externalHost(s.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	defer h.closeConn()
	var name string
	t.Run("fresh", func(t *testing.T) {
		dsn := h.freshDatabase(t)
		u, _ := url.Parse(dsn)
		name = u.Path[1:]
		mustExec(t, connect(t, dsn), "CREATE TABLE t (v int)")
	})
	c := connect(t, s.AdminURL())
	if n := count(t, c, "SELECT count(*) FROM pg_database WHERE datname = '"+name+"'"); n != 0 {
		t.Fatalf("database %s made through TEST_DATABASE_URL not dropped", name)
	}

	// A user without CREATEDB is refused, and no message shows a password.
	const pw = "S3cret-Visible-If-Leaked"
	s.Exec(t, "CREATE ROLE plain LOGIN PASSWORD '"+pw+"'")
	u, _ := url.Parse(s.AdminURL())
	u.User = url.UserPassword("plain", pw)
	if _, err := externalHost(u.String()); err == nil || strings.Contains(err.Error(), pw) {
		t.Fatalf("role without CREATEDB: err = %v", err)
	}
	u.User = url.UserPassword("plain", pw+"wrong")
	if _, err := externalHost(u.String()); err == nil || strings.Contains(err.Error(), pw) {
		t.Fatalf("wrong password: err = %v", err)
	}
	if _, err := externalHost("host=x password=" + pw); err == nil || strings.Contains(err.Error(), pw) {
		t.Fatalf("keyword DSN: err = %v", err)
	}
}

// recordingTB records Fatalf and Skipf instead of stopping the test.
type recordingTB struct {
	testing.TB
	fatal, skip string
}

func (r *recordingTB) Helper()                      {}
func (r *recordingTB) Fatalf(f string, args ...any) { r.fatal = fmt.Sprintf(f, args...) }
func (r *recordingTB) Skipf(f string, args ...any)  { r.skip = fmt.Sprintf(f, args...) }

func TestUnavailableSkipsOrFails(t *testing.T) {
	reason := errors.New("no binaries here")
	t.Setenv(RequireEnv, "")
	r := &recordingTB{TB: t}
	unavailable(r, reason)
	if r.skip == "" || r.fatal != "" || !strings.Contains(r.skip, reason.Error()) {
		t.Fatalf("without %s: skip=%q fatal=%q", RequireEnv, r.skip, r.fatal)
	}
	t.Setenv(RequireEnv, "1")
	r = &recordingTB{TB: t}
	unavailable(r, reason)
	if r.fatal == "" || r.skip != "" || !strings.Contains(r.fatal, reason.Error()) {
		t.Fatalf("with %s=1: skip=%q fatal=%q", RequireEnv, r.skip, r.fatal)
	}
}

// Start retries while something else holds the server's port, as after a
// crash; here a listener holds it for a moment.
func TestStartWaitsForBusyPort(t *testing.T) {
	s := NewServer(t)
	s.Stop(t)
	l, err := net.Listen("tcp", net.JoinHostPort(s.Host(), strconv.Itoa(s.Port())))
	if err != nil {
		t.Fatalf("hold port: %v", err)
	}
	go func() {
		time.Sleep(300 * time.Millisecond)
		l.Close()
	}()
	s.Start(t)
	var one int
	if err := connect(t, s.AdminURL()).QueryRow(context.Background(), "SELECT 1").Scan(&one); err != nil {
		t.Fatal(err)
	}
}

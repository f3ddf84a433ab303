package dbmanager

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatewaykit/dbmanager/internal/connfail"
	"github.com/gatewaykit/dbmanager/internal/connstr"
	"github.com/gatewaykit/dbmanager/internal/credentials"
	"github.com/gatewaykit/dbmanager/internal/pgtest"
	"github.com/jackc/pgx/v5"
)

// specialPassword has every character that breaks string-built URLs, and
// the leak marker.
const specialPassword = "p@ss:w/rd?#%&= '\\" + leakMarker

// execURL runs sql on the database of dsn.
func execURL(t *testing.T, dsn, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("admin connect: %v", safeError(err))
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, sql); err != nil {
		t.Fatalf("admin exec: %v", safeError(err))
	}
}

func sqlLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// roleWithPassword creates a login role with password on the server of
// adminURL (dropped at the end) and returns its name.
func roleWithPassword(t *testing.T, adminURL, password string) string {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "role_" + hex.EncodeToString(b)
	execURL(t, adminURL, "CREATE ROLE "+name+" LOGIN PASSWORD "+sqlLiteral(password))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if c, err := pgx.Connect(ctx, adminURL); err == nil {
			_, _ = c.Exec(ctx, "DROP ROLE IF EXISTS "+name)
			_ = c.Close(ctx)
		}
	})
	return name
}

// serverParts splits a pgtest URL.
func serverParts(t *testing.T, dsn string) (host string, port int, db string) {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal("pgtest URL does not parse")
	}
	port, _ = strconv.Atoi(u.Port())
	return u.Hostname(), port, strings.TrimPrefix(u.Path, "/")
}

func TestSpecialPasswordAgainstServer(t *testing.T) {
	admin := pgtest.URL(t)
	host, port, db := serverParts(t, admin)
	role := roleWithPassword(t, admin, specialPassword)
	ctx := context.Background()

	// From AWS_DB_* variables.
	cfg, err := LoadConfig(envOf(map[string]string{
		"AWS_DB_HOST": host, "AWS_DB_PORT": strconv.Itoa(port), "AWS_DB_NAME": db,
		"AWS_DB_USER": role, "AWS_DB_PASSWORD": specialPassword,
	}))
	if err != nil {
		t.Fatal(err)
	}
	tg, err := resolveTarget(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := newConnConfig(cfg, tg.DSN.Reveal())
	if err != nil {
		t.Fatal(err)
	}
	if err := validateConnConfig(ctx, cc); err != nil {
		t.Fatalf("AWS_DB_* with special password: %v", err)
	}
	// From a secret.
	cfg2, _ := LoadConfig(envOf(map[string]string{"AWS_DB_SECRET": "s"}))
	tg, err = resolveTarget(ctx, cfg2, func(context.Context) (credentials.Credentials, error) {
		return credentials.Credentials{Username: role, Password: specialPassword, Host: host, Port: port, DBName: db}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := ValidateConnection(ctx, tg.DSN.Reveal()); err != nil {
		t.Fatalf("secret with special password: %v", err)
	}
	// From a Python-form DATABASE_URL with the password percent-encoded.
	raw := "postgresql+asyncpg://" + url.UserPassword(role, specialPassword).String() + "@" + net.JoinHostPort(host, strconv.Itoa(port)) + "/" + db
	dsn, err := parseDatabaseURL(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := ValidateConnection(ctx, dsn); err != nil {
		t.Fatalf("DATABASE_URL with special password: %v", err)
	}
	// key=value form.
	kv := "host=" + host + " port=" + strconv.Itoa(port) + " dbname=" + db + " user=" + role + " password=" + connstr.QuoteKV(specialPassword) + " sslmode=disable"
	if _, err := parseDatabaseURL(kv); err != nil {
		t.Fatal(err)
	}
	if err := ValidateConnection(ctx, kv); err != nil {
		t.Fatalf("key=value with special password: %v", err)
	}
}

func wantReason(t *testing.T, err error, want Reason) *ConnectionError {
	t.Helper()
	var ce *ConnectionError
	if !errors.As(err, &ce) {
		t.Fatalf("want *ConnectionError (%s), got %T: %v", want, err, err)
	}
	if ce.Reason != want {
		t.Fatalf("reason %q, want %q: %v", ce.Reason, want, err)
	}
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("does not wrap ErrUnavailable: %v", err)
	}
	assertNothingLeaks(t, string(want)+" error", err)
	return ce
}

func closedPort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

func TestValidateConnectionRefused(t *testing.T) {
	dsn := BuildURL("u", specialPassword, "127.0.0.1", closedPort(t), "db") + "?sslmode=disable"
	wantReason(t, ValidateConnection(context.Background(), dsn), ReasonRefused)
}

func TestValidateConnectionDNS(t *testing.T) {
	dsn := BuildURL("u", specialPassword, "no-such-host.invalid", 5432, "db") + "?sslmode=disable"
	wantReason(t, ValidateConnection(context.Background(), dsn), ReasonDNS)
}

// silentListener accepts connections and never answers.
func silentListener(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().(*net.TCPAddr).Port
}

func TestValidateConnectionTimeout(t *testing.T) {
	port := silentListener(t)
	cfg := DefaultConfig()
	cfg.ConnectTimeout = 300 * time.Millisecond
	cc, err := newConnConfig(cfg, BuildURL("u", specialPassword, "127.0.0.1", port, "db")+"?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = validateConnConfig(context.Background(), cc)
	wantReason(t, err, ReasonTimeout)
	// Generous bound: the attempt must end near the connect timeout, not hang.
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v with a 300ms connect timeout", d)
	}
}

func TestValidateConnectionTimeoutDuringTLS(t *testing.T) {
	port := silentListener(t)
	for _, require := range []bool{false, true} {
		cfg := DefaultConfig()
		cfg.ConnectTimeout = 300 * time.Millisecond
		cfg.RequireSSL = require
		cc, err := newConnConfig(cfg, BuildURL("u", specialPassword, "127.0.0.1", port, "db"))
		if err != nil {
			t.Fatal(err)
		}
		wantReason(t, validateConnConfig(context.Background(), cc), ReasonTimeout)
	}
}

func TestValidateConnectionAuthAndMissingDatabase(t *testing.T) {
	admin := pgtest.URL(t)
	host, port, db := serverParts(t, admin)
	role := roleWithPassword(t, admin, "right-"+leakMarker)
	wrong := BuildURL(role, "wrong-"+leakMarker, host, port, db) + "?sslmode=disable"
	wantReason(t, ValidateConnection(context.Background(), wrong), ReasonAuth)
	missing := BuildURL(role, "right-"+leakMarker, host, port, "no_such_db_x") + "?sslmode=disable"
	wantReason(t, ValidateConnection(context.Background(), missing), ReasonNoDatabase)
	ok := BuildURL(role, "right-"+leakMarker, host, port, db) + "?sslmode=disable"
	if err := ValidateConnection(context.Background(), ok); err != nil {
		t.Fatal(err)
	}
}

func TestValidateConnectionBadDSN(t *testing.T) {
	err := ValidateConnection(context.Background(), "host=h password="+leakMarker+" port=notaport")
	if !errors.Is(err, ErrConfig) {
		t.Fatalf("want ErrConfig: %v", err)
	}
	assertNothingLeaks(t, "bad DSN error", err)
}

// TestReasonsAreConnfails: classify converts internal/connfail's Reason,
// so every documented Reason must be spelled the same there.
func TestReasonsAreConnfails(t *testing.T) {
	for root, internal := range map[Reason]connfail.Reason{
		ReasonDNS: connfail.DNS, ReasonRefused: connfail.Refused, ReasonTimeout: connfail.Timeout,
		ReasonTLS: connfail.TLS, ReasonAuth: connfail.Auth, ReasonNoDatabase: connfail.NoDatabase,
		ReasonServerStarting: connfail.ServerStarting, ReasonReadOnly: connfail.ReadOnly,
		ReasonServer: connfail.Server, ReasonCanceled: connfail.Canceled, ReasonNetwork: connfail.Network,
		ReasonUnknown: connfail.Unknown,
	} {
		if string(root) != string(internal) {
			t.Errorf("Reason %q is %q in internal/connfail", root, internal)
		}
	}
}

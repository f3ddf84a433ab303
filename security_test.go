package dbmanager

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/gatewaykit/dbmanager/internal/credentials"
	"github.com/gatewaykit/dbmanager/internal/pgtest"
	"github.com/gatewaykit/dbmanager/internal/safeerr"
	"github.com/gatewaykit/dbmanager/internal/testcert"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// connectThroughEverything runs the path a Manager takes (LoadConfig,
// resolveTarget, newPoolConfig, pool, Ping, classifyConnectError) and
// returns the first error, as a caller would see it.
func connectThroughEverything(env map[string]string, before func(context.Context, *pgx.ConnConfig) error) error {
	cfg, err := LoadConfig(envOf(env))
	if err != nil {
		return err
	}
	tg, err := resolveTarget(context.Background(), cfg, func(context.Context) (credentials.Credentials, error) {
		return credentials.Credentials{Username: "u", Password: "secret-" + leakMarker}, nil
	})
	if err != nil {
		return err
	}
	pc, err := newPoolConfig(cfg, tg, withBeforeConnect(before))
	if err != nil {
		return err
	}
	p, err := pgxpool.NewWithConfig(context.Background(), pc)
	if err != nil {
		return safeError(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), cfg.ConnectTimeout)
	defer cancel()
	return classifyConnectError(p.Ping(ctx), tg.Addr())
}

func TestNoSecretInAnyFailure(t *testing.T) {
	pw := "pw-" + leakMarker
	admin := pgtest.URL(t)
	host, port, db := serverParts(t, admin)
	role := roleWithPassword(t, admin, "right")
	ca := testcert.NewCA(t, "sec-ca")
	tlsCert, tlsKey := ca.ServerCert(t, []string{"localhost"}, nil)
	tlsSrv := pgtest.NewServer(t, pgtest.WithTLS(tlsCert, tlsKey))
	other := testcert.NewCA(t, "sec-other")
	roSrv := pgtest.NewServer(t) // a node that answers but is read-only
	roRole := roleWithPassword(t, roSrv.AdminURL(), pw)
	roSrv.Fence(t)
	awsEnv := func(h string, p int, extra ...string) map[string]string {
		m := map[string]string{"AWS_DB_HOST": h, "AWS_DB_PORT": strconv.Itoa(p), "AWS_DB_NAME": db, "AWS_DB_USER": role,
			"AWS_DB_PASSWORD": pw, "DB_CONNECT_TIMEOUT": "2"}
		for i := 0; i+1 < len(extra); i += 2 {
			m[extra[i]] = extra[i+1]
		}
		return m
	}
	cases := map[string]struct {
		env    map[string]string
		before func(context.Context, *pgx.ConnConfig) error
	}{
		"wrong password":           {env: awsEnv(host, port)},
		"wrong password in URL":    {env: map[string]string{"DATABASE_URL": BuildURL(role, pw, host, port, db) + "?sslmode=disable"}},
		"wrong password in kv DSN": {env: map[string]string{"DATABASE_URL": "host=" + host + " port=" + strconv.Itoa(port) + " user=" + role + " password = '" + pw + "' sslmode=disable"}},
		"wrong token from BeforeConnect": {env: awsEnv(host, port), before: func(_ context.Context, cc *pgx.ConnConfig) error {
			cc.Password = "token-" + leakMarker
			return nil
		}},
		"refused":             {env: awsEnv("127.0.0.1", closedPort(t))},
		"dns":                 {env: awsEnv("nohost-"+leakMarker+".invalid", 5432)},
		"timeout":             {env: awsEnv("127.0.0.1", silentListener(t), "DB_CONNECT_TIMEOUT", "0.3")},
		"bad TLS (CA)":        {env: awsEnv("localhost", tlsSrv.Port(), "AWS_REQUIRE_SSL", "true", "AWS_SSLROOTCERT", other.File)},
		"bad TLS (no TLS)":    {env: awsEnv("localhost", port, "AWS_REQUIRE_SSL", "true", "AWS_SSLROOTCERT", ca.File)},
		"bad TLS (sslmode)":   {env: map[string]string{"DATABASE_URL": BuildURL(role, pw, host, port, db) + "?sslmode=require", "AWS_REQUIRE_SSL": "true"}},
		"missing CA file":     {env: awsEnv(host, port, "AWS_REQUIRE_SSL", "true", "AWS_SSLROOTCERT", "/nonexistent/"+leakMarker+"-dir/ca.pem")},
		"bad URL port":        {env: map[string]string{"DATABASE_URL": "postgres://u:" + pw + "@h:port/db"}},
		"bad URL escape":      {env: map[string]string{"DATABASE_URL": "postgres://u:%zz" + pw + "@h/db"}},
		"mysql URL":           {env: map[string]string{"DATABASE_URL": "mysql://u:" + pw + "@h/db"}},
		"bad kv DSN":          {env: map[string]string{"DATABASE_URL": "host=h password='" + pw}},
		"bad pool param":      {env: map[string]string{"DATABASE_URL": "postgres://u:" + pw + "@h/db?pool_max_conns=x"}},
		"bad config":          {env: map[string]string{"AWS_DB_HOST": "h", "AWS_DB_USER": "u", "AWS_DB_PASSWORD": pw, "AWS_DB_PORT": "abc", "DB_POOL_SIZE": "-1"}},
		"secret without host": {env: map[string]string{"AWS_DB_SECRET": "s"}},
		"read-only node": {env: map[string]string{"AWS_DB_HOST": "127.0.0.1", "AWS_DB_PORT": strconv.Itoa(roSrv.Port()),
			"AWS_DB_NAME": "postgres", "AWS_DB_USER": roRole, "AWS_DB_PASSWORD": pw, "DB_CONNECT_TIMEOUT": "2"}},
		"multi-host, all refused": {env: map[string]string{"DATABASE_URL": "postgres://u:" + pw + "@" + refusedAddr(t) + "," + refusedAddr(t) + "/db?sslmode=disable"}},
		"multi-host, read-only then refused": {env: map[string]string{"DATABASE_URL": "postgres://" + roRole + ":" + pw + "@127.0.0.1:" +
			strconv.Itoa(roSrv.Port()) + "," + refusedAddr(t) + "/postgres?sslmode=disable"}},
		"bad multi-host URL": {env: map[string]string{"DATABASE_URL": "postgres://u:" + pw + "@h1:5432,h2:99999/db"}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			err := connectThroughEverything(c.env, c.before)
			t.Logf("%v", err)
			if err == nil {
				t.Fatal("no error")
			}
			// The DNS case has the marker in the host name on purpose: a
			// host name is not secret. Check the rest without it.
			if name == "dns" || name == "missing CA file" {
				err = safeerr.New(strings.ReplaceAll(err.Error(), leakMarker, ""))
			}
			assertNothingLeaks(t, name, err)
			var buf bytes.Buffer
			slog.New(slog.NewJSONHandler(&buf, nil)).Error("Primary database connection failed", "err", err)
			if name != "dns" && strings.Contains(buf.String(), leakMarker) {
				t.Fatalf("slog leaks: %s", buf.String())
			}
		})
	}
}

func TestSafeErrorOnConnectErrorKeepsCauses(t *testing.T) {
	// A raw pgx ConnectError holds the config with the password.
	cc, err := pgx.ParseConfig(BuildURL("u", "pw-"+leakMarker, "127.0.0.1", closedPort(t), "db") + "?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	_, raw := pgx.ConnectConfig(context.Background(), cc)
	if raw == nil {
		t.Fatal("connected to a closed port")
	}
	err = safeError(raw)
	assertNothingLeaks(t, "ConnectError", err)
	var op *net.OpError
	if !errorsAs(err, &op) {
		t.Fatalf("net.OpError not reachable: %v", err)
	}
}

func errorsAs[T any](err error, target *T) bool { return errors.As(err, target) }

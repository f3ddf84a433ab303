package credentials

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gatewaykit/dbmanager/internal/pgtest"
	"github.com/gatewaykit/dbmanager/internal/testcert"
)

// TestIAMRealPostgresOverTLS: a role whose password is the IAM token
// (PostgreSQL cannot check IAM signatures; RDS does) logs in through a
// pool whose BeforeConnect is IAM's, over verify-full TLS. The same
// pool without TLS is refused before a token is sent.
func TestIAMRealPostgresOverTLS(t *testing.T) {
	ca := testcert.NewCA(t, "dbmanager test CA")
	caFile := ca.File
	certFile, keyFile := ca.Localhost(t)
	srv := pgtest.NewServer(t, pgtest.WithTLS(certFile, keyFile))
	a := newTestIAM(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	token, err := a.Token(ctx, srv.Host(), srv.Port(), "iam_user")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(token, "'") {
		t.Fatal("token contains a quote")
	}
	srv.Exec(t, "CREATE ROLE iam_user LOGIN PASSWORD '"+token+"'")

	dsn := fmt.Sprintf("postgres://iam_user@%s:%d/postgres?sslmode=verify-full&sslrootcert=%s", srv.Host(), srv.Port(), caFile)
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.BeforeConnect = a.BeforeConnect
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var ssl bool
	if err := pool.QueryRow(ctx, "select ssl from pg_stat_ssl where pid = pg_backend_pid()").Scan(&ssl); err != nil {
		t.Fatalf("login with the IAM token: %v", err)
	}
	if !ssl {
		t.Fatal("connection is not encrypted")
	}

	plainCfg, err := pgxpool.ParseConfig(fmt.Sprintf("postgres://iam_user@%s:%d/postgres?sslmode=prefer", srv.Host(), srv.Port()))
	if err != nil {
		t.Fatal(err)
	}
	plainCfg.BeforeConnect = a.BeforeConnect
	plain, err := pgxpool.NewWithConfig(ctx, plainCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	err = plain.Ping(ctx)
	if !errors.Is(err, ErrIAMRequiresTLS) {
		t.Fatalf("sslmode=prefer with IAM: err = %v, want ErrIAMRequiresTLS", err)
	}
	if strings.Contains(err.Error(), token[len(token)-20:]) {
		t.Fatal("error contains the token")
	}
}

package pgtest

import (
	"context"
	"strings"
	"testing"

	"github.com/gatewaykit/dbmanager/internal/testcert"
)

func TestServerWithTLSAndSetting(t *testing.T) {
	cert, key := testcert.SelfSigned(t)
	s := NewServer(t, WithTLS(cert, key), WithSetting("work_mem", "7MB"))
	dsn := s.URL(t)
	if !strings.Contains(dsn, "sslmode=require") {
		t.Fatalf("URL of a TLS server lacks sslmode=require")
	}
	c := connect(t, dsn)
	var ssl bool
	if err := c.QueryRow(context.Background(), "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl); err != nil {
		t.Fatal(err)
	}
	if !ssl {
		t.Fatal("connection with sslmode=require is not encrypted")
	}
	var workMem string
	if err := c.QueryRow(context.Background(), "SHOW work_mem").Scan(&workMem); err != nil {
		t.Fatal(err)
	}
	if workMem != "7MB" {
		t.Fatalf("work_mem = %q, want 7MB from WithSetting", workMem)
	}
	// The TLS settings survive a restart.
	s.Stop(t)
	s.Start(t)
	connect(t, s.AdminURL())
}

package pgtest

import (
	"context"
	"testing"
)

func TestServerStopStartKeepsDataAndPort(t *testing.T) {
	s := NewServer(t)
	dsn := s.URL(t)
	c := connect(t, dsn)
	mustExec(t, c, "CREATE TABLE kept (v int)")
	mustExec(t, c, "INSERT INTO kept VALUES (42)")
	c.Close(context.Background())
	port := s.Port()

	s.Stop(t)
	if _, err := connectErr(dsn); err == nil {
		t.Fatal("connected to a stopped server")
	}
	s.Start(t)
	if s.Port() != port {
		t.Fatalf("port after restart = %d, want %d", s.Port(), port)
	}
	if n := count(t, connect(t, dsn), "SELECT v FROM kept"); n != 42 {
		t.Fatalf("value after restart = %d, want 42", n)
	}
}

func TestServerKillThenStart(t *testing.T) {
	s := NewServer(t)
	dsn := s.URL(t)
	c := connect(t, dsn)
	mustExec(t, c, "CREATE TABLE kept (v int)")
	mustExec(t, c, "INSERT INTO kept VALUES (7)")

	s.Kill(t)
	if _, err := c.Exec(context.Background(), "SELECT 1"); err == nil {
		t.Fatal("connection still works after Kill")
	}
	s.Start(t)
	if n := count(t, connect(t, dsn), "SELECT v FROM kept"); n != 7 {
		t.Fatalf("value after crash recovery = %d, want 7", n)
	}
	s.Exec(t, "SELECT 1")
}

func connectErr(dsn string) (any, error) {
	c, err := pgxConnect(dsn)
	if c != nil {
		c.Close(context.Background())
	}
	return nil, err
}

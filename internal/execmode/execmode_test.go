package execmode

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gatewaykit/dbmanager/internal/pgtest"
)

func TestNameSpellsEveryMode(t *testing.T) {
	if len(Names) != 5 {
		t.Fatalf("%d names, want pgx's five modes", len(Names))
	}
	for name, mode := range Names {
		if got := Name(mode); got != name {
			t.Errorf("Name(%v) = %q, want %q", mode, got, name)
		}
	}
	if got := Name(0); got != "" {
		t.Errorf("Name of the zero value = %q, want \"\" (not set)", got)
	}
	if Name(Direct) != "cache_statement" || Name(Proxied) != "cache_describe" {
		t.Errorf("Direct %q, Proxied %q", Name(Direct), Name(Proxied))
	}
}

func TestIsPoolerStatementError(t *testing.T) {
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	_, missing := conn.Exec(ctx, "EXECUTE no_such_statement")
	_, err = conn.Exec(ctx, "PREPARE twice AS SELECT 1")
	if err != nil {
		t.Fatal(err)
	}
	_, duplicate := conn.Exec(ctx, "PREPARE twice AS SELECT 1")
	_, other := conn.Exec(ctx, "SELECT 1/0")
	for _, c := range []struct {
		err          error
		miss, pooler bool
	}{{missing, true, true}, {duplicate, true, true}, {other, false, false}, {nil, false, false}, {errors.New("x"), false, false}} {
		if IsStatementCacheMiss(c.err) != c.miss || IsPoolerStatementError(c.err) != c.pooler {
			t.Errorf("%v: miss %v pooler %v, want %v %v", c.err, IsStatementCacheMiss(c.err), IsPoolerStatementError(c.err), c.miss, c.pooler)
		}
	}
}

func TestBehindProxyDirect(t *testing.T) {
	pool, err := pgxpool.New(t.Context(), pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	conn, err := pool.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if proxied, err := BehindProxy(t.Context(), conn); err != nil || proxied {
		t.Fatalf("direct connection: proxied %v, %v", proxied, err)
	}
}

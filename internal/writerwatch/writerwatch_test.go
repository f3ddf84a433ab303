package writerwatch

import (
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// TestNewHonoursTargetSessionAttrs: the watch follows the writer unless
// the connection string asks for another kind of node.
func TestNewHonoursTargetSessionAttrs(t *testing.T) {
	t.Setenv("PGTARGETSESSIONATTRS", "")
	for tsa, want := range map[string]string{
		"":               "writer",
		"read-write":     "writer",
		"primary":        "primary",
		"any":            "none",
		"read-only":      "none",
		"standby":        "none",
		"prefer-standby": "none",
	} {
		params := map[string]string{}
		if tsa != "" {
			params["target_session_attrs"] = tsa
		}
		w := New(params, nil, nil)
		got := "none"
		switch {
		case w != nil && w.primaryOnly:
			got = "primary"
		case w != nil:
			got = "writer"
		}
		if got != want {
			t.Errorf("target_session_attrs=%q: watch %s; want %s", tsa, got, want)
		}
	}
	t.Setenv("PGTARGETSESSIONATTRS", "any")
	if New(map[string]string{}, nil, nil) != nil {
		t.Error("PGTARGETSESSIONATTRS=any (pgx reads it too): want no watch")
	}
}

func TestIsReadOnlyError(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{&pgconn.PgError{Code: SQLStateReadOnly}, true},
		{fmt.Errorf("put: %w", &pgconn.PgError{Code: SQLStateReadOnly}), true},
		{ErrNodeReadOnly, true},
		{pgconn.ErrStandbyConnection, true},
		{&pgconn.PgError{Code: "23505"}, false},
		{errors.New("read-only"), false},
	} {
		if got := IsReadOnlyError(c.err); got != c.want {
			t.Errorf("IsReadOnlyError(%v) = %v; want %v", c.err, got, c.want)
		}
	}
}

// TestSuspectAfterAFinding: connections idle since before a read-only
// finding are suspect; those used since are not.
func TestSuspectAfterAFinding(t *testing.T) {
	var notices int
	w := New(nil, func() { notices++ }, nil)
	if w.suspect(1 << 40) {
		t.Fatal("suspect before any finding")
	}
	w.found()
	if notices != 1 {
		t.Fatalf("notice heard %d findings; want 1", notices)
	}
	if !w.suspect(1 << 40) {
		t.Error("a connection idle for long is not suspect after a finding")
	}
	if w.suspect(-1 << 40) {
		t.Error("a connection used after the finding is suspect")
	}
}

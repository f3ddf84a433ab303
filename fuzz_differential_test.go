package dbmanager

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Operation alphabets for FuzzDifferential: few enough that operations
// collide on the same keys, tricky enough to tell orderings and escapes
// apart.
var (
	fuzzCollections = []string{"c", "c2", ""} // "" is invalid
	fuzzKeys        = []string{"a", "B", "_", "%", "\\", "é", "z\x7f", "a%", "a_b", "ab", "\U0010FFFF", "日", "a\U0010FFFF", "a\\b", ""}
	fuzzPrefixes    = []string{"", "a", "%", "_", "\\", "é", "\U0010FFFF", "a\U0010FFFF", "z", "a_", "\xff"}
	fuzzValues      = []string{`1`, `{"a":1,"a":2}`, ` [ ] `, `"\ud800"`, `1e999`, `"é"`, `{`, `null`, "\"\xff\"", ` {"b" : [true] } `}
)

// fuzzOp is one Store call decoded from fuzz input.
type fuzzOp struct {
	kind          byte
	coll, key     string
	value         []byte
	version       int64
	prefix, after string
	limit         int
	useNext       bool
}

// decodeFuzzOps turns bytes into operations, four bytes each.
func decodeFuzzOps(data []byte) []fuzzOp {
	var ops []fuzzOp
	for len(data) >= 4 && len(ops) < 64 {
		a, b, c, d := data[0], data[1], data[2], data[3]
		data = data[4:]
		ops = append(ops, fuzzOp{
			kind:    a % 7,
			coll:    fuzzCollections[int(a>>3)%len(fuzzCollections)],
			key:     fuzzKeys[int(b)%len(fuzzKeys)],
			value:   []byte(fuzzValues[int(c)%len(fuzzValues)]),
			version: int64(c>>4) % 5, // 0 is invalid
			prefix:  fuzzPrefixes[int(d)%len(fuzzPrefixes)],
			after:   fuzzKeys[int(b>>4)%len(fuzzKeys)],
			limit:   int(d>>4) % 5, // 0 means the default
			useNext: d&0x80 != 0,
		})
	}
	return ops
}

// apply runs op on s and describes the outcome without timestamps.
func (op fuzzOp) apply(ctx context.Context, s Store, next string) (outcome, newNext string) {
	switch op.kind {
	case 0:
		r, err := s.Put(ctx, op.coll, op.key, op.value)
		return describe(r, err), next
	case 1:
		r, err := s.Put(ctx, op.coll, op.key, op.value, IfVersion(op.version))
		return describe(r, err), next
	case 2:
		r, err := s.Put(ctx, op.coll, op.key, op.value, IfAbsent())
		return describe(r, err), next
	case 3:
		r, err := s.Get(ctx, op.coll, op.key)
		return describe(r, err), next
	case 4:
		return describe(Record{}, s.Delete(ctx, op.coll, op.key)), next
	case 5:
		return describe(Record{}, s.Delete(ctx, op.coll, op.key, IfVersion(op.version))), next
	default:
		after := op.after
		if op.useNext {
			after = next
		}
		p, err := s.List(ctx, op.coll, ListOptions{Prefix: op.prefix, After: after, Limit: op.limit})
		var b bytes.Buffer
		fmt.Fprintf(&b, "list %s next=%q:", errClass(err), p.Next)
		for _, r := range p.Records {
			b.WriteString(" " + describe(r, nil))
		}
		return b.String(), p.Next
	}
}

// describe shows a record or error the way both backends must agree on.
func describe(r Record, err error) string {
	if err != nil {
		return errClass(err)
	}
	return fmt.Sprintf("%q/%q=%q@%d", r.Collection, r.Key, r.Value, r.Version)
}

// errClass names the sentinel an error wraps.
func errClass(err error) string {
	for _, s := range []error{ErrNotFound, ErrConflict, ErrInvalid, ErrUnavailable, ErrClosed} {
		if errors.Is(err, s) {
			return "error:" + s.Error()
		}
	}
	if err != nil {
		return "error:other: " + err.Error()
	}
	return "ok"
}

// FuzzDifferential applies the same operations to a MemStore and a PGStore
// and requires identical results: values, versions, error sentinels and
// pages (timestamps excluded). One database serves the whole fuzz process;
// its table is emptied before each input.
func FuzzDifferential(f *testing.F) {
	pg := newTestPGStore(f, withSchema("fuzz"))

	f.Add([]byte("\x00\x00\x00\x00\x03\x00\x00\x00"))
	f.Add([]byte("\x00\x01\x00\x00\x00\x02\x01\x00\x06\x00\x00\x10\x06\x00\x00\x91"))
	f.Add([]byte("\x01\x00\x10\x00\x02\x00\x00\x00\x05\x00\x20\x00\x04\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ctx := context.Background()
		if err := pg.pg.withConn(ctx, false, func(conn *pgxpool.Conn) error {
			_, err := conn.Exec(ctx, `DELETE FROM `+pgx.Identifier{"fuzz", "records"}.Sanitize())
			return err
		}); err != nil {
			t.Fatal(err)
		}
		mem := NewMemStore()
		memNext, pgNext := "", ""
		for i, op := range decodeFuzzOps(data) {
			var want, got string
			want, memNext = op.apply(ctx, mem, memNext)
			got, pgNext = op.apply(ctx, pg, pgNext)
			if want != got {
				t.Fatalf("operation %d %+v:\nmemory:     %s\npostgresql: %s", i, op, want, got)
			}
		}
		for _, coll := range fuzzCollections[:2] {
			dump := fuzzOp{kind: 6, coll: coll, limit: 0}
			want, _ := dump.apply(ctx, mem, "")
			got, _ := dump.apply(ctx, pg, "")
			if want != got {
				t.Fatalf("final contents of %q:\nmemory:     %s\npostgresql: %s", coll, want, got)
			}
		}
	})
}

package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/gatewaykit/dbmanager"
)

// exactValues are valid JSON documents that a store which parses and
// re-encodes JSON (jsonb, say) would change.
var exactValues = []string{
	` {"b" : 1 ,  "a" : [ 1 , 2 ] } `,
	"\t[1,\n2]\r\n",
	`{"a":1,"a":2}`,
	`{"z":0,"a":0}`,
	`"\u0000"`,
	`"\ud800"`,
	`"\udc00\ud800"`,
	`"\u00e9 é \/ \" \\ \b\f\n\r\t"`,
	`"日本語 🎉 \uD83C\uDF89"`,
	`123456789012345678901234567890123456789012345678901234567890`,
	`1e999999`,
	`-0.000000000000000000000000000000000001`,
	`-0`,
	`1.0E+2`,
	`null`,
	`true`,
	`""`,
	`[]`,
	`{}`,
	strings.Repeat("[", 5000) + strings.Repeat("]", 5000),
	strings.Repeat(`{"a":`, 2000) + "1" + strings.Repeat("}", 2000),
}

func testValuesByteForByte(t *testing.T, e *env) {
	for i, v := range exactValues {
		key := fmt.Sprintf("v%02d", i)
		r := e.put(t, key, v)
		if string(r.Value) != v {
			t.Errorf("Put returns the value byte for byte: value %d %.40q came back as %.40q", i, v, r.Value)
		}
		e.wantValue(t, "Get returns the value byte for byte", key, v)
	}
	p, err := e.s.List(e.ctx, e.coll, dbmanager.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range p.Records {
		var i int
		fmt.Sscanf(r.Key, "v%02d", &i)
		if string(r.Value) != exactValues[i] {
			t.Errorf("List returns values byte for byte: value %d %.40q came back as %.40q", i, exactValues[i], r.Value)
		}
	}
}

func testLargeValue(t *testing.T, e *env) {
	// A 1 MiB document with structure, escapes and non-ASCII text.
	var b bytes.Buffer
	b.WriteString(`{"items": [`)
	for i := 0; b.Len() < 1<<20-100; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, `{"i": %d, "s": "é\u00e9\n %d"}`, i, i*7919)
	}
	b.WriteString("]}")
	v := b.String()
	e.put(t, "big", v)
	got := e.get(t, "big")
	if string(got.Value) != v {
		t.Errorf("a %d-byte document comes back byte for byte: got %d bytes", len(v), len(got.Value))
	}
}

func testInvalidValues(t *testing.T, e *env) {
	e.put(t, "k", `"original"`)
	bad := []string{
		"", " ", "{", "nul", "[1,]", "01", "NaN", "'a'", `{"a":1}{}`, "1 2", `{"a"}`, `"\x"`,
		"\"\xff\"", "\"\xc3\x28\"", "\"\xed\xa0\x80\"", // invalid UTF-8 inside a string
		"\"a\x00\"", "\"tab\tinside\"", // control characters in strings
	}
	for _, v := range bad {
		_, err := e.s.Put(e.ctx, e.coll, "k", []byte(v))
		wantErr(t, fmt.Sprintf("Put of invalid JSON or invalid UTF-8 %q is ErrInvalid", v), err, dbmanager.ErrInvalid)
		_, err = e.s.Put(e.ctx, e.coll, "new", []byte(v))
		wantErr(t, fmt.Sprintf("Put of invalid value %q under a new key is ErrInvalid", v), err, dbmanager.ErrInvalid)
	}
	_, err := e.s.Put(e.ctx, e.coll, "k", nil)
	wantErr(t, "Put of a nil value is ErrInvalid", err, dbmanager.ErrInvalid)
	huge := make([]byte, dbmanager.MaxValueLen+1)
	for i := range huge {
		huge[i] = ' '
	}
	huge[0] = '0'
	_, err = e.s.Put(e.ctx, e.coll, "k", huge)
	wantErr(t, "Put of a value over MaxValueLen is ErrInvalid", err, dbmanager.ErrInvalid)
	e.wantValue(t, "a rejected Put changes nothing", "k", `"original"`)
	e.wantMissing(t, "a rejected Put creates nothing", "new")
}

func testInvalidNames(t *testing.T, e *env) {
	longKey := strings.Repeat("k", dbmanager.MaxKeyLen+1)
	longColl := strings.Repeat("c", dbmanager.MaxCollectionLen+1)
	names := []struct {
		what, coll, key string
	}{
		{"empty key", e.coll, ""},
		{"key over MaxKeyLen", e.coll, longKey},
		{"key with invalid UTF-8", e.coll, "k\xff"},
		{"key with a NUL byte", e.coll, "k\x00"},
		{"empty collection", "", "k"},
		{"collection over MaxCollectionLen", longColl, "k"},
		{"collection with invalid UTF-8", "c\xc3", "k"},
		{"collection with a NUL byte", "c\x00", "k"},
	}
	for _, n := range names {
		_, err := e.s.Put(e.ctx, n.coll, n.key, []byte("1"))
		wantErr(t, "Put with "+n.what+" is ErrInvalid", err, dbmanager.ErrInvalid)
		_, err = e.s.Get(e.ctx, n.coll, n.key)
		wantErr(t, "Get with "+n.what+" is ErrInvalid", err, dbmanager.ErrInvalid)
		wantErr(t, "Delete with "+n.what+" is ErrInvalid", e.s.Delete(e.ctx, n.coll, n.key), dbmanager.ErrInvalid)
		if n.key == "k" {
			_, err = e.s.List(e.ctx, n.coll, dbmanager.ListOptions{})
			wantErr(t, "List with "+n.what+" is ErrInvalid", err, dbmanager.ErrInvalid)
		}
	}
	// The longest valid names work.
	maxKey := strings.Repeat("k", dbmanager.MaxKeyLen)
	maxColl := e.coll + strings.Repeat("c", dbmanager.MaxCollectionLen-len(e.coll))
	if _, err := e.s.Put(e.ctx, maxColl, maxKey, []byte("1")); err != nil {
		t.Errorf("a key of MaxKeyLen bytes in a collection of MaxCollectionLen bytes is valid: %v", err)
	}
	if keys := e.listAll(t, "", 0); len(keys) != 0 {
		t.Errorf("rejected writes create nothing: List shows %q", keys)
	}
}

func testInvalidOptions(t *testing.T, e *env) {
	e.put(t, "k", "1")
	for _, c := range []struct {
		rule string
		opts []dbmanager.WriteOption
	}{
		{"Put IfVersion(0) is ErrInvalid (versions start at 1)", []dbmanager.WriteOption{dbmanager.IfVersion(0)}},
		{"Put IfVersion(-1) is ErrInvalid", []dbmanager.WriteOption{dbmanager.IfVersion(-1)}},
		{"Put IfVersion with IfAbsent is ErrInvalid", []dbmanager.WriteOption{dbmanager.IfVersion(1), dbmanager.IfAbsent()}},
	} {
		_, err := e.s.Put(e.ctx, e.coll, "k", []byte("2"), c.opts...)
		wantErr(t, c.rule, err, dbmanager.ErrInvalid)
	}
	wantErr(t, "Delete IfAbsent is ErrInvalid", e.s.Delete(e.ctx, e.coll, "k", dbmanager.IfAbsent()), dbmanager.ErrInvalid)
	wantErr(t, "Delete IfVersion(0) is ErrInvalid", e.s.Delete(e.ctx, e.coll, "k", dbmanager.IfVersion(0)), dbmanager.ErrInvalid)
	e.wantValue(t, "a Put or Delete with invalid options changes nothing", "k", "1")
	for _, o := range []dbmanager.ListOptions{{Limit: -1}, {Prefix: "\xff"}, {After: "a\x00"}} {
		_, err := e.s.List(e.ctx, e.coll, o)
		wantErr(t, fmt.Sprintf("List with %+v is ErrInvalid", o), err, dbmanager.ErrInvalid)
	}
}

func testNoAliasing(t *testing.T, e *env) {
	in := []byte(`{"a":"original"}`)
	r, err := e.s.Put(e.ctx, e.coll, "k", in)
	if err != nil {
		t.Fatal(err)
	}
	copy(in, `{"a":"CHANGED!"}`)
	e.wantValue(t, "the store keeps no reference to the slice given to Put", "k", `{"a":"original"}`)
	copy(r.Value, `{"a":"CHANGED!"}`)
	e.wantValue(t, "changing the record Put returned changes nothing stored", "k", `{"a":"original"}`)
	g := e.get(t, "k")
	copy(g.Value, `{"a":"CHANGED!"}`)
	e.wantValue(t, "changing the value Get returned changes nothing stored", "k", `{"a":"original"}`)
	p, err := e.s.List(e.ctx, e.coll, dbmanager.ListOptions{})
	if err != nil || len(p.Records) != 1 {
		t.Fatalf("List: %v, %d records", err, len(p.Records))
	}
	copy(p.Records[0].Value, `{"a":"CHANGED!"}`)
	e.wantValue(t, "changing a value List returned changes nothing stored", "k", `{"a":"original"}`)
	// Two Gets do not share a slice either.
	a, b := e.get(t, "k"), e.get(t, "k")
	a.Value[0] = ' '
	if b.Value[0] != '{' {
		t.Errorf("two Gets return separate slices")
	}
}

func testCancelledContext(t *testing.T, e *env) {
	e.put(t, "k", `"original"`)
	for _, mk := range []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
		want error
	}{
		{"cancelled", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(e.ctx)
			cancel()
			return ctx, cancel
		}, context.Canceled},
		{"past its deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(e.ctx, -1)
		}, context.DeadlineExceeded},
	} {
		ctx, cancel := mk.ctx()
		defer cancel()
		rule := "an operation with a context " + mk.name + " returns the context's error"
		_, err := e.s.Put(ctx, e.coll, "k", []byte(`"changed"`))
		wantErr(t, rule+" (Put)", err, mk.want)
		_, err = e.s.Put(ctx, e.coll, "new", []byte(`1`))
		wantErr(t, rule+" (Put new key)", err, mk.want)
		_, err = e.s.Get(ctx, e.coll, "k")
		wantErr(t, rule+" (Get)", err, mk.want)
		wantErr(t, rule+" (Delete)", e.s.Delete(ctx, e.coll, "k"), mk.want)
		_, err = e.s.List(ctx, e.coll, dbmanager.ListOptions{})
		wantErr(t, rule+" (List)", err, mk.want)
		wantErr(t, rule+" (Ping)", e.s.Ping(ctx), mk.want)
	}
	e.wantValue(t, "a cancelled context changes nothing", "k", `"original"`)
	e.wantMissing(t, "a cancelled context creates nothing", "new")
}

func testErrorsNameCollectionAndKey(t *testing.T, e *env) {
	const key = "the-missing-key"
	_, err := e.s.Get(e.ctx, e.coll, key)
	checkOpError(t, "Get of a missing key", err, "get", e.coll, key)
	err = e.s.Delete(e.ctx, e.coll, key)
	checkOpError(t, "Delete of a missing key", err, "delete", e.coll, key)
	_, err = e.s.Put(e.ctx, e.coll, key, []byte("{"))
	checkOpError(t, "Put of invalid JSON", err, "put", e.coll, key)
	e.put(t, key, "1")
	_, err = e.s.Put(e.ctx, e.coll, key, []byte("1"), dbmanager.IfAbsent())
	checkOpError(t, "Put IfAbsent conflict", err, "put", e.coll, key)
	_, err = e.s.List(e.ctx, e.coll, dbmanager.ListOptions{Limit: -1})
	checkOpError(t, "List with a bad limit", err, "list", e.coll, "")
}

// checkOpError checks that err is an *OpError naming op, collection and key
// and that its message shows the collection and key.
func checkOpError(t *testing.T, what string, err error, op, coll, key string) {
	t.Helper()
	var oe *dbmanager.OpError
	if !errors.As(err, &oe) {
		t.Errorf("errors are *dbmanager.OpError: %s gave %T %v", what, err, err)
		return
	}
	if oe.Op != op || oe.Collection != coll || oe.Key != key {
		t.Errorf("OpError names the operation, collection and key: %s gave Op %q Collection %q Key %q, want %q %q %q",
			what, oe.Op, oe.Collection, oe.Key, op, coll, key)
	}
	msg := err.Error()
	if !strings.Contains(msg, coll) || !strings.Contains(msg, key) {
		t.Errorf("error messages name the collection and key: %s gave %q, want %q and %q in it", what, msg, coll, key)
	}
}

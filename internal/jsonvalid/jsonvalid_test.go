package jsonvalid

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"
)

// stdValidJSON is the behaviour Valid must reproduce exactly.
func stdValidJSON(b []byte) bool { return utf8.Valid(b) && json.Valid(b) }

// jsonEdgeCases are inputs where validators commonly disagree with
// encoding/json; each is checked against stdValidJSON, not a hand-written
// verdict, and they seed FuzzValidJSON.
var jsonEdgeCases = []string{
	// whitespace and framing
	``, ` `, "\t\n\r 1 \r\n\t", "\f1", "\v1", "1\f", "\u00a01", "\xef\xbb\xbf{}", "\x00", "1\x00",
	`{}x`, `{} {}`, `1 2`, `[] ]`, `"a""b"`,
	// literals
	`true`, `false`, `null`, `tru`, `nul`, `nulll`, `True`, `NaN`, `Infinity`, `truefalse`, `[true,false,null]`,
	`[truex]`, `{"a":nullx}`,
	// numbers
	`0`, `-0`, `-`, `01`, `-01`, `00`, `1.`, `.5`, `+1`, `1e`, `1E+`, `1e-`, `1.5e+10`, `1.0E-0`, `-0.0e0`,
	`1e999999999999`, `123456789012345678901234567890`, `0x10`, `1_000`, `[1,-]`, `[-]`, `[1.]`, `1.e3`, `1..2`,
	`[0 1]`, `[01]`, `{"a":-}`, `-a`, `1ee2`, `2.5E`,
	// strings: escapes
	`""`, `"\""`, `"\\"`, `"\/"`, `"\b\f\n\r\t"`, `"\a"`, `"\x41"`, `"\U0041"`, `"\u0041"`, `"\u00e9\u20AC"`,
	`"\ud800"`, `"\udc00\ud800"`, `"\ud83d\ude00"`, `"\u12"`, `"\u12g4"`, `"\u"`, `"\`, `"\\\"`, `"abc`, `"`,
	// strings: control and non-ASCII bytes
	"\"\x01\"", "\"\x1f\"", "\"\x7f\"", "\"\x00\"", "\"\t\"", "\"\n\"", "\"é€😀\"", "\"\xff\"", "\"\xc3\"",
	"\"\xc0\x80\"", "\"\xc1\xbf\"", "\"\xe0\x80\x80\"", "\"\xed\xa0\x80\"", "\"\xed\x9f\xbf\"", "\"\xef\xbf\xbd\"",
	"\"\xf0\x8f\xbf\xbf\"", "\"\xf4\x90\x80\x80\"", "\"\xf4\x8f\xbf\xbf\"", "\"\xf5\x80\x80\x80\"", "\"\x80\"",
	"\"\xe2\x82\"", "\"\xe2\x82\xac", "\"0123456\xe2\x82\xac01234567\"", "\"01234567890123\\u0041\"",
	"\"01234567\x1f01234567\"", "\xff", "[\"a\",\xff]",
	// containers
	`[]`, `{}`, `[`, `]`, `{`, `}`, `[1,]`, `[,1]`, `[1,,2]`, `{"a":1,}`, `{,}`, `{"a"}`, `{"a":}`, `{"a" 1}`,
	`{1:1}`, `{"a":1 "b":2}`, `{"a":1}}`, `[[]]]`, `[}`, `{]`, `[{"a":[{"b":{}}]}]`, ` { "a" : [ 1 , 2 ] } `,
	`{"":""}`, `{"a":1,"a":2}`,
}

func TestValidJSONMatchesStdlibOnEdgeCases(t *testing.T) {
	for _, c := range jsonEdgeCases {
		if got, want := Valid([]byte(c)), stdValidJSON([]byte(c)); got != want {
			t.Errorf("Valid(%q) = %v, utf8.Valid && json.Valid = %v", c, got, want)
		}
	}
}

func TestValidJSONVerdicts(t *testing.T) {
	// A few verdicts spelled out, so a change in encoding/json shows up here.
	accept := []string{`"\ud800"`, `-0`, `1e999999999999`, " [1] \n", "\"\x7f\"", `{"a":1,"a":2}`}
	reject := []string{"\"\xed\xa0\x80\"", `01`, `1.`, `-`, "\xef\xbb\xbf{}", "\f1", "\"\x1f\"", `[1,]`, ``}
	for _, c := range accept {
		if !Valid([]byte(c)) {
			t.Errorf("Valid(%q) = false, want true", c)
		}
	}
	for _, c := range reject {
		if Valid([]byte(c)) {
			t.Errorf("Valid(%q) = true, want false", c)
		}
	}
}

func TestValidJSONDeepNesting(t *testing.T) {
	nest := func(open, close string, depth int, inner string) []byte {
		return []byte(strings.Repeat(open, depth) + inner + strings.Repeat(close, depth))
	}
	mixed := func(depth int) []byte {
		var b bytes.Buffer
		for d := range depth {
			if d%2 == 0 {
				b.WriteString(`{"k":`)
			} else {
				b.WriteString(`[`)
			}
		}
		b.WriteString(`0`)
		for d := depth - 1; d >= 0; d-- {
			if d%2 == 0 {
				b.WriteString(`}`)
			} else {
				b.WriteString(`]`)
			}
		}
		return b.Bytes()
	}
	cases := map[string][]byte{
		"arrays 9999":         nest("[", "]", 9999, ""),
		"arrays 10000":        nest("[", "]", 10000, ""),
		"arrays 10001":        nest("[", "]", 10001, ""),
		"arrays 100000":       nest("[", "]", 100000, ""),
		"arrays 100000 open":  nest("[", "", 100000, ""),
		"objects 10000":       nest(`{"a":`, "}", 10000, "1"),
		"objects 10001":       nest(`{"a":`, "}", 10001, "1"),
		"mixed 10000":         mixed(10000),
		"mixed 10001":         mixed(10001),
		"arrays 10000 + 1":    nest("[", "]", 10000, "[]"),
		"arrays 256":          nest("[", "]", 256, ""),
		"arrays 257":          nest("[", "]", 257, ""),
		"objects 257":         nest(`{"a":`, "}", 257, "1"),
		"257 then bad":        nest("[", "]", 257, "x"),
		"bad then 257":        []byte("[x" + strings.Repeat("[", 300)),
		"257 in seq":          []byte("[" + strings.Repeat(string(nest("[", "]", 256, ""))+",", 3) + "1]"),
		"arrays 10000 in seq": []byte("[" + strings.Repeat(string(nest("[", "]", 9999, ""))+",", 3) + "1]"),
		"wrong closer deep":   nest("[", "}", 5000, ""),
	}
	for name, doc := range cases {
		if got, want := Valid(doc), stdValidJSON(doc); got != want {
			t.Errorf("%s: Valid = %v, utf8.Valid && json.Valid = %v", name, got, want)
		}
	}
	if !Valid(nest("[", "]", 10000, "")) || Valid(nest("[", "]", 10001, "")) {
		t.Error("depth limit is not exactly 10000 levels")
	}
}

func TestValidJSONLargeDocuments(t *testing.T) {
	doc := benchJSONDoc(1 << 20)
	if len(doc) < 1<<20 || !stdValidJSON(doc) {
		t.Fatalf("bad test document: %d bytes", len(doc))
	}
	if !Valid(doc) {
		t.Fatal("rejects a valid 1 MiB document")
	}
	// Break it in a few ways near the end, where a fast path must still look.
	for _, mut := range []struct {
		name string
		at   int
		with []byte
	}{
		{"invalid UTF-8 in a string", bytes.LastIndex(doc, []byte("caf")) + 3, []byte{0xff}},
		{"surrogate in UTF-8", bytes.LastIndex(doc, []byte("caf")) + 3, []byte{0xed, 0xa0}},
		{"control char in a string", bytes.LastIndex(doc, []byte(`"name"`)) + 2, []byte{0x01}},
		{"missing closer", len(doc) - 1, []byte{' '}},
	} {
		bad := bytes.Clone(doc)
		copy(bad[mut.at:], mut.with)
		if got, want := Valid(bad), stdValidJSON(bad); got != want || got {
			t.Errorf("%s: Valid = %v, stdlib = %v, want both false", mut.name, got, want)
		}
	}
}

func TestValidJSONDoesNotAllocate(t *testing.T) {
	docs := [][]byte{benchJSONDoc(10 << 10), []byte(strings.Repeat("[", 10000) + strings.Repeat("]", 10000)), []byte("\"\xff\"")}
	for _, doc := range docs {
		if n := testing.AllocsPerRun(20, func() { Valid(doc) }); n != 0 {
			t.Errorf("Valid allocates %v times on a %d-byte input", n, len(doc))
		}
	}
}

// TestSWARSpecialFlagsExactlyTheSpecialBytes checks the 8-byte string fast
// path against a byte-by-byte test on every byte value in every position, on
// pairs of special bytes, and on random words.
func TestSWARSpecialFlagsExactlyTheSpecialBytes(t *testing.T) {
	special := func(c byte) bool { return c == '"' || c == '\\' || c < 0x20 || c >= 0x80 }
	check := func(w [8]byte) {
		var want uint64
		for k, c := range w {
			if special(c) {
				want |= 0x80 << (8 * k)
			}
		}
		if got := swarSpecial(binary.LittleEndian.Uint64(w[:])); got != want {
			t.Fatalf("word %q: swarSpecial = %#016x, want %#016x", w[:], got, want)
		}
	}
	base := [8]byte{'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'}
	for pos := range 8 {
		for c := range 256 {
			w := base
			w[pos] = byte(c)
			check(w)
			for pos2 := pos + 1; pos2 < 8; pos2++ {
				for _, c2 := range []byte{0, 0x1f, 0x20, '"', '\\', 0x7f, 0x80, 0xff} {
					w2 := w
					w2[pos2] = c2
					check(w2)
				}
			}
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 200000 {
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], r.Uint64())
		for k := range w {
			if r.IntN(3) > 0 {
				w[k] = byte(0x20 + r.IntN(0x60)) // mostly printable ASCII
			}
		}
		check(w)
	}
}

func FuzzValidJSON(f *testing.F) {
	for _, c := range jsonEdgeCases {
		f.Add([]byte(c))
	}
	f.Add(benchJSONDoc(1))
	f.Add([]byte(`{"id":1,"tags":["a","b"],"nested":{"x":[[],[{}]],"s":"\u00e9\n\"q\"","n":-1.5e-3},"ok":true}`))
	f.Add([]byte("{\"ключ\":\"значение 😀 \\ud83d\\ude00\",\"e\":\"\\u0000\\/\\\\\"}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := Valid(b), stdValidJSON(b); got != want {
			t.Fatalf("Valid(%q) = %v, utf8.Valid && json.Valid = %v", b, got, want)
		}
	})
}

// benchJSONDoc returns a valid JSON document of at least size bytes shaped like
// an API response: an array of records with strings, escapes, non-ASCII text,
// numbers, booleans, nulls and nested objects. benchJSONDoc(1) is one record,
// about 230 bytes.
func benchJSONDoc(size int) []byte {
	var b bytes.Buffer
	b.WriteByte('[')
	for i := 0; i == 0 || b.Len() < size; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":%d,"name":"Customer %d","email":"user%d@example.com","city":"Zürich café",`+
			`"score":%d.%02de-2,"active":%t,"tags":["gold","eu-west-1"],"note":"line1\nline2 \"q\"",`+
			`"address":{"zip":"80%03d","geo":[47.3769,8.5417]},"deleted":null}`, i, i, i, i*37%1000, i%100, i%2 == 0, i%1000)
		if size == 1 {
			return b.Bytes()[1:]
		}
	}
	b.WriteByte(']')
	return b.Bytes()
}

func BenchmarkValidJSON(b *testing.B) {
	for _, doc := range []struct {
		name string
		data []byte
	}{
		{"api", benchJSONDoc(1)},
		{"10KB", benchJSONDoc(10 << 10)},
		{"1MiB", benchJSONDoc(1 << 20)},
	} {
		for _, impl := range []struct {
			name  string
			valid func([]byte) bool
		}{
			{"new", Valid},
			{"stdlib", stdValidJSON},
		} {
			b.Run(fmt.Sprintf("%s/%s", doc.name, impl.name), func(b *testing.B) {
				b.SetBytes(int64(len(doc.data)))
				b.ReportAllocs()
				for b.Loop() {
					if !impl.valid(doc.data) {
						b.Fatal("document rejected")
					}
				}
			})
		}
	}
}

func TestBenchJSONDocSizes(t *testing.T) {
	for _, size := range []int{1, 10 << 10} {
		doc := benchJSONDoc(size)
		if !stdValidJSON(doc) || len(doc) < size || len(doc) > size+300 {
			t.Errorf("benchJSONDoc(%d) is %d bytes or invalid", size, len(doc))
		}
	}
}

// TestBenchmarkValidJSONRuns runs BenchmarkValidJSON once (as
// -benchtime=1x would) so that the ordinary test run exercises it. It
// measures nothing: the numbers come from go test -bench.
func TestBenchmarkValidJSONRuns(t *testing.T) {
	bt := flag.Lookup("test.benchtime")
	old := bt.Value.String()
	if err := bt.Value.Set("1x"); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = bt.Value.Set(old) }()
	var failed bool
	testing.Benchmark(func(b *testing.B) {
		defer func() { failed = b.Failed() }()
		BenchmarkValidJSON(b)
	})
	if failed {
		t.Error("BenchmarkValidJSON failed; see why with: go test -run '^$' -bench '^BenchmarkValidJSON$' -benchtime=1x ./internal/jsonvalid")
	}
}

package dbmanager

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

// plainASCII must agree with its definition on every byte in every
// position of the 8-byte stride and the tail.
func TestPlainASCII(t *testing.T) {
	for n := 1; n <= 17; n++ {
		for pos := range n {
			for c := range 256 {
				b := []byte(strings.Repeat("a", n))
				b[pos] = byte(c)
				s := string(b)
				want := utf8.ValidString(s) && !strings.ContainsRune(s, 0) && c < utf8.RuneSelf
				if got := plainASCII(s); got != want {
					t.Fatalf("plainASCII(%q) = %v; want %v", s, got, want)
				}
			}
		}
	}
	if !plainASCII("") {
		t.Error(`plainASCII("") = false`)
	}
}

func TestValidateValueKeepsItsErrors(t *testing.T) {
	for _, c := range []struct {
		in   string
		want string // "" means accepted
	}{
		{`{"a":[1,2,"é"]}`, ""},
		{"\"\xff\"", "value is not valid UTF-8"},
		{"\xff", "value is not valid UTF-8"},
		{"[\xff", "value is not valid UTF-8"},
		{`{"a":}`, "value is not a valid JSON document"},
		{``, "value is not a valid JSON document"},
		{strings.Repeat("[", 10001) + strings.Repeat("]", 10001), "value is not a valid JSON document"},
	} {
		err := validateValue([]byte(c.in))
		switch {
		case c.want == "" && err != nil:
			t.Errorf("validateValue(%.20q) = %v, want nil", c.in, err)
		case c.want != "" && (!errors.Is(err, ErrInvalid) || !strings.Contains(fmt.Sprint(err), c.want)):
			t.Errorf("validateValue(%.20q) = %v, want ErrInvalid with %q", c.in, err, c.want)
		}
	}
}

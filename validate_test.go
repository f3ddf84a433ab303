package dbmanager

import (
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

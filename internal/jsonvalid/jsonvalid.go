// Package jsonvalid checks that bytes are one valid JSON document in valid
// UTF-8, exactly as utf8.Valid && json.Valid would, in a single pass that does
// not allocate.
package jsonvalid

import (
	"encoding/binary"
	"math/bits"
)

// maxNesting is the deepest nesting of arrays and objects that Valid
// accepts. It equals encoding/json's maxNestingDepth: json.Valid rejects a
// document as soon as it opens container number 10001 without closing one.
const maxNesting = 10000

// Valid reports exactly what utf8.Valid(b) && json.Valid(b) reports, in a
// single pass and without allocating:
//
//   - b is one JSON value (RFC 8259 grammar as encoding/json's scanner reads
//     it), optionally surrounded by the whitespace bytes space, \t, \n and \r
//     and nothing else (no BOM, no NUL, no trailing data);
//   - strings contain no byte below 0x20 and only the escapes \" \\ \/ \b \f
//     \n \r \t and \uXXXX (any four hex digits, lone surrogates included);
//   - numbers follow -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? with no
//     limit on magnitude;
//   - arrays and objects nest at most maxNesting (10000) levels deep;
//   - every byte sequence is valid UTF-8 as utf8.Valid defines it (no
//     overlong forms, no UTF-16 surrogates, nothing above U+10FFFF). Outside
//     strings only ASCII is grammatical, so this is checked in string bodies.
//
// It does not recurse: the container stack is a bit set in a fixed-size array
// (256 levels, and a second pass with 10000 levels for deeper documents), so
// its stack use is bounded (under 2 KB) and deep nesting cannot overflow.
func Valid(b []byte) bool {
	// Most documents nest shallowly: try with a small stack first, so the
	// common case does not pay for clearing the full 10000-level one.
	var shallow [shallowJSONWords]uint64
	if ok, tooDeep := scanJSON(b, shallow[:]); !tooDeep {
		return ok
	}
	return validDeep(b)
}

// shallowJSONWords is the size in 64-bit words of the stack Valid tries
// first; documents nesting deeper than 64*shallowJSONWords levels are
// scanned again with a stack of maxNesting levels.
const shallowJSONWords = 4

// validDeep is Valid with room for maxNesting levels from the start.
//
//go:noinline
func validDeep(b []byte) bool {
	var deep [(maxNesting + 63) / 64]uint64
	ok, _ := scanJSON(b, deep[:])
	return ok
}

// scanJSON does the work of Valid with isObject as the container stack:
// bit d is set when the container at depth d is an object. If b nests deeper
// than isObject can record (and isObject is smaller than maxNesting levels),
// it stops and reports tooDeep, and ok means nothing.
func scanJSON(b []byte, isObject []uint64) (ok, tooDeep bool) {
	maxDepth := min(len(isObject)*64, maxNesting)
	depth := 0
	i := 0
	n := len(b)

value: // expecting the start of a value, possibly after whitespace
	i = skipJSONSpace(b, i)
	if i >= n {
		return false, false
	}
	switch b[i] {
	case '"':
		if i = scanJSONString(b, i+1); i < 0 {
			return false, false
		}
		goto afterValue
	case '{':
		if depth == maxDepth {
			return false, maxDepth < maxNesting
		}
		isObject[depth>>6] |= 1 << (depth & 63)
		depth++
		i = skipJSONSpace(b, i+1)
		if i < n && b[i] == '}' {
			depth--
			i++
			goto afterValue
		}
		goto key
	case '[':
		if depth == maxDepth {
			return false, maxDepth < maxNesting
		}
		isObject[depth>>6] &^= 1 << (depth & 63)
		depth++
		i = skipJSONSpace(b, i+1)
		if i < n && b[i] == ']' {
			depth--
			i++
			goto afterValue
		}
		goto value
	case 't':
		if n-i < 4 || b[i+1] != 'r' || b[i+2] != 'u' || b[i+3] != 'e' {
			return false, false
		}
		i += 4
		goto afterValue
	case 'f':
		if n-i < 5 || b[i+1] != 'a' || b[i+2] != 'l' || b[i+3] != 's' || b[i+4] != 'e' {
			return false, false
		}
		i += 5
		goto afterValue
	case 'n':
		if n-i < 4 || b[i+1] != 'u' || b[i+2] != 'l' || b[i+3] != 'l' {
			return false, false
		}
		i += 4
		goto afterValue
	default:
		if i = scanJSONNumber(b, i); i < 0 {
			return false, false
		}
		goto afterValue
	}

key: // expecting an object key; whitespace before it is already skipped
	if i >= n || b[i] != '"' {
		return false, false
	}
	if i = scanJSONString(b, i+1); i < 0 {
		return false, false
	}
	i = skipJSONSpace(b, i)
	if i >= n || b[i] != ':' {
		return false, false
	}
	i++
	goto value

afterValue: // a value just ended at b[i-1]
	i = skipJSONSpace(b, i)
	if depth == 0 {
		return i == n, false
	}
	if i >= n {
		return false, false
	}
	{
		inObject := isObject[(depth-1)>>6]&(1<<((depth-1)&63)) != 0
		switch b[i] {
		case ',':
			i++
			if inObject {
				i = skipJSONSpace(b, i)
				goto key
			}
			goto value
		case ']':
			if inObject {
				return false, false
			}
		case '}':
			if !inObject {
				return false, false
			}
		default:
			return false, false
		}
		depth--
		i++
		goto afterValue
	}
}

// skipJSONSpace returns the index of the first byte at or after i that is not
// JSON whitespace (space, \t, \n, \r), or len(b).
func skipJSONSpace(b []byte, i int) int {
	for i < len(b) && b[i] <= ' ' && (b[i] == ' ' || b[i] == '\n' || b[i] == '\t' || b[i] == '\r') {
		i++
	}
	return i
}

// scanJSONNumber checks the number starting at b[i] and returns the index just
// past it, or -1 if b[i:] does not start with a JSON number. What follows the
// number is the caller's business.
func scanJSONNumber(b []byte, i int) int {
	n := len(b)
	if b[i] == '-' {
		i++
		if i >= n {
			return -1
		}
	}
	switch {
	case b[i] == '0':
		i++
	case '1' <= b[i] && b[i] <= '9':
		i++
		for i < n && '0' <= b[i] && b[i] <= '9' {
			i++
		}
	default:
		return -1
	}
	if i < n && b[i] == '.' {
		i++
		if i >= n || b[i] < '0' || b[i] > '9' {
			return -1
		}
		for i < n && '0' <= b[i] && b[i] <= '9' {
			i++
		}
	}
	if i < n && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < n && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= n || b[i] < '0' || b[i] > '9' {
			return -1
		}
		for i < n && '0' <= b[i] && b[i] <= '9' {
			i++
		}
	}
	return i
}

// SWAR constants: one byte value repeated in each of the 8 bytes of a word.
const (
	swarLow7  = 0x7F7F7F7F7F7F7F7F
	swarHighs = 0x8080808080808080
	swarQuote = 0x2222222222222222 // '"'
	swarSlash = 0x5C5C5C5C5C5C5C5C // '\\'
	swarAdd60 = 0x6060606060606060 // 0x20 + 0x60 = 0x80
)

// swarSpecial returns a word with the high bit set in exactly those bytes of x
// that are '"', '\\', below 0x20 or at least 0x80 (the bytes a string body
// cannot skip), and all other bits clear. Each byte is computed from its low
// 7 bits with additions that cannot carry into the next byte, so there are no
// false positives.
func swarSpecial(x uint64) uint64 {
	y := x & swarLow7
	// High bit set by the addition when the 7-bit value is >= 0x20, and
	// when it differs from '"' or from '\\' respectively.
	plain := (y + swarAdd60) & ((y ^ swarQuote) + swarLow7) & ((y ^ swarSlash) + swarLow7)
	return (x | ^plain) & swarHighs
}

// scanJSONString checks the body of a string whose opening quote is at b[i-1]
// and returns the index just past the closing quote, or -1 if the string is
// malformed, unterminated or not valid UTF-8.
func scanJSONString(b []byte, i int) int {
	n := len(b)
	for {
		// ASCII fast path: skip 8 ordinary bytes at a time.
		for i+8 <= n {
			m := swarSpecial(binary.LittleEndian.Uint64(b[i:]))
			if m != 0 {
				i += bits.TrailingZeros64(m) >> 3
				break
			}
			i += 8
		}
		if i >= n {
			return -1
		}
		c := b[i]
		switch {
		case c == '"':
			return i + 1
		case c == '\\':
			if i+1 >= n {
				return -1
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if n-i < 6 || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
					return -1
				}
				i += 6
			default:
				return -1
			}
		case c < 0x20:
			return -1
		case c < 0x80:
			i++
		default:
			size := utf8SeqLen(b[i:])
			if size == 0 {
				return -1
			}
			i += size
		}
	}
}

// isHex reports whether c is an ASCII hexadecimal digit.
func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// utf8SeqLen returns the length of the valid multi-byte UTF-8 sequence at the
// start of p (whose first byte is >= 0x80), or 0 if it is not one. Valid means
// exactly what utf8.Valid accepts: no overlong forms, no surrogates
// (U+D800..U+DFFF), nothing above U+10FFFF.
func utf8SeqLen(p []byte) int {
	c := p[0]
	// lo..hi is the range allowed for the second byte; later bytes are 80..BF.
	var size int
	lo, hi := byte(0x80), byte(0xBF)
	switch {
	case c < 0xC2:
		return 0 // continuation byte or overlong 2-byte lead
	case c < 0xE0:
		size = 2
	case c < 0xF0:
		size = 3
		if c == 0xE0 {
			lo = 0xA0 // overlong
		} else if c == 0xED {
			hi = 0x9F // surrogates
		}
	case c < 0xF5:
		size = 4
		if c == 0xF0 {
			lo = 0x90 // overlong
		} else if c == 0xF4 {
			hi = 0x8F // above U+10FFFF
		}
	default:
		return 0
	}
	if len(p) < size || p[1] < lo || p[1] > hi {
		return 0
	}
	for k := 2; k < size; k++ {
		if p[k] < 0x80 || p[k] > 0xBF {
			return 0
		}
	}
	return size
}

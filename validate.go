package dbmanager

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/gatewaykit/dbmanager/internal/jsonvalid"
)

// validateName checks a collection name or key against the contract.
func validateName(what, s string, max int) error {
	if plainName(s, max) {
		return nil // the common case, in one pass
	}
	switch {
	case s == "":
		return fmt.Errorf("%w: empty %s", ErrInvalid, what)
	case len(s) > max:
		return fmt.Errorf("%w: %s is %d bytes, over the limit of %d", ErrInvalid, what, len(s), max)
	case !utf8.ValidString(s):
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalid, what)
	case strings.IndexByte(s, 0) >= 0:
		return fmt.Errorf("%w: %s contains a NUL byte", ErrInvalid, what)
	}
	return nil
}

// plainName reports whether s is a valid name of at most max bytes that
// is ASCII without NUL, the common case checked in one pass (inlined).
func plainName(s string, max int) bool {
	return len(s) != 0 && len(s) <= max && plainASCII(s)
}

// plainASCII reports whether s is ASCII without NUL: valid UTF-8 that
// needs no further check. It looks at eight bytes at a time.
func plainASCII(s string) bool {
	const high, ones = 0x8080808080808080, 0x0101010101010101
	i := 0
	for ; i+8 <= len(s); i += 8 {
		x := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
			uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
		// A byte >= 0x80, or a zero byte (the classic has-zero-byte test).
		if x&high != 0 || (x-ones)&^x&high != 0 {
			return false
		}
	}
	for ; i < len(s); i++ {
		if c := s[i]; c == 0 || c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// validateCursor checks ListOptions.Prefix and After, which may be empty.
func validateCursor(what, s string) error {
	if s == "" {
		return nil
	}
	if !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
		return fmt.Errorf("%w: %s is not valid UTF-8 without NUL", ErrInvalid, what)
	}
	return nil
}

// validateValue checks that v is one valid JSON document in valid UTF-8,
// accepting exactly what utf8.Valid(v) && json.Valid(v) accepts. jsonvalid.Valid
// does both checks in one pass; only a rejected value pays for utf8.Valid,
// to say which of the two failed.
func validateValue(v []byte) error {
	switch {
	case len(v) > MaxValueLen:
		return fmt.Errorf("%w: value is %d bytes, over the limit of %d", ErrInvalid, len(v), MaxValueLen)
	case jsonvalid.Valid(v):
		return nil
	case !utf8.Valid(v):
		return fmt.Errorf("%w: value is not valid UTF-8", ErrInvalid)
	}
	return fmt.Errorf("%w: value is not a valid JSON document", ErrInvalid)
}

// resolveWriteOptions applies opts and checks they make sense together.
// Without options (most calls) it costs nothing: it is inlined.
func resolveWriteOptions(op string, opts []WriteOption) (writeConditions, error) {
	if len(opts) == 0 {
		return writeConditions{}, nil
	}
	return applyWriteOptions(op, opts)
}

func applyWriteOptions(op string, opts []WriteOption) (writeConditions, error) {
	var c writeConditions
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	switch {
	case c.versionSet && c.ifVersion <= 0:
		return c, fmt.Errorf("%w: IfVersion(%d): versions start at 1", ErrInvalid, c.ifVersion)
	case c.versionSet && c.ifAbsent:
		return c, fmt.Errorf("%w: IfVersion and IfAbsent together can never hold", ErrInvalid)
	case c.ifAbsent && op == "delete":
		return c, fmt.Errorf("%w: IfAbsent makes no sense for delete", ErrInvalid)
	}
	return c, nil
}

// resolveListOptions checks o and applies the default and maximum limit.
func resolveListOptions(o ListOptions) (ListOptions, error) {
	if err := validateCursor("prefix", o.Prefix); err != nil {
		return o, err
	}
	if err := validateCursor("cursor", o.After); err != nil {
		return o, err
	}
	switch {
	case o.Limit < 0:
		return o, fmt.Errorf("%w: negative limit %d", ErrInvalid, o.Limit)
	case o.Limit == 0:
		o.Limit = DefaultListLimit
	case o.Limit > MaxListLimit:
		o.Limit = MaxListLimit
	}
	return o, nil
}

// quote shows a name in an error message: quoted, and shortened when long.
func quote(s string) string {
	const max = 64
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return strconv.Quote(s[:cut]) + "..."
	}
	return strconv.Quote(s)
}

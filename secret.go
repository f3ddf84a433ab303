package dbmanager

import (
	"fmt"
	"log/slog"
)

// Secret holds a sensitive string (a password or a connection string that
// may carry one). Printing a Secret with any fmt verb, logging it with slog
// or encoding it as JSON shows "REDACTED" (or "" when empty); only Reveal
// returns the value. The value sits behind a pointer, so even a reflective
// print of a struct that holds a Secret in an unexported field shows an
// address, never the text.
type Secret struct{ p *string }

// NewSecret wraps s. NewSecret("") is the empty (unset) Secret.
func NewSecret(s string) Secret {
	if s == "" {
		return Secret{}
	}
	return Secret{p: &s}
}

// Reveal returns the secret value. Use it only to hand the value to the
// code that needs it (a driver), never to print it.
func (s Secret) Reveal() string {
	if s.p == nil {
		return ""
	}
	return *s.p
}

// IsSet reports whether the secret is non-empty.
func (s Secret) IsSet() bool { return s.p != nil && *s.p != "" }

// String returns "REDACTED" for a set secret and "" for an empty one.
func (s Secret) String() string {
	if s.IsSet() {
		return "REDACTED"
	}
	return ""
}

// GoString keeps %#v from showing the value.
func (s Secret) GoString() string { return fmt.Sprintf("dbmanager.Secret(%q)", s.String()) }

// Format makes every fmt verb print String.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		fmt.Fprint(f, s.GoString())
		return
	}
	fmt.Fprint(f, s.String())
}

// LogValue keeps the value out of slog output.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalJSON encodes the redacted form.
func (s Secret) MarshalJSON() ([]byte, error) { return fmt.Appendf(nil, "%q", s.String()), nil }

// MarshalText encodes the redacted form (used by encoding/xml, slog, ...).
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Package secret holds values that must never be printed: ACL tokens,
// bearer tokens, private keys. A String prints as "[redacted]" through
// every path a value takes to a log, a debug page or an error message —
// fmt (every verb, also as a field of a struct printed with %v or %+v),
// slog, encoding/json, encoding.TextMarshaler and YAML — and only Reveal
// gives the value back.
//
// It decodes from plain strings in YAML and JSON, so a config struct can
// declare a field as secret.String and its file stays as it was.
package secret

import (
	"crypto/subtle"
	"fmt"
	"log/slog"
)

// Redacted is what a set String prints as.
const Redacted = "[redacted]"

// String is a secret string. The zero value is the empty (unset) secret,
// which prints as "" so that logs tell "not configured" from "set".
//
// The value sits behind a pointer so that a String in an unexported
// struct field, which fmt prints without calling its methods, shows up
// as an address and not as its contents. Copies share the value; Strings
// are immutable.
type String struct {
	v *string
}

// New returns a secret holding s.
func New(s string) String {
	if s == "" {
		return String{}
	}
	return String{v: &s}
}

// Reveal returns the secret's value. Call it only where the value is
// used: an HTTP header, a TLS key, a comparison.
func (s String) Reveal() string {
	if s.v == nil {
		return ""
	}
	return *s.v
}

// IsZero reports whether the secret is unset.
func (s String) IsZero() bool { return s.v == nil }

// Equal reports, in constant time for equal lengths, whether s and o
// hold the same value. go-cmp uses it.
func (s String) Equal(o String) bool {
	return subtle.ConstantTimeCompare([]byte(s.Reveal()), []byte(o.Reveal())) == 1
}

func (s String) shown() string {
	if s.v == nil {
		return ""
	}
	return Redacted
}

// String returns "[redacted]", or "" when unset.
func (s String) String() string { return s.shown() }

// GoString is for %#v.
func (s String) GoString() string { return fmt.Sprintf("secret.String(%q)", s.shown()) }

// Format prints the redacted form for every verb, so that %x or %q
// cannot bypass String.
func (s String) Format(f fmt.State, verb rune) {
	switch verb {
	case 'q':
		fmt.Fprintf(f, "%q", s.shown())
	case 'v':
		if f.Flag('#') {
			fmt.Fprint(f, s.GoString())
			return
		}
		fmt.Fprint(f, s.shown())
	default:
		fmt.Fprint(f, s.shown())
	}
}

// LogValue makes slog print the redacted form.
func (s String) LogValue() slog.Value { return slog.StringValue(s.shown()) }

// MarshalText returns the redacted form; encoding/json, YAML and most
// other encoders fall back to it.
func (s String) MarshalText() ([]byte, error) { return []byte(s.shown()), nil }

// MarshalJSON returns the redacted form as a JSON string.
func (s String) MarshalJSON() ([]byte, error) { return fmt.Appendf(nil, "%q", s.shown()), nil }

// MarshalYAML returns the redacted form.
func (s String) MarshalYAML() (any, error) { return s.shown(), nil }

// UnmarshalText reads a plain string, so YAML and JSON files hold the
// value as they would for a string field.
func (s *String) UnmarshalText(b []byte) error {
	*s = New(string(b))
	return nil
}

var (
	_ fmt.Stringer   = String{}
	_ fmt.GoStringer = String{}
	_ fmt.Formatter  = String{}
	_ slog.LogValuer = String{}
)

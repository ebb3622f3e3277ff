// Package httpmatch holds the HTTP header matcher that both Consul
// intention permissions (package policy) and service-router routes
// (package sidecar/route) compile their header criteria into: Envoy's
// HeaderMatcher, as Consul generates it for the RBAC filter and for route
// matches.
//
// A Header is compiled once, when rules or routes are loaded, and is then
// read concurrently by request goroutines: it is immutable, and Matches
// does not allocate.
package httpmatch

import (
	"errors"
	"fmt"
	"net/textproto"
	"regexp"
	"regexp/syntax"
	"strings"
)

// HeaderSpec is the configuration of one header matcher. Exactly one of
// Present, Exact, Prefix, Suffix, Contains and Regex is set.
type HeaderSpec struct {
	// Name is the header field name, in any case; pseudo-headers
	// (":authority") are not supported.
	Name string
	// Present matches when the header is present, whatever its value.
	Present bool
	// Exact, Prefix, Suffix and Contains compare the value as strings;
	// Regex (RE2 syntax) must match the whole value.
	Exact, Prefix, Suffix, Contains, Regex string
	// Invert negates the match. With Present, the header must be absent.
	Invert bool
	// IgnoreCase compares Exact, Prefix, Suffix and Contains without
	// ASCII case, as Envoy's ignore_case does (absl's EqualsIgnoreCase):
	// only A-Z fold, so a prefix, suffix or substring matched has the
	// length of the one configured. It does not apply to Present or Regex
	// (write (?i) in the regex).
	IgnoreCase bool
	// InvertMatchesAbsent says what an inverted Exact, Prefix, Suffix,
	// Contains or Regex matcher answers for an absent header. Envoy's
	// HeaderMatcher answers false: of an absent header, only an inverted
	// Present matches; that is false here, and route matching uses it.
	// With true, an absent header is "not equal" and matches (the
	// behaviour package policy has always had for intentions).
	InvertMatchesAbsent bool
}

// Header is a compiled HeaderSpec. The zero value is not usable; get one
// from CompileHeader.
type Header struct {
	name                string // canonical
	kind                uint8
	value               string // ASCII lower-cased when ignoreCase
	re                  *regexp.Regexp
	invert              bool
	ignoreCase          bool
	invertMatchesAbsent bool
}

const (
	kindPresent = iota
	kindExact
	kindPrefix
	kindSuffix
	kindContains
	kindRegex
)

// CompileHeader validates s and compiles it. Errors do not repeat the
// header's name; the caller says which matcher failed.
func CompileHeader(s HeaderSpec) (Header, error) {
	if s.Name == "" || strings.HasPrefix(s.Name, ":") || strings.ContainsAny(s.Name, " \t\r\n:") {
		return Header{}, fmt.Errorf("name %q is not a header field name", s.Name)
	}
	h := Header{name: textproto.CanonicalMIMEHeaderKey(s.Name), invert: s.Invert, ignoreCase: s.IgnoreCase,
		invertMatchesAbsent: s.InvertMatchesAbsent}
	n := 0
	if s.Present {
		n++
		h.kind = kindPresent
	}
	for _, v := range [...]struct {
		kind uint8
		v    string
	}{{kindExact, s.Exact}, {kindPrefix, s.Prefix}, {kindSuffix, s.Suffix}, {kindContains, s.Contains}, {kindRegex, s.Regex}} {
		if v.v != "" {
			n++
			h.kind, h.value = v.kind, v.v
		}
	}
	if n != 1 {
		return Header{}, errors.New("exactly one of Present, Exact, Prefix, Suffix, Contains and Regex")
	}
	switch {
	case h.kind == kindRegex:
		if s.IgnoreCase {
			return Header{}, errors.New("ignore case does not apply to Regex (use (?i))")
		}
		re, err := CompileFull(h.value)
		if err != nil {
			return Header{}, fmt.Errorf("regex: %w", err)
		}
		h.re = re
	case s.IgnoreCase && h.kind == kindPresent:
		return Header{}, errors.New("ignore case does not apply to Present")
	case s.IgnoreCase:
		h.value = lowerASCII(h.value)
	}
	return h, nil
}

// CompileFull compiles an RE2 expression that must match a whole string,
// as Envoy's safe_regex does: MatchString of the result reports a full
// match. expr is compiled on its own first, so that an expression that is
// not valid alone (e.g. "a)|(b") cannot escape the anchoring group; the
// error then quotes expr as given. The anchoring group wraps expr as
// regexp/syntax re-serializes it, not as written: a valid `\Q...` quote
// that runs to the end of expr would otherwise swallow the group's ")$".
func CompileFull(expr string) (*regexp.Regexp, error) {
	if _, err := regexp.Compile(expr); err != nil {
		return nil, err
	}
	re, err := syntax.Parse(expr, syntax.Perl) // the flags regexp.Compile uses
	if err != nil {
		return nil, err
	}
	return regexp.Compile(`^(?:` + re.String() + `)$`)
}

// Name is the header's canonical name (textproto.CanonicalMIMEHeaderKey),
// the form lookups take.
func (h *Header) Name() string { return h.name }

// Matches reports whether a request whose header carries value (when
// present) matches, Invert applied. A caller that sees the header more
// than once decides what value stands for them all (Envoy joins them with
// ","; package policy refuses the request).
func (h *Header) Matches(value string, present bool) bool {
	if !present && h.kind != kindPresent {
		return h.invert && h.invertMatchesAbsent
	}
	return h.matches(value, present) != h.invert
}

// matches applies the matcher, ignoring Invert; value is only read when
// present.
func (h *Header) matches(v string, present bool) bool {
	switch h.kind {
	case kindPresent:
		return present
	case kindRegex:
		return h.re.MatchString(v)
	case kindExact:
		if h.ignoreCase {
			return len(v) == len(h.value) && equalLowerASCII(v, h.value)
		}
		return v == h.value
	case kindPrefix:
		if h.ignoreCase {
			return len(v) >= len(h.value) && equalLowerASCII(v[:len(h.value)], h.value)
		}
		return strings.HasPrefix(v, h.value)
	case kindSuffix:
		if h.ignoreCase {
			return len(v) >= len(h.value) && equalLowerASCII(v[len(v)-len(h.value):], h.value)
		}
		return strings.HasSuffix(v, h.value)
	default: // kindContains
		if h.ignoreCase {
			return containsFold(v, h.value)
		}
		return strings.Contains(v, h.value)
	}
}

// containsFold reports whether ASCII lower-case sub occurs in s, ignoring
// ASCII case, without allocating.
func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if equalLowerASCII(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}

// equalLowerASCII reports whether s, with A-Z lower-cased, is lower, which
// is ASCII lower-case and as long as s.
func equalLowerASCII(s, lower string) bool {
	for i := range len(lower) {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

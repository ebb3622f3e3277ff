package httpmatch

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// PathSpec is the configuration of a path matcher: at most one of Exact,
// Prefix and Regex; none matches every path.
type PathSpec struct {
	// Exact must equal the path; Prefix must begin it (a plain string
	// prefix: "/admin" also covers "/administrator"). Both start with "/".
	Exact, Prefix string
	// Regex (RE2 syntax) must match the whole path.
	Regex string
	// IgnoreCase compares Exact and Prefix without ASCII case, as Envoy's
	// case_sensitive=false does: only A-Z fold, so what a prefix matched
	// has the prefix's length. It does not apply to Regex (Envoy ignores
	// it there too).
	IgnoreCase bool
}

// Path is a compiled PathSpec; the zero value matches every path.
type Path struct {
	kind  uint8
	value string // lower-cased when fold
	re    *regexp.Regexp
	fold  bool
}

const (
	pathAny = iota
	pathExact
	pathPrefix
	pathRegex
)

// PathError is a CompilePath error. Field is the spec field at fault
// ("PathExact", "PathPrefix", "PathRegex"; "" when it is their
// combination) and Err what is wrong with it.
type PathError struct {
	Field string
	Err   error
}

func (e *PathError) Error() string {
	if e.Field == "PathRegex" {
		return "path regex: " + e.Err.Error()
	}
	return e.Err.Error()
}

func (e *PathError) Unwrap() error { return e.Err }

// CompilePath validates s and compiles it; the error is a *PathError.
func CompilePath(s PathSpec) (Path, error) {
	var p Path
	n := 0
	for _, v := range [...]struct {
		kind uint8
		v    string
	}{{pathExact, s.Exact}, {pathPrefix, s.Prefix}, {pathRegex, s.Regex}} {
		if v.v != "" {
			n++
			p.kind, p.value = v.kind, v.v
		}
	}
	if n > 1 {
		return Path{}, &PathError{Err: errors.New("at most one of PathExact, PathPrefix and PathRegex")}
	}
	switch p.kind {
	case pathExact, pathPrefix:
		if !strings.HasPrefix(p.value, "/") {
			field := "PathPrefix"
			if p.kind == pathExact {
				field = "PathExact"
			}
			return Path{}, &PathError{Field: field, Err: fmt.Errorf("path %q must start with /", p.value)}
		}
		if s.IgnoreCase {
			p.fold, p.value = true, lowerASCII(p.value)
		}
	case pathRegex:
		re, err := CompileFull(p.value)
		if err != nil {
			return Path{}, &PathError{Field: "PathRegex", Err: err}
		}
		p.re, p.value = re, ""
	}
	return p, nil
}

// Matches reports whether path matches.
func (p *Path) Matches(path string) bool {
	switch p.kind {
	case pathExact:
		return len(path) == len(p.value) && p.hasPrefix(path)
	case pathPrefix:
		return p.hasPrefix(path)
	case pathRegex:
		return p.re.MatchString(path)
	default:
		return true
	}
}

func (p *Path) hasPrefix(s string) bool {
	if !p.fold {
		return strings.HasPrefix(s, p.value)
	}
	return len(s) >= len(p.value) && equalLowerASCII(s[:len(p.value)], p.value)
}

func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

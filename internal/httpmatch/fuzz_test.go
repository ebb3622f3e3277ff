package httpmatch

import (
	"errors"
	"regexp"
	"strings"
	"testing"
)

// IgnoreCase folds ASCII only, as Envoy's ignore_case (absl's
// EqualsIgnoreCase) and the config reference say: with Unicode folding a
// prefix "k" missed "\u212a..." (the Kelvin sign folds to k but is three
// bytes), so Exact matched a value that Prefix with the same string did not.
func TestIgnoreCaseIsASCII(t *testing.T) {
	for _, tt := range []struct {
		spec  HeaderSpec
		value string
		want  bool
	}{
		{HeaderSpec{Name: "x", Exact: "k", IgnoreCase: true}, "K", true},
		{HeaderSpec{Name: "x", Exact: "k", IgnoreCase: true}, "\u212a", false},
		{HeaderSpec{Name: "x", Prefix: "k", IgnoreCase: true}, "\u212aa", false},
		{HeaderSpec{Name: "x", Exact: "é", IgnoreCase: true}, "É", false},
		{HeaderSpec{Name: "x", Exact: "\xff", IgnoreCase: true}, "\ufffd", false},
		{HeaderSpec{Name: "x", Suffix: "İ", IgnoreCase: true}, "aİ", true},
		{HeaderSpec{Name: "x", Contains: "STRASSE", IgnoreCase: true}, "die strasse", true},
	} {
		h, err := CompileHeader(tt.spec)
		if err != nil {
			t.Fatal(err)
		}
		if got := h.Matches(tt.value, true); got != tt.want {
			t.Errorf("%+v on %q = %v, want %v", tt.spec, tt.value, got, tt.want)
		}
	}
}

// A regex whose \Q quote runs to its end is valid RE2 (Envoy accepts it);
// wrapped as written, the quote swallowed the anchoring group's ")$".
func TestCompileFullQuote(t *testing.T) {
	re, err := CompileFull(`\Q/v1.0(`)
	if err != nil {
		t.Fatal(err)
	}
	if !re.MatchString("/v1.0(") || re.MatchString("/v1x0(") || re.MatchString("/v1.0(x") {
		t.Fatalf("%s matches the wrong strings", re)
	}
}

// fullMatch is the reference for a whole-string match: leftmost-longest
// finds a match from 0 to the end whenever there is one.
func fullMatch(t *testing.T, expr, v string) (bool, error) {
	re, err := regexp.Compile(expr)
	if err != nil {
		return false, err
	}
	re.Longest()
	loc := re.FindStringIndex(v)
	return loc != nil && loc[0] == 0 && loc[1] == len(v), nil
}

// lowerASCII's reference: strings.Map over bytes, not runes.
func refLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c | 0x20
		}
	}
	return string(b)
}

// FuzzHeader checks a compiled header matcher against a model: the string
// comparisons on ASCII-lower-cased strings when IgnoreCase, the regex
// against a leftmost-longest full match, Invert and absent headers as
// documented; and the implications that make a policy predictable (an
// Exact match is also a Prefix, Suffix and Contains match).
func FuzzHeader(f *testing.F) {
	for _, s := range []struct {
		kind         uint8
		spec, v      string
		invert, fold bool
	}{
		{1, "abc", "abc", false, false}, {1, "AbC", "aBc", false, true}, {1, "k", "\u212a", false, true},
		{2, "ab", "abc", true, false}, {2, "K", "\u212aX", false, true}, {3, "yz", "xyz", false, true},
		{4, "mid", "aMIDst", false, true}, {4, "", "x", false, false}, {5, "a|b", "ab", false, false},
		{5, `a)|(b`, "b", false, false}, {5, `\Qa.b`, "a.b", false, false}, {5, `(?i)ab`, "AB", true, false},
		{5, `(?m)^a$`, "a\na", false, false}, {5, `\x{212a}`, "K", false, false}, {0, "", "", true, false},
		{3, "\xff", "\ufffd", false, true}, {1, "İ", "i̇", false, true},
	} {
		f.Add(s.kind, s.spec, s.v, true, s.invert, s.fold)
		f.Add(s.kind, s.spec, s.v, false, s.invert, s.fold)
	}
	f.Fuzz(func(t *testing.T, kind uint8, spec, v string, present, invert, fold bool) {
		hs := HeaderSpec{Name: "X-Test", Invert: invert, IgnoreCase: fold}
		switch kind % 6 {
		case 0:
			hs.Present = true
		case 1:
			hs.Exact = spec
		case 2:
			hs.Prefix = spec
		case 3:
			hs.Suffix = spec
		case 4:
			hs.Contains = spec
		case 5:
			hs.Regex = spec
		}
		h, err := CompileHeader(hs)
		if err != nil {
			switch {
			case kind%6 != 0 && spec == "":
			case fold && (kind%6 == 0 || kind%6 == 5):
			case kind%6 == 5:
				if _, rerr := regexp.Compile(spec); rerr == nil {
					t.Fatalf("regex %q: valid RE2 refused: %v", spec, err)
				}
			default:
				t.Fatalf("%+v refused: %v", hs, err)
			}
			return
		}
		got := h.Matches(v, present)
		var want bool
		if kind%6 == 0 {
			want = present != invert
		} else if !present {
			want = false // an inverted matcher answers false for an absent header (Envoy)
		} else {
			a, b := v, spec
			if fold {
				a, b = refLower(v), refLower(spec)
			}
			switch kind % 6 {
			case 1:
				want = a == b
			case 2:
				want = strings.HasPrefix(a, b)
			case 3:
				want = strings.HasSuffix(a, b)
			case 4:
				want = strings.Contains(a, b)
			case 5:
				if want, err = fullMatch(t, spec, v); err != nil {
					t.Fatalf("regex %q compiled by CompileHeader but not by regexp: %v", spec, err)
				}
			}
			want = want != invert
		}
		if got != want {
			t.Fatalf("%+v on %q (present %v) = %v, want %v", hs, v, present, got, want)
		}
		if kind%6 == 1 && present && got != invert {
			// Exact matched: Prefix, Suffix and Contains of the same string
			// match too.
			for _, other := range []HeaderSpec{
				{Name: "x", Prefix: spec, IgnoreCase: fold}, {Name: "x", Suffix: spec, IgnoreCase: fold},
				{Name: "x", Contains: spec, IgnoreCase: fold},
			} {
				o, err := CompileHeader(other)
				if err != nil || !o.Matches(v, true) {
					t.Fatalf("%q: Exact %q matches but %+v does not (%v)", v, spec, other, err)
				}
			}
		}
		hs.InvertMatchesAbsent = true
		if h2, _ := CompileHeader(hs); kind%6 != 0 && !present && h2.Matches(v, false) != invert {
			t.Fatalf("%+v: absent header = %v, want %v", hs, h2.Matches(v, false), invert)
		}
	})
}

// FuzzPath checks a compiled path matcher against the same model, and
// that an IgnoreCase prefix match covers exactly the prefix's bytes.
func FuzzPath(f *testing.F) {
	for _, s := range []struct {
		kind    uint8
		spec, p string
		fold    bool
	}{
		{1, "/a", "/a", false}, {1, "/Ab", "/aB", true}, {2, "/K", "/\u212a", true}, {2, "/admin", "/administrator", false},
		{3, "/a|/b+", "/bb", false}, {3, `\Q/v1.0`, "/v1.0", false}, {3, "/a", "/A", true}, {0, "", "*", false},
		{1, "a", "a", false}, {3, "(", "(", false},
	} {
		f.Add(s.kind, s.spec, s.p, s.fold)
	}
	f.Fuzz(func(t *testing.T, kind uint8, spec, path string, fold bool) {
		ps := PathSpec{IgnoreCase: fold}
		switch kind % 4 {
		case 1:
			ps.Exact = spec
		case 2:
			ps.Prefix = spec
		case 3:
			ps.Regex = spec
		}
		p, err := CompilePath(ps)
		if err != nil {
			var pe *PathError
			if !errors.As(err, &pe) {
				t.Fatalf("%+v: error %v is not a *PathError", ps, err)
			}
			switch {
			case kind%4 == 3:
				if _, rerr := regexp.Compile(spec); rerr == nil {
					t.Fatalf("regex %q: valid RE2 refused: %v", spec, err)
				}
			case kind%4 != 0 && !strings.HasPrefix(spec, "/") && spec != "":
			default:
				t.Fatalf("%+v refused: %v", ps, err)
			}
			return
		}
		var want bool
		a, b := path, spec
		if fold && kind%4 != 3 {
			a, b = refLower(path), refLower(spec)
		}
		switch kind % 4 {
		case 1:
			want = spec == "" || a == b
		case 2:
			want = strings.HasPrefix(a, b)
		case 3:
			if spec == "" {
				want = true
			} else if want, err = fullMatch(t, spec, path); err != nil {
				t.Fatal(err)
			}
		default:
			want = true
		}
		if got := p.Matches(path); got != want {
			t.Fatalf("%+v on %q = %v, want %v", ps, path, got, want)
		}
	})
}

package httpmatch

import (
	"strings"
	"testing"
)

func TestHeader(t *testing.T) {
	type in struct {
		v       string
		present bool
	}
	absent := in{}
	for _, tt := range []struct {
		name string
		spec HeaderSpec
		yes  []in
		no   []in
	}{
		{"present", HeaderSpec{Name: "x", Present: true}, []in{{"", true}, {"a", true}}, []in{absent}},
		{"present inverted", HeaderSpec{Name: "x", Present: true, Invert: true}, []in{absent}, []in{{"", true}}},
		{"exact", HeaderSpec{Name: "x", Exact: "a"}, []in{{"a", true}}, []in{{"A", true}, absent}},
		{"exact inverted, Envoy", HeaderSpec{Name: "x", Exact: "a", Invert: true}, []in{{"b", true}}, []in{{"a", true}, absent}},
		{"exact inverted, absent matches", HeaderSpec{Name: "x", Exact: "a", Invert: true, InvertMatchesAbsent: true},
			[]in{{"b", true}, absent}, []in{{"a", true}}},
		{"exact ignore case", HeaderSpec{Name: "x", Exact: "AbC", IgnoreCase: true}, []in{{"abc", true}, {"ABC", true}}, []in{{"abd", true}}},
		{"prefix", HeaderSpec{Name: "x", Prefix: "ab"}, []in{{"abc", true}}, []in{{"a", true}, {"Abc", true}}},
		{"prefix ignore case", HeaderSpec{Name: "x", Prefix: "AB", IgnoreCase: true}, []in{{"abc", true}}, []in{{"a", true}}},
		{"suffix", HeaderSpec{Name: "x", Suffix: "yz"}, []in{{"xyz", true}}, []in{{"z", true}}},
		{"suffix ignore case", HeaderSpec{Name: "x", Suffix: "YZ", IgnoreCase: true}, []in{{"xyz", true}}, []in{{"y", true}}},
		{"contains", HeaderSpec{Name: "x", Contains: "mid"}, []in{{"amidst", true}}, []in{{"MID", true}}},
		{"contains ignore case", HeaderSpec{Name: "x", Contains: "MiD", IgnoreCase: true}, []in{{"aMIDst", true}}, []in{{"mi", true}}},
		{"regex anchored", HeaderSpec{Name: "x", Regex: "a|b"}, []in{{"a", true}, {"b", true}}, []in{{"ab", true}, {"xa", true}, absent}},
	} {
		h, err := CompileHeader(tt.spec)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		for _, x := range tt.yes {
			if !h.Matches(x.v, x.present) {
				t.Errorf("%s: %+v does not match", tt.name, x)
			}
		}
		for _, x := range tt.no {
			if h.Matches(x.v, x.present) {
				t.Errorf("%s: %+v matches", tt.name, x)
			}
		}
	}
	h, _ := CompileHeader(HeaderSpec{Name: "x-tenant-id", Present: true})
	if h.Name() != "X-Tenant-Id" {
		t.Fatalf("Name() = %q", h.Name())
	}
}

func TestCompileHeaderErrors(t *testing.T) {
	for _, tt := range []struct {
		spec HeaderSpec
		want string
	}{
		{HeaderSpec{Name: "", Present: true}, "not a header field name"},
		{HeaderSpec{Name: ":authority", Exact: "a"}, "not a header field name"},
		{HeaderSpec{Name: "a b", Exact: "a"}, "not a header field name"},
		{HeaderSpec{Name: "x"}, "exactly one of"},
		{HeaderSpec{Name: "x", Exact: "a", Suffix: "b"}, "exactly one of"},
		{HeaderSpec{Name: "x", Regex: "a", IgnoreCase: true}, "does not apply to Regex"},
		{HeaderSpec{Name: "x", Present: true, IgnoreCase: true}, "does not apply to Present"},
		{HeaderSpec{Name: "x", Regex: "("}, "regex: error parsing regexp"},
		{HeaderSpec{Name: "x", Regex: "a)|(b"}, "regex: error parsing regexp: unexpected ): `a)|(b`"},
	} {
		if _, err := CompileHeader(tt.spec); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("CompileHeader(%+v) = %v, want %q", tt.spec, err, tt.want)
		}
	}
}

func TestMatchesDoesNotAllocate(t *testing.T) {
	h, _ := CompileHeader(HeaderSpec{Name: "x", Contains: "MID", IgnoreCase: true})
	if n := testing.AllocsPerRun(100, func() { h.Matches("a long value with mid inside", true) }); n != 0 {
		t.Fatalf("Matches allocates %v times", n)
	}
}

func TestPath(t *testing.T) {
	for _, tt := range []struct {
		spec    PathSpec
		yes, no []string
	}{
		{PathSpec{}, []string{"", "/", "*"}, nil},
		{PathSpec{Exact: "/a"}, []string{"/a"}, []string{"/a/", "/A", ""}},
		{PathSpec{Exact: "/Ab", IgnoreCase: true}, []string{"/ab", "/AB"}, []string{"/ab/", "/a"}},
		{PathSpec{Prefix: "/a"}, []string{"/a", "/ab", "/a/b"}, []string{"/", "/A"}},
		{PathSpec{Prefix: "/K", IgnoreCase: true}, []string{"/k", "/Kx"}, []string{"/\u212a"}},
		{PathSpec{Regex: "/a|/b+"}, []string{"/a", "/bb"}, []string{"/ab", "x/a", "/a/"}},
		{PathSpec{Regex: "/a", IgnoreCase: true}, []string{"/a"}, []string{"/A"}},
	} {
		p, err := CompilePath(tt.spec)
		if err != nil {
			t.Fatalf("%+v: %v", tt.spec, err)
		}
		for _, s := range tt.yes {
			if !p.Matches(s) {
				t.Errorf("%+v: %q does not match", tt.spec, s)
			}
		}
		for _, s := range tt.no {
			if p.Matches(s) {
				t.Errorf("%+v: %q matches", tt.spec, s)
			}
		}
	}
	for _, tt := range []struct {
		spec         PathSpec
		field, error string
	}{
		{PathSpec{Exact: "/a", Prefix: "/b"}, "", "at most one of PathExact, PathPrefix and PathRegex"},
		{PathSpec{Exact: "a"}, "PathExact", `path "a" must start with /`},
		{PathSpec{Prefix: "a"}, "PathPrefix", `path "a" must start with /`},
		{PathSpec{Regex: "("}, "PathRegex", "path regex: error parsing regexp: missing closing ): `(`"},
	} {
		_, err := CompilePath(tt.spec)
		pe, ok := err.(*PathError)
		if !ok || pe.Field != tt.field || err.Error() != tt.error {
			t.Errorf("CompilePath(%+v) = %v (field %v), want %q in %q", tt.spec, err, pe, tt.error, tt.field)
		}
	}
}

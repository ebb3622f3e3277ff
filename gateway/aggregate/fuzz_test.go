package aggregate

import (
	"net/url"
	"strings"
	"testing"
)

// FuzzParseTemplate: any configured path either is refused or parses into
// a template whose literal text is a valid request target.
func FuzzParseTemplate(f *testing.F) {
	for _, s := range []string{"/users/{query.id}", "/u/{parts.a.body.x.0}?q={header.X}", "/{", "/}", "/a/../b", "/%zz", "/{parts.a.body..}", "/a/{query.x}{query.y}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tm, err := parseTemplate(s)
		if err != nil {
			return
		}
		target, fl := tm.render(func(*tseg) (string, *failure) { return "v", nil })
		if fl != nil {
			t.Fatalf("%q: harmless values refused: %v", s, fl.msg)
		}
		if _, err := url.ParseRequestURI(target); err != nil {
			t.Fatalf("%q renders %q, not a request target: %v", s, target, err)
		}
	})
}

// FuzzRenderValue: whatever a placeholder value holds, the target keeps
// the template's structure: the same path segments, the value arriving
// as exactly one segment and one query value, no byte that would end
// the request line or start a header.
func FuzzRenderValue(f *testing.F) {
	for _, s := range []string{"x", "../admin", "a/b?c#d", "x\r\nHost: evil", "..", ".", "%2e%2e", "", "%", " ", "é/"} {
		f.Add(s)
	}
	tm, err := parseTemplate("/a/{query.v}/b?x={query.v}&y=1")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, v string) {
		target, fl := tm.render(func(*tseg) (string, *failure) { return v, nil })
		if fl != nil {
			if v != "" && v != "." && v != ".." {
				t.Fatalf("%q refused: %s", v, fl.msg)
			}
			return
		}
		if strings.ContainsAny(target, " \r\n#") {
			t.Fatalf("%q: target %q has a raw space, CR, LF or #", v, target)
		}
		u, err := url.ParseRequestURI(target)
		if err != nil {
			t.Fatalf("%q: target %q: %v", v, target, err)
		}
		segs := strings.Split(u.EscapedPath(), "/")
		if len(segs) != 4 || segs[1] != "a" || segs[3] != "b" {
			t.Fatalf("%q: structure changed: %q", v, target)
		}
		if got, err := url.PathUnescape(segs[2]); err != nil || got != v {
			t.Fatalf("%q: segment %q reads back as %q", v, segs[2], got)
		}
		q := u.Query()
		if q.Get("x") != v || q.Get("y") != "1" || len(q) != 2 {
			t.Fatalf("%q: query %v", v, q)
		}
	})
}

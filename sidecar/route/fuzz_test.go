package route

import (
	"strings"
	"testing"
)

// FuzzSelect routes arbitrary requests through the testdata table: Select
// never panics, a selected route always has a split to Pick, and Rewrite
// keeps a path that starts with "/" starting with "/".
func FuzzSelect(f *testing.F) {
	tb := compileFile(f, "chain_api.json")
	f.Add("GET", "/v2/users", "a=1", "1", uint32(0))
	f.Add("POST", "/v1/", "", "", uint32(1<<31))
	f.Add("", "*", "&&=", "x,y", ^uint32(0))
	f.Add("GET", "/V2/", "q=%zz", "", uint32(7))
	f.Fuzz(func(t *testing.T, method, path, query, debug string, rnd uint32) {
		h := hdrs{}
		if debug != "" {
			h["X-Debug"] = strings.Split(debug, ",")
		}
		rt := tb.Select(&Request{Method: method, Path: path, RawQuery: query, Header: h})
		if rt == nil {
			if strings.HasPrefix(path, "/") {
				t.Fatalf("no route for %q: the catch-all must match", path)
			}
			return
		}
		if s := rt.Pick(rnd); s == nil || s.Resolver == nil || len(s.Resolver.Targets) == 0 {
			t.Fatalf("Pick(%d) on %s = %+v", rnd, rt.Name, s)
		}
		if out := rt.Rewrite(path); strings.HasPrefix(path, "/") && !strings.HasPrefix(out, "/") {
			t.Fatalf("%s: Rewrite(%q) = %q", rt.Name, path, out)
		}
	})
}

package route

import (
	"encoding/json"
	"errors"
	"os"
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

// FuzzCompileChain decodes a /v1/discovery-chain answer's Chain, as the
// sidecar's ChainJSON fetch hands it over, and compiles it. Compile never
// panics; an error is a *Error; a compiled table has routes, and each
// route picks a split whose resolver has targets whatever the random
// draw, and rewrites a path starting with "/" into one starting with "/".
func FuzzCompileChain(f *testing.F) {
	b, err := os.ReadFile("testdata/chain_api.json")
	if err != nil {
		f.Fatal(err)
	}
	var resp struct{ Chain json.RawMessage }
	if err := json.Unmarshal(b, &resp); err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(resp.Chain))
	for _, s := range []string{
		`{}`, `null`, `{"StartNode":"x"}`, `{"StartNode":"x","Nodes":{"x":null}}`,
		`{"StartNode":"resolver:web","Nodes":{"resolver:web":{"Type":"resolver","Name":"web","Resolver":{"Target":"web.default.default.dc1","ConnectTimeout":"5s"}}},"Targets":{"web.default.default.dc1":{"Service":"web","Datacenter":"dc1"}}}`,
		`{"StartNode":"resolver:web","Nodes":{"resolver:web":{"Type":"resolver","Name":"web","Resolver":{"Target":"missing","ConnectTimeout":"-1s"}}}}`,
		`{"StartNode":"splitter:web","Nodes":{"splitter:web":{"Type":"splitter","Name":"web","Splits":[{"Weight":0,"NextNode":"splitter:web"}]}}}`,
		`{"StartNode":"router:web","Nodes":{"router:web":{"Type":"router","Name":"web","Routes":[{"Definition":{"Match":{"HTTP":{"PathRegex":"("}}},"NextNode":"router:web"}]}}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var c *Chain
		if json.Unmarshal(raw, &c) != nil || c == nil {
			return
		}
		tb, err := Compile(c)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Compile error %v (%T) is not a *route.Error", err, err)
			}
			return
		}
		if len(tb.Routes) == 0 {
			t.Fatalf("compiled table without routes from %s", raw)
		}
		for _, rt := range tb.Routes {
			for _, rnd := range []uint32{0, 1, 1 << 31, ^uint32(0)} {
				if s := rt.Pick(rnd); s == nil || s.Resolver == nil || len(s.Resolver.Targets) == 0 {
					t.Fatalf("%s: Pick(%d) = %+v", rt.Name, rnd, s)
				}
			}
			if out := rt.Rewrite("/x/y"); !strings.HasPrefix(out, "/") {
				t.Fatalf("%s: Rewrite(/x/y) = %q", rt.Name, out)
			}
		}
	})
}

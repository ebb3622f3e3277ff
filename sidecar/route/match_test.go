package route

import (
	"net/http"
	"slices"
	"testing"

	"github.com/hashicorp/consul/api"
)

// TestMatch compiles one route with the given match (before Consul's
// catch-all, which is not added here) and checks Select for requests.
func TestMatch(t *testing.T) {
	type req = Request
	hdr := func(kv ...string) hdrs {
		h := hdrs{}
		for i := 0; i < len(kv); i += 2 {
			n := http.CanonicalHeaderKey(kv[i])
			h[n] = append(h[n], kv[i+1])
		}
		return h
	}
	H := func(hs ...api.ServiceRouteHTTPMatchHeader) api.ServiceRouteHTTPMatch {
		return api.ServiceRouteHTTPMatch{Header: hs}
	}
	Q := func(qs ...api.ServiceRouteHTTPMatchQueryParam) api.ServiceRouteHTTPMatch {
		return api.ServiceRouteHTTPMatch{QueryParam: qs}
	}
	for _, tt := range []struct {
		name  string
		match *api.ServiceRouteHTTPMatch // nil: no Match at all
		yes   []req
		no    []req
	}{
		{"no match is prefix /", nil, []req{{Path: "/"}, {Path: "/x", Method: "DELETE"}}, []req{{Path: "*"}, {Path: ""}}},
		{"exact", &api.ServiceRouteHTTPMatch{PathExact: "/a/b"},
			[]req{{Path: "/a/b", RawQuery: "x=1"}}, []req{{Path: "/a/b/"}, {Path: "/a"}, {Path: "/A/b"}}},
		{"prefix is a string prefix", &api.ServiceRouteHTTPMatch{PathPrefix: "/admin"},
			[]req{{Path: "/admin"}, {Path: "/administrator"}, {Path: "/admin/x"}}, []req{{Path: "/adm"}, {Path: "/Admin"}}},
		{"exact case-insensitive", &api.ServiceRouteHTTPMatch{PathExact: "/Users/ME", CaseInsensitive: true},
			[]req{{Path: "/users/me"}, {Path: "/USERS/me"}}, []req{{Path: "/users/me/"}, {Path: "/usérs/me"}}},
		{"prefix case-insensitive, ASCII only", &api.ServiceRouteHTTPMatch{PathPrefix: "/k", CaseInsensitive: true},
			[]req{{Path: "/K/x"}, {Path: "/k"}}, []req{{Path: "/\u212a"}}}, // Kelvin sign: Unicode folds it to k, Envoy does not
		{"regex is anchored", &api.ServiceRouteHTTPMatch{PathRegex: "/v[0-9]+"},
			[]req{{Path: "/v1"}, {Path: "/v42"}}, []req{{Path: "/v1/x"}, {Path: "/x/v1"}, {Path: "/v"}}},
		{"regex alternation is anchored as a whole", &api.ServiceRouteHTTPMatch{PathRegex: "/a|/b"},
			[]req{{Path: "/a"}, {Path: "/b"}}, []req{{Path: "/ab"}, {Path: "/b/"}, {Path: "x/a"}}},
		{"regex ignores CaseInsensitive", &api.ServiceRouteHTTPMatch{PathRegex: "/a", CaseInsensitive: true},
			[]req{{Path: "/a"}}, []req{{Path: "/A"}}},
		{"methods", &api.ServiceRouteHTTPMatch{Methods: []string{"GET", "HEAD"}},
			[]req{{Method: "GET", Path: "/"}, {Method: "HEAD", Path: "/x"}}, []req{{Method: "get", Path: "/"}, {Method: "POST", Path: "/"}, {Path: "/"}}},
		{"header present", ptr(H(api.ServiceRouteHTTPMatchHeader{Name: "x-debug", Present: true})),
			[]req{{Path: "/", Header: hdr("x-debug", "")}, {Path: "/", Header: hdr("X-DEBUG", "1", "x-debug", "2")}},
			[]req{{Path: "/"}, {Path: "/", Header: hdr("x-other", "1")}}},
		{"header present inverted: absent", ptr(H(api.ServiceRouteHTTPMatchHeader{Name: "x-debug", Present: true, Invert: true})),
			[]req{{Path: "/"}, {Path: "/", Header: hdr("x-other", "1")}}, []req{{Path: "/", Header: hdr("x-debug", "")}}},
		{"header exact", ptr(H(api.ServiceRouteHTTPMatchHeader{Name: "x-tenant", Exact: "acme"})),
			[]req{{Path: "/", Header: hdr("x-tenant", "acme")}},
			[]req{{Path: "/"}, {Path: "/", Header: hdr("x-tenant", "ACME")}, {Path: "/", Header: hdr("x-tenant", "acme2")}}},
		{"header exact on a repeated header: the joined value", ptr(H(api.ServiceRouteHTTPMatchHeader{Name: "x-a", Exact: "1,2"})),
			[]req{{Path: "/", Header: hdr("x-a", "1", "x-a", "2")}}, []req{{Path: "/", Header: hdr("x-a", "1")}, {Path: "/", Header: hdr("x-a", "1,2", "x-a", "3")}}},
		{"header exact inverted: absent does not match (Envoy)", ptr(H(api.ServiceRouteHTTPMatchHeader{Name: "x-tenant", Exact: "acme", Invert: true})),
			[]req{{Path: "/", Header: hdr("x-tenant", "other")}, {Path: "/", Header: hdr("x-tenant", "")}},
			[]req{{Path: "/"}, {Path: "/", Header: hdr("x-tenant", "acme")}}},
		{"header prefix", ptr(H(api.ServiceRouteHTTPMatchHeader{Name: "x-a", Prefix: "ab"})),
			[]req{{Path: "/", Header: hdr("x-a", "abc")}, {Path: "/", Header: hdr("x-a", "ab")}}, []req{{Path: "/", Header: hdr("x-a", "a")}, {Path: "/"}}},
		{"header suffix", ptr(H(api.ServiceRouteHTTPMatchHeader{Name: "x-a", Suffix: ".internal"})),
			[]req{{Path: "/", Header: hdr("x-a", "db.internal")}}, []req{{Path: "/", Header: hdr("x-a", "db.internal.")}}},
		{"header suffix inverted", ptr(H(api.ServiceRouteHTTPMatchHeader{Name: "x-a", Suffix: ".internal", Invert: true})),
			[]req{{Path: "/", Header: hdr("x-a", "example.com")}}, []req{{Path: "/", Header: hdr("x-a", "db.internal")}, {Path: "/"}}},
		{"header regex is anchored", ptr(H(api.ServiceRouteHTTPMatchHeader{Name: "x-v", Regex: "v[12]"})),
			[]req{{Path: "/", Header: hdr("x-v", "v1")}}, []req{{Path: "/", Header: hdr("x-v", "v12")}, {Path: "/", Header: hdr("x-v", "xv1")}}},
		{"header regex on a repeated header", ptr(H(api.ServiceRouteHTTPMatchHeader{Name: "x-v", Regex: "v1(,v1)*"})),
			[]req{{Path: "/", Header: hdr("x-v", "v1", "x-v", "v1")}}, []req{{Path: "/", Header: hdr("x-v", "v1", "x-v", "v2")}}},
		{"every header must match", ptr(H(api.ServiceRouteHTTPMatchHeader{Name: "a", Present: true}, api.ServiceRouteHTTPMatchHeader{Name: "b", Exact: "1"})),
			[]req{{Path: "/", Header: hdr("a", "x", "b", "1")}}, []req{{Path: "/", Header: hdr("a", "x")}, {Path: "/", Header: hdr("b", "1")}}},
		{"query present", ptr(Q(api.ServiceRouteHTTPMatchQueryParam{Name: "debug", Present: true})),
			[]req{{Path: "/", RawQuery: "debug"}, {Path: "/", RawQuery: "a=1&debug="}, {Path: "/", RawQuery: "debug=0"}},
			[]req{{Path: "/"}, {Path: "/", RawQuery: "debugx=1"}, {Path: "/", RawQuery: "x=debug"}}},
		{"query exact: first value, undecoded", ptr(Q(api.ServiceRouteHTTPMatchQueryParam{Name: "q", Exact: "a b"})),
			[]req{{Path: "/", RawQuery: "q=a b"}, {Path: "/", RawQuery: "q=a b&q=c"}},
			[]req{{Path: "/", RawQuery: "q=a%20b"}, {Path: "/", RawQuery: "q=a+b"}, {Path: "/", RawQuery: "q=c&q=a b"}, {Path: "/", RawQuery: "q"}}},
		{"query exact encoded", ptr(Q(api.ServiceRouteHTTPMatchQueryParam{Name: "q", Exact: "a%20b"})),
			[]req{{Path: "/", RawQuery: "x=1&q=a%20b"}}, []req{{Path: "/", RawQuery: "q=a b"}}},
		{"query name is not decoded", ptr(Q(api.ServiceRouteHTTPMatchQueryParam{Name: "a b", Present: true})),
			[]req{{Path: "/", RawQuery: "a b=1"}}, []req{{Path: "/", RawQuery: "a%20b=1"}}},
		{"query regex is anchored", ptr(Q(api.ServiceRouteHTTPMatchQueryParam{Name: "id", Regex: "[0-9]+"})),
			[]req{{Path: "/", RawQuery: "id=42"}}, []req{{Path: "/", RawQuery: "id=42x"}, {Path: "/", RawQuery: "id="}, {Path: "/"}}},
		{"query regex on the empty value", ptr(Q(api.ServiceRouteHTTPMatchQueryParam{Name: "id", Regex: "[0-9]*"})),
			[]req{{Path: "/", RawQuery: "id"}, {Path: "/", RawQuery: "id="}}, []req{{Path: "/"}}},
		{"all kinds together", &api.ServiceRouteHTTPMatch{PathPrefix: "/api/", Methods: []string{"POST"},
			Header:     []api.ServiceRouteHTTPMatchHeader{{Name: "content-type", Prefix: "application/json"}},
			QueryParam: []api.ServiceRouteHTTPMatchQueryParam{{Name: "v", Exact: "2"}}},
			[]req{{Method: "POST", Path: "/api/x", RawQuery: "v=2", Header: hdr("Content-Type", "application/json; charset=utf-8")}},
			[]req{{Method: "GET", Path: "/api/x", RawQuery: "v=2", Header: hdr("Content-Type", "application/json")},
				{Method: "POST", Path: "/api/x", RawQuery: "v=1", Header: hdr("Content-Type", "application/json")},
				{Method: "POST", Path: "/api", RawQuery: "v=2", Header: hdr("Content-Type", "application/json")}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := api.ServiceRoute{}
			if tt.match != nil {
				r.Match = &api.ServiceRouteMatch{HTTP: tt.match}
			}
			tb, err := Compile(router(r))
			if err != nil {
				t.Fatal(err)
			}
			for _, q := range tt.yes {
				if tb.Select(&q) == nil {
					t.Errorf("%+v does not match", q)
				}
			}
			for _, q := range tt.no {
				if tb.Select(&q) != nil {
					t.Errorf("%+v matches", q)
				}
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestRewrite(t *testing.T) {
	for _, tt := range []struct {
		match      api.ServiceRouteHTTPMatch
		rewrite    string
		path, want string
	}{
		{api.ServiceRouteHTTPMatch{PathPrefix: "/v2/"}, "/", "/v2/users", "/users"},
		{api.ServiceRouteHTTPMatch{PathPrefix: "/v2/"}, "/", "/v2/", "/"},
		{api.ServiceRouteHTTPMatch{PathPrefix: "/v2"}, "/", "/v2/users", "//users"}, // Envoy keeps the slash after the prefix
		{api.ServiceRouteHTTPMatch{PathPrefix: "/v2/"}, "/api", "/v2/users", "/apiusers"},
		{api.ServiceRouteHTTPMatch{PathPrefix: "/v2/"}, "/api/v3/", "/v2/users/1", "/api/v3/users/1"},
		{api.ServiceRouteHTTPMatch{PathPrefix: "/V2/", CaseInsensitive: true}, "/", "/v2/Users", "/Users"},
		{api.ServiceRouteHTTPMatch{PathExact: "/old"}, "/new", "/old", "/new"},
		{api.ServiceRouteHTTPMatch{PathExact: "/Old", CaseInsensitive: true}, "/new", "/OLD", "/new"},
		{api.ServiceRouteHTTPMatch{PathExact: "/old"}, "/new", "/other", "/other"}, // not a path the route matched
		{api.ServiceRouteHTTPMatch{PathPrefix: "/v2/"}, "", "/v2/users", "/v2/users"},
	} {
		r := api.ServiceRoute{Match: &api.ServiceRouteMatch{HTTP: &tt.match}, Destination: &api.ServiceRouteDestination{PrefixRewrite: tt.rewrite}}
		tb, err := Compile(router(r))
		if err != nil {
			t.Fatal(err)
		}
		if got := tb.Routes[0].Rewrite(tt.path); got != tt.want {
			t.Errorf("%+v rewrite %q: Rewrite(%q) = %q, want %q", tt.match, tt.rewrite, tt.path, got, tt.want)
		}
	}
}

// editor records the edits Apply makes.
type editor struct{ ops []string }

func (e *editor) Add(n, v string) { e.ops = append(e.ops, "add "+n+"="+v) }
func (e *editor) Set(n, v string) { e.ops = append(e.ops, "set "+n+"="+v) }
func (e *editor) Del(n string)    { e.ops = append(e.ops, "del "+n) }

func TestModifiers(t *testing.T) {
	hm := &api.HTTPHeaderModifiers{
		Add:    map[string]string{"x-b": "2", "x-a": "1", "x-empty": "", "x-pct": "100%%"},
		Set:    map[string]string{"x-b": "3", "x-canary": "yes"},
		Remove: []string{"x-secret", "X-Debug", "x-debug"},
	}
	m, err := compileModifiers(hm, "RequestHeaders")
	if err != nil {
		t.Fatal(err)
	}
	var e editor
	m.Apply(&e)
	want := []string{"del X-Debug", "del X-Secret", "add X-A=1", "add X-B=2", "add X-Pct=100%", "set X-B=3", "set X-Canary=yes"}
	if !slices.Equal(e.ops, want) {
		t.Fatalf("Apply did %q, want %q", e.ops, want)
	}
	if m.IsZero() || m.String() != "remove X-Debug,X-Secret; add X-A=1,X-B=2,X-Pct=100%; set X-B=3,X-Canary=yes" {
		t.Fatalf("String() = %q", m.String())
	}
	// On an http.Header the route's Set wins over the split's, and over an
	// Add of the same name.
	h := http.Header{"X-Debug": {"1"}, "X-B": {"0"}}
	m.Apply(h)
	if h.Get("X-Debug") != "" || h.Values("X-B")[0] != "3" || len(h.Values("X-B")) != 1 || h.Get("X-Empty") != "" || h.Get("X-Pct") != "100%" {
		t.Fatalf("header after Apply: %v", h)
	}

	split, _ := compileModifiers(&api.HTTPHeaderModifiers{Set: map[string]string{"x-who": "split", "x-split": "1"}}, "")
	route, _ := compileModifiers(&api.HTTPHeaderModifiers{Set: map[string]string{"x-who": "route"}}, "")
	rt := &Route{RequestHeaders: route}
	h = http.Header{}
	rt.ApplyRequest(&Split{RequestHeaders: split}, h)
	if h.Get("X-Who") != "route" || h.Get("X-Split") != "1" {
		t.Fatalf("split then route: %v", h)
	}
	var zero Modifiers
	if !zero.IsZero() || zero.String() != "" {
		t.Fatal("zero Modifiers are not zero")
	}
	zero.Apply(&e) // no edits, no panic
}

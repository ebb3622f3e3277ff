package route

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// hdrs is a Headers over canonical names.
type hdrs map[string][]string

func (h hdrs) Header(name string) (string, int) {
	v := h[name]
	if len(v) == 0 {
		return "", 0
	}
	return v[0], len(v)
}

func (h hdrs) Joined(name string) string { return strings.Join(h[name], ",") }

// loadChain decodes a testdata file holding a discovery-chain answer.
func loadChain(tb testing.TB, name string) *Chain {
	tb.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		tb.Fatal(err)
	}
	var resp struct{ Chain *Chain }
	if err := json.Unmarshal(b, &resp); err != nil {
		tb.Fatalf("decode %s: %v", name, err)
	}
	return resp.Chain
}

func compileFile(tb testing.TB, name string) *Table {
	tb.Helper()
	t, err := Compile(loadChain(tb, name))
	if err != nil {
		tb.Fatalf("Compile(%s): %v", name, err)
	}
	return t
}

func TestCompileTestdata(t *testing.T) {
	tb := compileFile(t, "chain_api.json")
	var names []string
	for _, rt := range tb.Routes {
		names = append(names, rt.Name)
	}
	if got, want := strings.Join(names, " "), "router:api.default.default#0 router:api.default.default#1 router:api.default.default#2"; got != want {
		t.Fatalf("routes %q, want %q", got, want)
	}
	var rs []string
	for _, r := range tb.Resolvers {
		rs = append(rs, r.Name)
	}
	if got := strings.Join(rs, " "); got != "v1.api.default.default.dc1 v2.api.default.default.dc1" {
		t.Fatalf("resolvers %q", got)
	}
	var ts []string
	for _, x := range tb.Targets {
		ts = append(ts, x.ID)
	}
	if got := strings.Join(ts, " "); got != "api-backup.default.default.dc1 v1.api.default.default.dc1 v2.api.default.default.dc1" {
		t.Fatalf("targets %q", got)
	}

	v2 := tb.Routes[0]
	if v2.PrefixRewrite != "/" || v2.RequestTimeout != 2*time.Second || len(v2.Splits) != 1 || v2.Splits[0].Weight != 10000 {
		t.Fatalf("route 0 = %+v", v2)
	}
	r := v2.Splits[0].Resolver
	if r.Name != "v2.api.default.default.dc1" || r.ConnectTimeout != 3*time.Second || len(r.Targets) != 2 ||
		r.Targets[0].ID != "v2.api.default.default.dc1" || r.Targets[1].ID != "api-backup.default.default.dc1" {
		t.Fatalf("route 0 resolver = %+v", r)
	}
	if tg := r.Targets[0]; tg.Filter != "Service.Meta.version == v2" || !tg.OnlyPassing || tg.Partition != "default" ||
		tg.Service != "api" || tg.ServiceSubset != "v2" || tg.Datacenter != "dc1" || tg.ConnectTimeout != 3*time.Second {
		t.Fatalf("v2 target = %+v", tg)
	}
	if tg := r.Targets[1]; tg.Filter != "" || tg.OnlyPassing || tg.ConnectTimeout != 5*time.Second || tg.Service != "api-backup" {
		t.Fatalf("backup target = %+v", tg)
	}
	if r1 := tb.Routes[1].Splits[0].Resolver; r1 != tb.Resolvers[0] || tb.Routes[2].Splits[0].Resolver != r1 {
		t.Fatal("resolvers are not shared between routes and splits")
	}
	if got := strings.Join(v2.Retry.RetryOn, ","); v2.Retry.NumRetries != 3 || got != "5xx,connect-failure,retriable-status-codes" {
		t.Fatalf("retry = %+v", v2.Retry)
	}
	split := tb.Routes[2]
	if len(split.Splits) != 2 || split.Splits[0].Weight != 9000 || split.Splits[1].Weight != 1000 ||
		split.Splits[1].RequestHeaders.String() != "set X-Canary=1" || !split.Splits[0].RequestHeaders.IsZero() {
		t.Fatalf("split route = %+v", split)
	}

	for _, tt := range []struct {
		req         Request
		route, path string
	}{
		{Request{Method: "GET", Path: "/v2/users", Header: hdrs{"X-Debug": {"1"}}}, "#0", "/users"},
		{Request{Method: "GET", Path: "/v2/users"}, "#2", "/v2/users"},
		{Request{Method: "GET", Path: "/v1/x"}, "#1", "/v1/x"},
		{Request{Method: "POST", Path: "/"}, "#2", "/"},
		{Request{Method: "OPTIONS", Path: "*"}, "", ""},
	} {
		rt := tb.Select(&tt.req)
		if tt.route == "" {
			if rt != nil {
				t.Errorf("Select(%s) = %s, want none", tt.req.Path, rt.Name)
			}
			continue
		}
		if rt == nil || !strings.HasSuffix(rt.Name, tt.route) {
			t.Errorf("Select(%s %v) = %v, want %s", tt.req.Path, tt.req.Header, rt, tt.route)
			continue
		}
		if got := rt.Rewrite(tt.req.Path); got != tt.path {
			t.Errorf("Rewrite(%s) = %q, want %q", tt.req.Path, got, tt.path)
		}
	}
}

// router returns a chain whose router has routes (then Consul's catch-all)
// leading to one resolver for "api".
func router(routes ...api.ServiceRoute) *Chain {
	c := &Chain{ServiceName: "api", Protocol: "http", StartNode: "router:api",
		Nodes: map[string]*Node{
			"resolver:api": {Type: NodeResolver, Name: "api", Resolver: &ChainResolver{Target: "api"}},
		},
		Targets: map[string]*ChainTarget{"api": {DiscoveryTarget: api.DiscoveryTarget{ID: "api", Service: "api"}}},
	}
	n := &Node{Type: NodeRouter, Name: "api"}
	for i := range routes {
		n.Routes = append(n.Routes, &ChainRoute{Definition: &routes[i], NextNode: "resolver:api"})
	}
	c.Nodes["router:api"] = n
	return c
}

func TestCompileErrors(t *testing.T) {
	bad := func(f func(c *Chain)) *Chain {
		c := router(api.ServiceRoute{Match: &api.ServiceRouteMatch{HTTP: &api.ServiceRouteHTTPMatch{PathPrefix: "/a"}}})
		f(c)
		return c
	}
	route0 := func(f func(r *api.ServiceRoute)) *Chain {
		return bad(func(c *Chain) { f(c.Nodes["router:api"].Routes[0].Definition) })
	}
	http := func(m api.ServiceRouteHTTPMatch) *Chain {
		return route0(func(r *api.ServiceRoute) { r.Match.HTTP = &m })
	}
	dest := func(d api.ServiceRouteDestination) *Chain {
		return route0(func(r *api.ServiceRoute) { r.Destination = &d })
	}
	for _, tt := range []struct {
		name  string
		chain *Chain
		want  string
	}{
		{"nil chain", nil, "route: chain is nil"},
		{"no start node", bad(func(c *Chain) { c.StartNode = "" }), `route: StartNode: "" is not a node`},
		{"unknown start node", bad(func(c *Chain) { c.StartNode = "router:x" }), `route: StartNode: "router:x" is not a node`},
		{"bad regex", http(api.ServiceRouteHTTPMatch{PathRegex: "/x(.*"}),
			"route: router:api: Routes[0].Match.HTTP.PathRegex: error parsing regexp: missing closing ): `/x(.*`"},
		{"regex escaping its anchors", http(api.ServiceRouteHTTPMatch{PathRegex: "a)|(b"}), "Routes[0].Match.HTTP.PathRegex: error parsing regexp"},
		{"two paths", http(api.ServiceRouteHTTPMatch{PathExact: "/a", PathPrefix: "/b"}), "route: router:api: Routes[0].Match.HTTP: at most one of PathExact, PathPrefix and PathRegex"},
		{"relative prefix", http(api.ServiceRouteHTTPMatch{PathPrefix: "a"}), `Routes[0].Match.HTTP.PathPrefix: path "a" must start with /`},
		{"prefix with query", http(api.ServiceRouteHTTPMatch{PathPrefix: "/a?b"}), `Routes[0].Match.HTTP.PathPrefix: "/a?b" reaches into the query`},
		{"header regex", http(api.ServiceRouteHTTPMatch{Header: []api.ServiceRouteHTTPMatchHeader{{Name: "x", Regex: "("}}}),
			"Routes[0].Match.HTTP.Header[0]: regex: error parsing regexp"},
		{"header two kinds", http(api.ServiceRouteHTTPMatch{Header: []api.ServiceRouteHTTPMatchHeader{{Name: "x", Exact: "a", Present: true}}}),
			"Routes[0].Match.HTTP.Header[0]: exactly one of"},
		{"header pseudo", http(api.ServiceRouteHTTPMatch{Header: []api.ServiceRouteHTTPMatchHeader{{Name: ":authority", Exact: "a"}}}),
			`Routes[0].Match.HTTP.Header[0]: name ":authority" is not a header field name`},
		{"query no name", http(api.ServiceRouteHTTPMatch{QueryParam: []api.ServiceRouteHTTPMatchQueryParam{{Exact: "a"}}}),
			"Routes[0].Match.HTTP.QueryParam[0].Name: missing"},
		{"query regex", http(api.ServiceRouteHTTPMatch{QueryParam: []api.ServiceRouteHTTPMatchQueryParam{{Name: "q", Regex: "[a"}}}),
			"Routes[0].Match.HTTP.QueryParam[0].Regex: error parsing regexp"},
		{"query two kinds", http(api.ServiceRouteHTTPMatch{QueryParam: []api.ServiceRouteHTTPMatchQueryParam{{Name: "q", Exact: "a", Regex: "b"}}}),
			"Routes[0].Match.HTTP.QueryParam[0]: exactly one of Present, Exact and Regex"},
		{"bad RetryOn", dest(api.ServiceRouteDestination{RetryOn: []string{"5xx", "retriable-status-codes"}}),
			`route: router:api: Routes[0].Destination.RetryOn[1]: "retriable-status-codes" is not a retry condition`},
		{"rewrite on regex", http(api.ServiceRouteHTTPMatch{PathRegex: "/a.*"}),
			""}, // valid without a rewrite; the next case adds one
		{"rewrite on regex", route0(func(r *api.ServiceRoute) {
			r.Match.HTTP = &api.ServiceRouteHTTPMatch{PathRegex: "/a.*"}
			r.Destination = &api.ServiceRouteDestination{PrefixRewrite: "/"}
		}), "Routes[0].Destination.PrefixRewrite: needs PathExact or PathPrefix"},
		{"rewrite without match", route0(func(r *api.ServiceRoute) {
			r.Match = nil
			r.Destination = &api.ServiceRouteDestination{PrefixRewrite: "/"}
		}), "Routes[0].Destination.PrefixRewrite: needs PathExact or PathPrefix"},
		{"relative rewrite", dest(api.ServiceRouteDestination{PrefixRewrite: "x"}), `Routes[0].Destination.PrefixRewrite: "x" does not start with /`},
		{"set pseudo-header", dest(api.ServiceRouteDestination{RequestHeaders: &api.HTTPHeaderModifiers{Set: map[string]string{":path": "/x"}}}),
			`Routes[0].Destination.RequestHeaders.Set[":path"]: pseudo-headers may not be modified`},
		{"remove host", dest(api.ServiceRouteDestination{ResponseHeaders: &api.HTTPHeaderModifiers{Remove: []string{"x", "host"}}}),
			`Routes[0].Destination.ResponseHeaders.Remove[1]: the Host header may not be modified`},
		{"envoy variable", dest(api.ServiceRouteDestination{RequestHeaders: &api.HTTPHeaderModifiers{Add: map[string]string{"x-ip": "%DOWNSTREAM_REMOTE_ADDRESS%"}}}),
			`Routes[0].Destination.RequestHeaders.Add["x-ip"]: value "%DOWNSTREAM_REMOTE_ADDRESS%": Envoy %VARIABLE% substitutions are not supported`},
		{"same header twice", dest(api.ServiceRouteDestination{RequestHeaders: &api.HTTPHeaderModifiers{Set: map[string]string{"x-a": "1", "X-A": "2"}}}),
			`Routes[0].Destination.RequestHeaders.Set["X-A"]: names the same header as another key`},
		{"unknown NextNode", bad(func(c *Chain) { c.Nodes["router:api"].Routes[0].NextNode = "resolver:nope" }),
			`route: router:api: Routes[0].NextNode: "resolver:nope" is not a node of the chain`},
		{"route to router", bad(func(c *Chain) { c.Nodes["router:api"].Routes[0].NextNode = "router:api" }),
			`route: router:api: Routes[0].NextNode: "router:api" is a router, want a splitter or resolver`},
		{"split to splitter", bad(func(c *Chain) {
			c.Nodes["splitter:api"] = &Node{Type: NodeSplitter, Name: "api", Splits: []*ChainSplit{{Weight: 100, NextNode: "splitter:api"}}}
			c.Nodes["router:api"].Routes[0].NextNode = "splitter:api"
		}), `route: splitter:api: Splits[0].NextNode: "splitter:api" is a splitter, want a resolver`},
		{"split weight", bad(func(c *Chain) {
			c.Nodes["splitter:api"] = &Node{Type: NodeSplitter, Name: "api", Splits: []*ChainSplit{{Weight: 101, NextNode: "resolver:api"}}}
			c.StartNode = "splitter:api"
		}), `route: splitter:api: Splits[0].Weight: 101 is not between 0 and 100`},
		{"split header", bad(func(c *Chain) {
			c.Nodes["splitter:api"] = &Node{Type: NodeSplitter, Name: "api", Splits: []*ChainSplit{{Weight: 100, NextNode: "resolver:api",
				Definition: &api.ServiceSplit{RequestHeaders: &api.HTTPHeaderModifiers{Add: map[string]string{"bad name": "1"}}}}}}
			c.StartNode = "splitter:api"
		}), `route: splitter:api: Splits[0].RequestHeaders.Add["bad name"]: "bad name" is not a header field name`},
		{"unknown target", bad(func(c *Chain) { c.Nodes["resolver:api"].Resolver.Target = "nope" }),
			`route: resolver:api: Resolver.Target: "nope" is not a target of the chain`},
		{"unknown failover target", bad(func(c *Chain) {
			c.Nodes["resolver:api"].Resolver.Failover = &api.DiscoveryFailover{Targets: []string{"api", "gone"}}
		}), `route: resolver:api: Resolver.Failover.Targets[1]: "gone" is not a target of the chain`},
		{"resolver without Resolver", bad(func(c *Chain) { c.Nodes["resolver:api"].Resolver = nil }),
			`route: resolver:api: Resolver: resolver node has no Resolver`},
		{"unknown node type", bad(func(c *Chain) { c.Nodes["router:api"].Type = "gateway" }),
			`route: router:api: Type: unknown node type "gateway"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compile(tt.chain)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Compile: %v", err)
				}
				return
			}
			var e *Error
			if err == nil || !errors.As(err, &e) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Compile error = %v, want an *Error containing %q", err, tt.want)
			}
		})
	}
}

func TestStartNodes(t *testing.T) {
	c := router()
	c.StartNode = "resolver:api"
	c.Nodes["resolver:api"].Resolver.RequestTimeout = 7 * time.Second
	c.Nodes["resolver:api"].Resolver.ConnectTimeout = 0
	c.Targets["api"].ConnectTimeout = 4 * time.Second
	lb := &api.LoadBalancer{Policy: "ring_hash"}
	c.Nodes["resolver:api"].LoadBalancer = lb
	tb, err := Compile(c)
	if err != nil {
		t.Fatal(err)
	}
	rt := tb.Routes[0]
	if len(tb.Routes) != 1 || rt.Name != "resolver:api" || rt.RequestTimeout != 7*time.Second || rt.LoadBalancer != lb ||
		len(rt.Splits) != 1 || rt.Splits[0].Resolver.ConnectTimeout != 4*time.Second || rt.Splits[0].Resolver.LoadBalancer != lb {
		t.Fatalf("resolver start: %+v", rt)
	}
	if tb.Select(&Request{Method: "GET", Path: "/anything"}) != rt || tb.Select(&Request{Path: "*"}) != nil {
		t.Fatal("the catch-all route does not match every path starting with /")
	}

	c.Nodes["splitter:api"] = &Node{Type: NodeSplitter, Name: "api", Splits: []*ChainSplit{
		{Weight: 33.33, NextNode: "resolver:api"}, {Weight: 33.33, NextNode: "resolver:api"}, {Weight: 33.34, NextNode: "resolver:api"}}}
	c.StartNode = "splitter:api"
	if tb, err = Compile(c); err != nil {
		t.Fatal(err)
	}
	rt = tb.Routes[0]
	if rt.Name != "splitter:api" || rt.RequestTimeout != 0 || len(rt.Splits) != 3 || rt.Splits[0].Weight != 3333 || rt.Splits[2].Weight != 3334 ||
		len(tb.Resolvers) != 1 {
		t.Fatalf("splitter start: %+v", rt)
	}
}

func TestPick(t *testing.T) {
	c := router()
	c.Nodes["splitter:api"] = &Node{Type: NodeSplitter, Name: "api", Splits: []*ChainSplit{
		{Weight: 0.53, NextNode: "resolver:api"}, {Weight: 0, NextNode: "resolver:api"}, {Weight: 99.47, NextNode: "resolver:api"}}}
	c.StartNode = "splitter:api"
	tb, err := Compile(c)
	if err != nil {
		t.Fatal(err)
	}
	rt := tb.Routes[0]
	if rt.Splits[0].Weight != 53 || rt.Splits[2].Weight != 9947 {
		t.Fatalf("weights %d %d, want 53 (0.53 rounded, not truncated) and 9947", rt.Splits[0].Weight, rt.Splits[2].Weight)
	}
	// Split 0 covers rnd*10000/2^32 < 53, i.e. rnd < ceil(53*2^32/10000).
	edge := uint32((53<<32 + 9999) / 10000)
	for _, tt := range []struct {
		rnd  uint32
		want int
	}{{0, 0}, {edge - 1, 0}, {edge, 2}, {1 << 31, 2}, {^uint32(0), 2}} {
		if got := rt.Pick(tt.rnd); got != rt.Splits[tt.want] {
			t.Errorf("Pick(%d) picked another split than %d", tt.rnd, tt.want)
		}
	}
	// Every split gets exactly its share of a sweep that puts one rnd in
	// each ten-thousandth.
	counts := map[*Split]int{}
	for i := range 10000 {
		counts[rt.Pick(uint32((uint64(i)<<32+9999)/10000))]++
	}
	if counts[rt.Splits[0]] != 53 || counts[rt.Splits[1]] != 0 || counts[rt.Splits[2]] != 9947 {
		t.Fatalf("sweep counts %d %d %d", counts[rt.Splits[0]], counts[rt.Splits[1]], counts[rt.Splits[2]])
	}
}

func TestChainTargetJSON(t *testing.T) {
	c := loadChain(t, "chain_api.json")
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var back Chain
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	tg := back.Targets["v2.api.default.default.dc1"]
	if tg.Partition != "default" || tg.ConnectTimeout != 3*time.Second || !tg.Subset.OnlyPassing ||
		back.Nodes["resolver:v1.api.default.default.dc1"].Resolver.ConnectTimeout != 3*time.Second {
		t.Fatalf("round trip lost fields: %+v", tg)
	}
}

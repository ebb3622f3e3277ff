package route

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/outrider-mesh/outrider/internal/testutil/consultest"
)

// TestConsulChains writes service-defaults, service-resolver,
// service-splitter and service-router entries to a real Consul 1.15 agent
// (one for the whole test), fetches the compiled chains as the sidecar
// does (the raw /v1/discovery-chain answer), and routes with them.
func TestConsulChains(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Consul agent")
	}
	a := consultest.Start(t)
	entries := []api.ConfigEntry{
		&api.ServiceConfigEntry{Kind: api.ServiceDefaults, Name: "api", Protocol: "http"},
		&api.ServiceConfigEntry{Kind: api.ServiceDefaults, Name: "api-backup", Protocol: "http"},
		&api.ServiceConfigEntry{Kind: api.ServiceDefaults, Name: "solo", Protocol: "http"},
		&api.ServiceConfigEntry{Kind: api.ServiceDefaults, Name: "canary", Protocol: "http"},
		&api.ServiceResolverConfigEntry{Kind: api.ServiceResolver, Name: "api", ConnectTimeout: 3 * time.Second,
			Subsets: map[string]api.ServiceResolverSubset{
				"v1": {Filter: "Service.Meta.version == v1"},
				"v2": {Filter: "Service.Meta.version == v2", OnlyPassing: true},
			},
			Failover: map[string]api.ServiceResolverFailover{"*": {Targets: []api.ServiceResolverFailoverTarget{{Service: "api-backup"}}}}},
		&api.ServiceResolverConfigEntry{Kind: api.ServiceResolver, Name: "api-backup", ConnectTimeout: 5 * time.Second},
		&api.ServiceSplitterConfigEntry{Kind: api.ServiceSplitter, Name: "api", Splits: []api.ServiceSplit{
			{Weight: 90, ServiceSubset: "v1"},
			{Weight: 10, ServiceSubset: "v2", RequestHeaders: &api.HTTPHeaderModifiers{Set: map[string]string{"x-canary": "1"}}},
		}},
		&api.ServiceRouterConfigEntry{Kind: api.ServiceRouter, Name: "api", Routes: []api.ServiceRoute{
			{Match: &api.ServiceRouteMatch{HTTP: &api.ServiceRouteHTTPMatch{PathPrefix: "/v2/",
				Header: []api.ServiceRouteHTTPMatchHeader{{Name: "x-debug", Present: true}}}},
				Destination: &api.ServiceRouteDestination{ServiceSubset: "v2", PrefixRewrite: "/", RequestTimeout: 2 * time.Second,
					NumRetries: 3, RetryOnConnectFailure: true, RetryOn: []string{"5xx"}, RetryOnStatusCodes: []uint32{429},
					ResponseHeaders: &api.HTTPHeaderModifiers{Remove: []string{"x-internal"}}}},
			{Match: &api.ServiceRouteMatch{HTTP: &api.ServiceRouteHTTPMatch{PathExact: "/login", Methods: []string{"post"},
				QueryParam: []api.ServiceRouteHTTPMatchQueryParam{{Name: "next", Regex: "/[a-z]+"}}}},
				Destination: &api.ServiceRouteDestination{ServiceSubset: "v1", PrefixRewrite: "/auth/login", IdleTimeout: -1}},
			{Match: &api.ServiceRouteMatch{HTTP: &api.ServiceRouteHTTPMatch{PathPrefix: "/v1/"}},
				Destination: &api.ServiceRouteDestination{ServiceSubset: "v1"}},
		}},
		&api.ServiceResolverConfigEntry{Kind: api.ServiceResolver, Name: "solo", ConnectTimeout: 4 * time.Second, RequestTimeout: 7 * time.Second,
			LoadBalancer: &api.LoadBalancer{Policy: "ring_hash", HashPolicies: []api.HashPolicy{{Field: "header", FieldValue: "x-user"}}}},
		&api.ServiceResolverConfigEntry{Kind: api.ServiceResolver, Name: "canary",
			Subsets: map[string]api.ServiceResolverSubset{"old": {Filter: "Service.Tags contains old"}, "new": {Filter: "Service.Tags contains new"}}},
		&api.ServiceSplitterConfigEntry{Kind: api.ServiceSplitter, Name: "canary", Splits: []api.ServiceSplit{
			{Weight: 66.67, ServiceSubset: "old"}, {Weight: 33.33, ServiceSubset: "new"}}},
	}
	for _, e := range entries {
		if _, _, err := a.Client.ConfigEntries().Set(e, nil); err != nil {
			t.Fatalf("write %s %s: %v", e.GetKind(), e.GetName(), err)
		}
	}
	chain := func(t *testing.T, service string) *Table {
		t.Helper()
		var resp struct{ Chain *Chain }
		if _, err := a.Client.Raw().Query("/v1/discovery-chain/"+url.PathEscape(service), &resp, nil); err != nil {
			t.Fatalf("discovery-chain/%s: %v", service, err)
		}
		tb, err := Compile(resp.Chain)
		if err != nil {
			t.Fatalf("Compile(%s): %v", service, err)
		}
		return tb
	}

	t.Run("router", func(t *testing.T) {
		t.Parallel()
		tb := chain(t, "api")
		if len(tb.Routes) != 4 || tb.Routes[3].Name != "router:api.default.default#3" {
			t.Fatalf("routes: %d, last %s (want Consul's catch-all fourth)", len(tb.Routes), tb.Routes[len(tb.Routes)-1].Name)
		}
		var ids []string
		for _, tg := range tb.Targets {
			ids = append(ids, tg.ID)
		}
		if got := strings.Join(ids, " "); got != "api-backup.default.default.dc1 v1.api.default.default.dc1 v2.api.default.default.dc1" {
			t.Fatalf("targets %s", got)
		}
		for _, tt := range []struct {
			req       Request
			route     int
			subset    string
			rewritten string
		}{
			{Request{Method: "GET", Path: "/v2/users", Header: hdrs{"X-Debug": {"1"}}}, 0, "v2", "/users"},
			{Request{Method: "GET", Path: "/v2/users"}, 3, "", "/v2/users"},
			{Request{Method: "POST", Path: "/login", RawQuery: "next=/home"}, 1, "v1", "/auth/login"},
			{Request{Method: "GET", Path: "/login", RawQuery: "next=/home"}, 3, "", "/login"},
			{Request{Method: "POST", Path: "/login", RawQuery: "next=%2Fhome"}, 3, "", "/login"},
			{Request{Method: "GET", Path: "/v1/x"}, 2, "v1", "/v1/x"},
		} {
			rt := tb.Select(&tt.req)
			if rt != tb.Routes[tt.route] {
				t.Errorf("Select(%s %s?%s) = %v, want route %d", tt.req.Method, tt.req.Path, tt.req.RawQuery, rt, tt.route)
				continue
			}
			if got := rt.Rewrite(tt.req.Path); got != tt.rewritten {
				t.Errorf("Rewrite(%s) = %s, want %s", tt.req.Path, got, tt.rewritten)
			}
			if tt.subset != "" {
				if tg := rt.Pick(0).Resolver.Targets[0]; tg.ServiceSubset != tt.subset {
					t.Errorf("%s goes to %s, want subset %s", tt.req.Path, tg.ID, tt.subset)
				}
			}
		}
		r0 := tb.Routes[0]
		if r0.RequestTimeout != 2*time.Second || r0.Retry.NumRetries != 3 || !r0.Retry.OnConnectFailure() ||
			!r0.Retry.OnResponse(429, -1, false) || !r0.Retry.OnResponse(503, -1, false) || r0.ResponseHeaders.String() != "remove X-Internal" {
			t.Errorf("route 0: %+v", r0)
		}
		if r1 := tb.Routes[1]; r1.IdleTimeout >= 0 || r1.Retry.Enabled() {
			t.Errorf("route 1: idle timeout %v (want negative: disabled), retry %+v", r1.IdleTimeout, r1.Retry)
		}
		v2 := tb.Routes[0].Splits[0].Resolver
		if v2.ConnectTimeout != 3*time.Second || len(v2.Targets) != 2 || v2.Targets[1].Service != "api-backup" ||
			v2.Targets[1].ConnectTimeout != 5*time.Second || v2.Targets[0].Filter != "Service.Meta.version == v2" || !v2.Targets[0].OnlyPassing ||
			v2.Targets[0].Partition != "default" {
			t.Errorf("v2 resolver: %+v, targets %+v %+v", v2, v2.Targets[0], v2.Targets[1])
		}
		split := tb.Routes[3]
		if len(split.Splits) != 2 || split.Splits[0].Weight != 9000 || split.Splits[1].RequestHeaders.String() != "set X-Canary=1" {
			t.Fatalf("catch-all splits: %+v", split.Splits)
		}
		if s := split.Pick(^uint32(0)); s != split.Splits[1] || s.Resolver.Targets[0].ServiceSubset != "v2" {
			t.Errorf("the top of the range picks %+v, want the v2 split", s)
		}
	})

	t.Run("resolver only", func(t *testing.T) {
		t.Parallel()
		tb := chain(t, "solo")
		if len(tb.Routes) != 1 || len(tb.Resolvers) != 1 || len(tb.Targets) != 1 {
			t.Fatalf("table: %d routes, %d resolvers, %d targets", len(tb.Routes), len(tb.Resolvers), len(tb.Targets))
		}
		rt := tb.Routes[0]
		if rt.Name != "resolver:solo.default.default.dc1" || rt.RequestTimeout != 7*time.Second || len(rt.Splits) != 1 ||
			rt.LoadBalancer == nil || rt.LoadBalancer.Policy != "ring_hash" || len(rt.LoadBalancer.HashPolicies) != 1 {
			t.Fatalf("route: %+v", rt)
		}
		r := rt.Splits[0].Resolver
		if r.ConnectTimeout != 4*time.Second || r.LoadBalancer == nil || r.Targets[0].Service != "solo" || r.Targets[0].Datacenter != "dc1" {
			t.Fatalf("resolver %+v", r)
		}
		if tb.Select(&Request{Method: "DELETE", Path: "/any/path"}) != rt || tb.Select(&Request{Path: "*"}) != nil {
			t.Fatal("the catch-all route does not match as Envoy's prefix /")
		}
	})

	t.Run("splitter start", func(t *testing.T) {
		t.Parallel()
		tb := chain(t, "canary")
		rt := tb.Routes[0]
		if len(tb.Routes) != 1 || rt.Name != "splitter:canary.default.default" || len(rt.Splits) != 2 ||
			rt.Splits[0].Weight != 6667 || rt.Splits[1].Weight != 3333 || len(tb.Resolvers) != 2 {
			t.Fatalf("table %+v, route %+v", tb, rt)
		}
		// 6667 of every 10000 rnd values pick the first split.
		edge := uint32((6667<<32 + 9999) / 10000)
		if rt.Pick(edge-1) != rt.Splits[0] || rt.Pick(edge) != rt.Splits[1] {
			t.Fatal("the split boundary is not at 66.67%")
		}
		if f := rt.Splits[1].Resolver.Targets[0].Filter; f != "Service.Tags contains new" {
			t.Fatalf("new subset filter %q", f)
		}
	})
}

package route

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/hashicorp/consul/api"
)

// benchTable is a router of ten routes, each a path prefix and a header
// match (the last one also a query parameter), ahead of Consul's catch-all.
func benchTable(b testing.TB) *Table {
	var routes []api.ServiceRoute
	for i := range 10 {
		m := &api.ServiceRouteHTTPMatch{PathPrefix: fmt.Sprintf("/svc%d/", i),
			Header: []api.ServiceRouteHTTPMatchHeader{{Name: "x-tenant", Exact: fmt.Sprintf("tenant-%d", i)}}}
		if i == 9 {
			m.Methods = []string{"GET", "POST"}
			m.QueryParam = []api.ServiceRouteHTTPMatchQueryParam{{Name: "v", Regex: "[0-9]+"}}
		}
		routes = append(routes, api.ServiceRoute{Match: &api.ServiceRouteMatch{HTTP: m}})
	}
	routes = append(routes, api.ServiceRoute{Match: &api.ServiceRouteMatch{HTTP: &api.ServiceRouteHTTPMatch{PathPrefix: "/"}}})
	t, err := Compile(router(routes...))
	if err != nil {
		b.Fatal(err)
	}
	return t
}

func BenchmarkSelect(b *testing.B) {
	t := benchTable(b)
	for _, bc := range []struct {
		name string
		req  Request
		want int
	}{
		{"first", Request{Method: "GET", Path: "/svc0/users", Header: hdrs{"X-Tenant": {"tenant-0"}}}, 0},
		{"last-with-query", Request{Method: "GET", Path: "/svc9/users", RawQuery: "a=1&v=42", Header: hdrs{"X-Tenant": {"tenant-9"}}}, 9},
		{"catch-all", Request{Method: "GET", Path: "/other", Header: hdrs{"X-Tenant": {"tenant-3"}}}, 10},
	} {
		b.Run(bc.name, func(b *testing.B) {
			if rt := t.Select(&bc.req); rt != t.Routes[bc.want] {
				b.Fatalf("Select picked %v, want route %d", rt, bc.want)
			}
			b.ReportAllocs()
			for b.Loop() {
				_ = t.Select(&bc.req)
			}
		})
	}
}

func BenchmarkPick(b *testing.B) {
	t := compileFile(b, "chain_api.json")
	rt := t.Routes[2]
	b.ReportAllocs()
	for b.Loop() {
		_ = rt.Pick(rand.Uint32())
	}
}

func TestSelectDoesNotAllocate(t *testing.T) {
	tb := benchTable(t)
	req := Request{Method: "GET", Path: "/svc9/users", RawQuery: "a=1&v=42", Header: hdrs{"X-Tenant": {"tenant-9"}}}
	if n := testing.AllocsPerRun(100, func() { _ = tb.Select(&req).Rewrite(req.Path) }); n != 0 {
		t.Fatalf("Select allocates %v times", n)
	}
}

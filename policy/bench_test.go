package policy

import (
	"fmt"
	"testing"

	"github.com/hashicorp/consul/api"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// benchIntentions compiles 20 intentions for "web", a realistic size for one
// destination: 16 exact allows (svc-00..svc-15), an exact deny ("blocked"),
// an L7 intention, and wildcard rules in another namespace and for other
// destinations. Unmatched default-namespace sources fall to the default deny.
func benchIntentions(tb testing.TB) *Intentions {
	tb.Helper()
	in, err := Compile("web", benchIntentionList(), CompileOptions{TrustDomain: trustDomain()})
	if err != nil {
		tb.Fatal(err)
	}
	return in
}

func benchIntentionList() []*api.Intention {
	list := make([]*api.Intention, 0, 21)
	for i := range 16 {
		list = append(list, ixn(fmt.Sprintf("svc-%02d", i), "web", allow))
	}
	list = append(list,
		ixn("blocked", "web", deny),
		l7("admin", "web"),
		with(ixn("*", "web", allow), func(i *api.Intention) { i.SourceNS = "team-a" }),
		ixn("*", "*", deny),
	)
	return list
}

func BenchmarkAuthorizeL4(b *testing.B) {
	var a Authorizer
	a.Store(benchIntentions(b))
	for _, bc := range []struct {
		name      string
		src       spiffeid.ID
		wantAllow bool
	}{
		{"allow-exact", svc("svc-07"), true},
		{"allow-last-exact", svc("svc-15"), true},
		{"deny-exact", svc("blocked"), false},
		{"deny-wildcard", svc("nobody"), false},
		{"deny-trust-domain", spiffeid.RequireFromString("spiffe://" + otherTD + "/ns/default/dc/dc1/svc/svc-07"), false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			if d := a.AuthorizeL4(bc.src); d.Allow != bc.wantAllow {
				b.Fatalf("AuthorizeL4(%s) = %v, want allow=%v", bc.src, d, bc.wantAllow)
			}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					_ = a.AuthorizeL4(bc.src)
				}
			})
		})
	}
}

// benchRules compiles n local rules in a realistic mix: per-service allows
// by exact ID with paths and methods, deny rules on admin paths, methods
// and debug headers, trust-domain and pattern rules, and a header-scoped
// tenant rule. The benchmark request (frontend GET /api/v1/items/42) is
// allowed by one of the last rules, after every deny has been checked.
func benchRules(tb testing.TB, n int) *Rules { return benchRulesFor(tb, n, localID) }

// localID is a peer's ID in the local rules' own naming.
func localID(name string) spiffeid.ID {
	return spiffeid.RequireFromString("spiffe://example.org/ns/prod/sa/" + name)
}

func benchRulesFor(tb testing.TB, n int, peer func(string) spiffeid.ID) *Rules {
	tb.Helper()
	rules := make([]Rule, 0, n)
	td := peer("x").TrustDomain()
	for i := 0; len(rules) < n-6; i++ {
		id := peer(fmt.Sprintf("svc-%02d", i))
		switch i % 4 {
		case 0:
			rules = append(rules, Rule{Allow: true, ID: id, HTTP: &HTTPMatch{PathPrefix: fmt.Sprintf("/svc-%02d/", i), Methods: []string{"GET", "POST"}}})
		case 1:
			rules = append(rules, Rule{ID: id, HTTP: &HTTPMatch{PathPrefix: "/admin", Methods: []string{"DELETE"}}})
		case 2:
			rules = append(rules, Rule{Allow: true, Pattern: fmt.Sprintf("spiffe://%s/ns/*/sa/svc-%02d", td.Name(), i),
				HTTP: &HTTPMatch{PathExact: fmt.Sprintf("/svc-%02d/health", i)}})
		default:
			rules = append(rules, Rule{Allow: true, ID: id, HTTP: &HTTPMatch{Headers: []HeaderMatch{{Name: "x-tenant", Exact: "acme"}}}})
		}
	}
	rules = append(rules,
		Rule{HTTP: &HTTPMatch{PathPrefix: "/admin"}},
		Rule{HTTP: &HTTPMatch{Headers: []HeaderMatch{{Name: "x-debug", Present: true}}}},
		Rule{TrustDomain: spiffeid.RequireTrustDomainFromString("partner.org")},
		Rule{HTTP: &HTTPMatch{Methods: []string{"TRACE", "CONNECT"}}},
		Rule{Allow: true, TrustDomain: td, PathPrefix: "/ns/staging"},
		Rule{Allow: true, ID: peer("frontend"),
			HTTP: &HTTPMatch{PathPrefix: "/api/", Methods: []string{"GET", "HEAD"}, Headers: []HeaderMatch{{Name: "x-tenant", Present: true}}}},
	)
	c, err := CompileRules(rules, RulesOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// BenchmarkAuthorize evaluates a request against 100 local rules layered
// over 20 intentions (one of them L7 with permissions), the issue's
// "100 rules plus intentions with a realistic mix".
func BenchmarkAuthorize(b *testing.B) {
	var a Authorizer
	list := benchIntentionList()
	list = append(list, with(ixn("frontend", "web", ""), func(i *api.Intention) {
		i.Permissions = []*api.IntentionPermission{
			{Action: deny, HTTP: &api.IntentionHTTPPermission{PathPrefix: "/internal"}},
			{Action: allow, HTTP: &api.IntentionHTTPPermission{PathPrefix: "/api/", Methods: []string{"GET", "HEAD", "POST"}}},
		}
	}))
	in, err := Compile("web", list, CompileOptions{TrustDomain: trustDomain()})
	if err != nil {
		b.Fatal(err)
	}
	a.Store(in)
	a.StoreLocal(benchRulesFor(b, 100, svc))
	local := benchRules(b, 100)
	r := &Request{Method: "GET", Path: "/api/v1/items/42", Header: hdrs{"X-Tenant": {"acme"}, "User-Agent": {"x"}}}
	frontend, frontendLocal := svc("frontend"), localID("frontend")
	for _, bc := range []struct {
		name  string
		run   func() Decision
		allow bool
	}{
		{"layered-allow", func() Decision { return a.Authorize(frontend, r) }, true},
		{"rules-100-allow", func() Decision { return local.Authorize(frontendLocal, r) }, true},
		{"intentions-l7-allow", func() Decision { return in.Authorize(frontend, r) }, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			if d := bc.run(); d.Allow != bc.allow {
				b.Fatalf("%v, want allow=%v", d, bc.allow)
			}
			b.ReportAllocs()
			for b.Loop() {
				_ = bc.run()
			}
		})
	}
}

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
	list := make([]*api.Intention, 0, 20)
	for i := range 16 {
		list = append(list, ixn(fmt.Sprintf("svc-%02d", i), "web", allow))
	}
	list = append(list,
		ixn("blocked", "web", deny),
		l7("admin", "web"),
		with(ixn("*", "web", allow), func(i *api.Intention) { i.SourceNS = "team-a" }),
		ixn("*", "*", deny),
	)
	in, err := Compile("web", list, CompileOptions{TrustDomain: trustDomain()})
	if err != nil {
		tb.Fatal(err)
	}
	return in
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

package policy

import (
	"strings"
	"testing"

	"github.com/hashicorp/consul/api"
)

func TestIntentionsL7(t *testing.T) {
	t.Parallel()
	perms := with(ixn("api", "web", ""), func(i *api.Intention) {
		i.Permissions = []*api.IntentionPermission{
			{Action: deny, HTTP: &api.IntentionHTTPPermission{PathPrefix: "/admin"}},
			{Action: allow, HTTP: &api.IntentionHTTPPermission{PathPrefix: "/", Methods: []string{"GET", "HEAD"}}},
			{Action: deny, HTTP: &api.IntentionHTTPPermission{Methods: []string{"DELETE"}}},
			{Action: allow, HTTP: &api.IntentionHTTPPermission{PathExact: "/items", Methods: []string{"POST"},
				Header: []api.IntentionHTTPHeaderPermission{{Name: "X-Tenant", Exact: "acme"}}}},
			{Action: allow, HTTP: &api.IntentionHTTPPermission{PathRegex: "/jobs/[0-9]+", Methods: []string{"PUT"}},
				JWT: &api.IntentionJWTRequirement{Providers: []*api.IntentionJWTProvider{{Name: "okta",
					VerifyClaims: []*api.IntentionJWTClaimVerification{{Path: []string{"role"}, Value: "ops"}}}}}},
		}
	})
	list := []*api.Intention{perms, ixn("db", "web", deny), ixn("*", "web", allow)}
	for _, defAllow := range []bool{false, true} {
		in, err := Compile("web", list, CompileOptions{TrustDomain: trustDomain(), DefaultAllow: defAllow})
		if err != nil {
			t.Fatal(err)
		}
		p := func(n string) string { return "intention web<-api (id api-web) permission " + n }
		def := "intention web<-api (id api-web)"
		tests := []struct {
			name, method, path string
			h                  hdrs
			tok                map[string]claims
			allow              bool
			rule               string
			code               Code
		}{
			{"admin denied before the allow", "GET", "/admin/x", nil, nil, false, p("1"), CodeForbidden},
			{"get allowed", "GET", "/x", nil, nil, true, p("2"), 0},
			{"delete denied", "DELETE", "/x", nil, nil, false, p("3"), CodeForbidden},
			{"delete denied in any case", "delete", "/x", nil, nil, false, p("3"), CodeForbidden},
			{"post with tenant", "POST", "/items", hdrs{"X-Tenant": {"acme"}}, nil, true, p("4"), 0},
			{"post with tenant twice", "POST", "/items", hdrs{"X-Tenant": {"acme", "acme"}}, nil, false, p("4"), CodeBadRequest},
			{"post other tenant: no permission, default", "POST", "/items", hdrs{"X-Tenant": {"x"}}, nil, defAllow, def, codeIf(!defAllow, CodeForbidden)},
			{"put with token", "PUT", "/jobs/7", nil, map[string]claims{"okta": {"role": "ops"}}, true, p("5"), 0},
			{"put without token", "PUT", "/jobs/7", nil, nil, defAllow, def, codeIf(!defAllow, CodeUnauthenticated)},
			{"put wrong role", "PUT", "/jobs/7", nil, map[string]claims{"okta": {"role": "dev"}}, defAllow, def, codeIf(!defAllow, CodeForbidden)},
		}
		for _, tt := range tests {
			d := in.Authorize(svc("api"), &Request{Method: tt.method, Path: tt.path, Header: tt.h, Auth: &tokens{by: tt.tok}})
			if d.Allow != tt.allow || d.Rule != tt.rule || d.Code != tt.code {
				t.Errorf("default allow %v, %s: %v (code %v), want allow=%v by %s code %v", defAllow, tt.name, d, d.Code, tt.allow, tt.rule, tt.code)
			}
		}
		// L4 (tcp) still denies an L7 intention; the handshake of an HTTP
		// service admits it; other sources are unchanged.
		if d := in.AuthorizeL4(svc("api")); d.Allow {
			t.Errorf("L4: %v", d)
		}
		if d := in.Admit(svc("api")); !d.Allow || !strings.Contains(d.Reason, "decided by them") {
			t.Errorf("admit: %v", d)
		}
		if d := in.Authorize(svc("db"), &Request{Method: "GET", Path: "/"}); d.Allow {
			t.Errorf("db: %v", d)
		}
		if d := in.Authorize(svc("other"), &Request{Method: "GET", Path: "/admin"}); !d.Allow {
			t.Errorf("other: %v", d)
		}
	}
}

func codeIf(b bool, c Code) Code {
	if b {
		return c
	}
	return CodeNone
}

func TestIntentionsL7Invalid(t *testing.T) {
	t.Parallel()
	for _, p := range []*api.IntentionPermission{
		{Action: "maybe", HTTP: &api.IntentionHTTPPermission{PathPrefix: "/"}},
		{Action: allow},
		{Action: allow, HTTP: &api.IntentionHTTPPermission{PathPrefix: "/", PathExact: "/a"}},
		{Action: allow, HTTP: &api.IntentionHTTPPermission{PathRegex: "(("}},
		{Action: allow, HTTP: &api.IntentionHTTPPermission{Header: []api.IntentionHTTPHeaderPermission{{Name: "x"}}}},
	} {
		i := with(ixn("api", "web", ""), func(i *api.Intention) { i.Permissions = []*api.IntentionPermission{p} })
		if _, err := Compile("web", []*api.Intention{i}, CompileOptions{TrustDomain: trustDomain()}); err == nil ||
			!strings.Contains(err.Error(), "web<-api") {
			t.Errorf("%+v: error %v, want one naming the intention", p, err)
		}
	}
}

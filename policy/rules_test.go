package policy

import (
	"errors"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func TestRulesPeers(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	partner := spiffeid.RequireTrustDomainFromString("partner.org")
	rules, err := CompileRules([]Rule{
		{Allow: true, ID: spiffeid.RequireFromString("spiffe://example.org/ns/prod/admin")},
		{Allow: false, TrustDomain: td, PathPrefix: "/ns/test/"},
		{Allow: true, TrustDomain: partner, PathPrefix: "/billing"},
		{Allow: true, TrustDomain: td},
		{Name: "no-legacy", Allow: false, Pattern: "spiffe://example.org/ns/*/sa/legacy"},
		{Allow: true, Pattern: "spiffe://partner.org/teams/*/svc/**"},
	}, RulesOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		id    string
		allow bool
		rule  string
	}{
		{"spiffe://example.org/ns/prod/admin", true, "rule 1"},
		// Deny wins whatever the order: rule 4 allows the trust domain.
		{"spiffe://example.org/ns/test/web", false, "rule 2"},
		{"spiffe://example.org/ns/test", true, "rule 4"}, // "/ns/test/" needs the slash
		{"spiffe://example.org/ns/prod/web", true, "rule 4"},
		{"spiffe://example.org/ns/prod/sa/legacy", false, "no-legacy"},
		{"spiffe://example.org/ns/prod/sa/legacy/x", true, "rule 4"}, // "*" is one segment
		{"spiffe://partner.org/billing", true, "rule 3"},
		{"spiffe://partner.org/billing/api", true, "rule 3"},
		{"spiffe://partner.org/billing-eu", false, RuleDefault}, // not at a "/" boundary
		{"spiffe://partner.org/teams/a/svc/x", true, "rule 6"},
		{"spiffe://partner.org/teams/a/svc/x/y", true, "rule 6"},
		{"spiffe://partner.org/teams/a/svc", false, RuleDefault}, // "/**" needs one segment
		{"spiffe://partner.org/other", false, RuleDefault},
		{"spiffe://other.org/ns/test/admin", false, RuleDefault},
	}
	for _, tt := range tests {
		id := spiffeid.RequireFromString(tt.id)
		for name, d := range map[string]Decision{"L4": rules.AuthorizeL4(id), "admit": rules.Admit(id),
			"request": rules.Authorize(id, &Request{Method: "GET", Path: "/"})} {
			if d.Allow != tt.allow || d.Rule != tt.rule {
				t.Errorf("%s %s: %v, want allow=%v by %s", name, tt.id, d, tt.allow, tt.rule)
			}
			if !d.Allow && d.Code != CodeForbidden {
				t.Errorf("%s %s: code %v, want forbidden", name, tt.id, d.Code)
			}
		}
	}
	if d := rules.AuthorizeL4(spiffeid.ID{}); d.Allow || d.Rule != RuleIdentity {
		t.Errorf("no ID: %v", d)
	}
	var nilRules *Rules
	if d := nilRules.AuthorizeL4(spiffeid.RequireFromString("spiffe://example.org/a")); d.Allow || d.Rule != RuleNotLoaded {
		t.Errorf("nil rules: %v", d)
	}
	s := rules.Summary()
	if !s.Loaded || s.Default != "deny" || len(s.Rules) != 6 || !strings.Contains(s.Rules[1].Match, "/ns/test/") ||
		s.Rules[4].Rule != "no-legacy" || s.Combining != "deny wins" {
		t.Errorf("summary %+v", s)
	}

	allowAll, err := CompileRules(nil, RulesOptions{DefaultAllow: true})
	if err != nil {
		t.Fatal(err)
	}
	if d := allowAll.AuthorizeL4(spiffeid.RequireFromString("spiffe://x.org/a")); !d.Allow || d.Rule != RuleDefault {
		t.Errorf("default allow: %v", d)
	}
}

func TestRulesInvalid(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	for _, r := range []Rule{
		{ID: spiffeid.RequireFromString("spiffe://example.org/a"), TrustDomain: td},
		{TrustDomain: td, PathPrefix: "ns"},
		{PathPrefix: "/ns"},
		{Pattern: "spiffe://example.org/a*"},
		{Pattern: "spiffe://example.org/**/a"},
		{Pattern: "spiffe://*.org/a"},
		{Pattern: "example.org/a"},
		{Pattern: "spiffe://example.org"},
		{HTTP: &HTTPMatch{PathExact: "/a", PathPrefix: "/b"}},
		{HTTP: &HTTPMatch{PathPrefix: "b"}},
		{HTTP: &HTTPMatch{PathRegex: "("}},
		{HTTP: &HTTPMatch{Methods: []string{"GE T"}}},
		{HTTP: &HTTPMatch{Headers: []HeaderMatch{{Name: "x"}}}},
		{HTTP: &HTTPMatch{Headers: []HeaderMatch{{Name: "x", Exact: "a", Prefix: "b"}}}},
		{HTTP: &HTTPMatch{Headers: []HeaderMatch{{Name: ":authority", Exact: "a"}}}},
		{HTTP: &HTTPMatch{Headers: []HeaderMatch{{Name: "x", Present: true, IgnoreCase: true}}}},
		{HTTP: &HTTPMatch{Headers: []HeaderMatch{{Name: "x", Regex: "a", IgnoreCase: true}}}},
		{JWT: &JWTRequirement{}},
		{JWT: &JWTRequirement{Providers: []JWTProvider{{Name: "p", VerifyClaims: []ClaimCheck{{Value: "x"}}}}}},
	} {
		if _, err := CompileRules([]Rule{r}, RulesOptions{}); err == nil || !strings.Contains(err.Error(), "rule 1") {
			t.Errorf("%+v: error %v, want one naming rule 1", r, err)
		}
	}
	if _, err := CompileRules([]Rule{{Name: "a"}, {Name: "a"}}, RulesOptions{}); err == nil {
		t.Error("two rules named a compiled")
	}
}

// hdrs is a test Headers over a map of canonical names to values.
type hdrs map[string][]string

func (h hdrs) Header(name string) (string, int) {
	v := h[name]
	if len(v) == 0 {
		return "", 0
	}
	return v[0], len(v)
}

// claims is a test Claims: path joined by "." to one value.
type claims map[string]string

func (c claims) Match(path []string, value string) bool { return c[strings.Join(path, ".")] == value }

// tokens is a test Authenticator: provider to claims; absent is an error.
type tokens struct {
	by    map[string]claims
	calls map[string]int
}

func (t *tokens) Authenticate(p string) (Claims, error) {
	if t.calls != nil {
		t.calls[p]++
	}
	if c, ok := t.by[p]; ok {
		return c, nil
	}
	return nil, errors.New("no token")
}

func TestRulesHTTP(t *testing.T) {
	web := spiffeid.RequireFromString("spiffe://example.org/web")
	ops := spiffeid.RequireFromString("spiffe://example.org/ops")
	rules, err := CompileRules([]Rule{
		{Name: "admin-deny", HTTP: &HTTPMatch{PathPrefix: "/admin"}},
		{Name: "ops-admin", Allow: true, ID: ops, HTTP: &HTTPMatch{PathPrefix: "/ops"}},
		{Name: "no-delete", HTTP: &HTTPMatch{Methods: []string{"DELETE"}}},
		{Name: "reads", Allow: true, HTTP: &HTTPMatch{Methods: []string{"GET", "HEAD"}}},
		{Name: "tenant-post", Allow: true, HTTP: &HTTPMatch{Methods: []string{"POST"}, PathRegex: "/v[0-9]+/items",
			Headers: []HeaderMatch{{Name: "x-tenant", Prefix: "acme-", IgnoreCase: true}}}},
		{Name: "no-debug", HTTP: &HTTPMatch{Headers: []HeaderMatch{{Name: "X-Debug", Present: true}}}},
		{Name: "need-ua", HTTP: &HTTPMatch{Headers: []HeaderMatch{{Name: "user-agent", Present: true, Invert: true}}}},
		{Name: "scoped", Allow: true, HTTP: &HTTPMatch{PathPrefix: "/api/", Methods: []string{"PUT"}},
			JWT: &JWTRequirement{Providers: []JWTProvider{{Name: "okta", VerifyClaims: []ClaimCheck{{Path: []string{"scope"}, Value: "write"}}}}}},
	}, RulesOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ua := []string{"curl"}
	tests := []struct {
		name   string
		src    spiffeid.ID
		method string
		path   string
		h      hdrs
		tok    map[string]claims
		allow  bool
		rule   string
		code   Code
	}{
		{"get allowed", web, "GET", "/x", hdrs{"User-Agent": ua}, nil, true, "reads", 0},
		{"admin denied", web, "GET", "/admin", hdrs{"User-Agent": ua}, nil, false, "admin-deny", CodeForbidden},
		{"admin prefix is a string prefix", web, "GET", "/administrator", hdrs{"User-Agent": ua}, nil, false, "admin-deny", CodeForbidden},
		{"ADMIN is another path", web, "GET", "/ADMIN", hdrs{"User-Agent": ua}, nil, true, "reads", 0},
		{"allow methods are exact: get", web, "get", "/x", hdrs{"User-Agent": ua}, nil, false, RuleDefault, CodeForbidden},
		{"deny methods fold case: delete", web, "delete", "/x", hdrs{"User-Agent": ua}, nil, false, "no-delete", CodeForbidden},
		{"deny methods fold case: Delete", web, "Delete", "/x", hdrs{"User-Agent": ua}, nil, false, "no-delete", CodeForbidden},
		{"unknown method", web, "PURGE", "/x", hdrs{"User-Agent": ua}, nil, false, RuleDefault, CodeForbidden},
		{"ops path for ops", ops, "PATCH", "/ops/x", hdrs{"User-Agent": ua}, nil, true, "ops-admin", 0},
		{"ops path not for web", web, "PATCH", "/ops/x", hdrs{"User-Agent": ua}, nil, false, RuleDefault, CodeForbidden},
		{"tenant post", web, "POST", "/v2/items", hdrs{"User-Agent": ua, "X-Tenant": {"ACME-eu"}}, nil, true, "tenant-post", 0},
		{"tenant post other tenant", web, "POST", "/v2/items", hdrs{"User-Agent": ua, "X-Tenant": {"evil"}}, nil, false, RuleDefault, CodeForbidden},
		{"tenant post regex is whole path", web, "POST", "/v2/items/x", hdrs{"User-Agent": ua, "X-Tenant": {"acme-1"}}, nil, false, RuleDefault, CodeForbidden},
		{"tenant header twice", web, "POST", "/v2/items", hdrs{"User-Agent": ua, "X-Tenant": {"acme-1", "evil"}}, nil, false, "tenant-post", CodeBadRequest},
		{"debug header denied", web, "GET", "/x", hdrs{"User-Agent": ua, "X-Debug": {"1"}}, nil, false, "no-debug", CodeForbidden},
		{"debug header twice", web, "GET", "/x", hdrs{"User-Agent": ua, "X-Debug": {"", ""}}, nil, false, "no-debug", CodeBadRequest},
		{"invert present", web, "GET", "/x", hdrs{}, nil, false, "need-ua", CodeForbidden},
		{"scoped with token", web, "PUT", "/api/a", hdrs{"User-Agent": ua}, map[string]claims{"okta": {"scope": "write"}}, true, "scoped", 0},
		{"scoped without token", web, "PUT", "/api/a", hdrs{"User-Agent": ua}, nil, false, RuleDefault, CodeUnauthenticated},
		{"scoped wrong scope", web, "PUT", "/api/a", hdrs{"User-Agent": ua}, map[string]claims{"okta": {"scope": "read"}}, false, RuleDefault, CodeForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &Request{Method: tt.method, Path: tt.path, Header: tt.h, Auth: &tokens{by: tt.tok}}
			d := rules.Authorize(tt.src, r)
			if d.Allow != tt.allow || d.Rule != tt.rule || d.Code != tt.code {
				t.Errorf("%v (code %v), want allow=%v by %s code %v", d, d.Code, tt.allow, tt.rule, tt.code)
			}
			if tt.code == CodeUnauthenticated && d.Provider != "okta" {
				t.Errorf("provider %q, want okta", d.Provider)
			}
		})
	}
	// At L4 (a tcp service) the request rules never match: only the
	// default decides here.
	if d := rules.AuthorizeL4(web); d.Allow {
		t.Errorf("L4: %v", d)
	}
	// The handshake admits a peer some allow rule could let in.
	if d := rules.Admit(web); !d.Allow {
		t.Errorf("admit: %v", d)
	}
}

func TestRulesJWTRequirementAndDryRun(t *testing.T) {
	web := spiffeid.RequireFromString("spiffe://example.org/web")
	req := &JWTRequirement{Providers: []JWTProvider{{Name: "a"}, {Name: "b", VerifyClaims: []ClaimCheck{{Path: []string{"aud2"}, Value: "x"}}}}}
	rules, err := CompileRules([]Rule{{Allow: true, TrustDomain: web.TrustDomain()}, {HTTP: &HTTPMatch{PathExact: "/secret"}}},
		RulesOptions{JWT: req})
	if err != nil {
		t.Fatal(err)
	}
	calls := map[string]int{}
	d := rules.Authorize(web, &Request{Method: "GET", Path: "/", Auth: &tokens{calls: calls}})
	if d.Allow || d.Code != CodeUnauthenticated || d.Rule != RuleJWT || d.Provider != "a" {
		t.Errorf("no token: %v %v %q", d, d.Code, d.Provider)
	}
	if d := rules.Authorize(web, &Request{Method: "GET", Path: "/", Auth: &tokens{by: map[string]claims{"b": {"aud2": "y"}}}}); d.Allow || d.Code != CodeForbidden {
		t.Errorf("claims fail: %v %v", d, d.Code)
	}
	if d := rules.Authorize(web, &Request{Method: "GET", Path: "/", Auth: &tokens{by: map[string]claims{"b": {"aud2": "x"}}}}); !d.Allow {
		t.Errorf("second provider: %v", d)
	}
	if d := rules.Authorize(web, &Request{Method: "GET", Path: "/", Auth: nil}); d.Allow || d.Code != CodeUnauthenticated {
		t.Errorf("no authenticator: %v", d)
	}
	if d := rules.AuthorizeL4(web); d.Allow {
		t.Errorf("L4 with a JWT requirement: %v", d)
	}

	dry, err := CompileRules([]Rule{{HTTP: &HTTPMatch{PathExact: "/secret"}}, {Allow: true, HTTP: &HTTPMatch{PathPrefix: "/pub"}}},
		RulesOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	for path, wantDry := range map[string]bool{"/secret": true, "/pub/x": false, "/other": true} {
		d := dry.Authorize(web, &Request{Method: "GET", Path: path})
		if !d.Allow || d.DryRun != wantDry {
			t.Errorf("dry run %s: %v dry=%v, want allow with dry=%v", path, d, d.DryRun, wantDry)
		}
		if wantDry && !strings.HasPrefix(d.Reason, "dry run, would deny") {
			t.Errorf("dry run %s: reason %q", path, d.Reason)
		}
	}
	if !strings.Contains(dry.Summary().Rules[0].Match, "path_exact=/secret") || !dry.Summary().DryRun {
		t.Errorf("summary %+v", dry.Summary())
	}
}

func TestAuthorizerLayers(t *testing.T) {
	var a Authorizer
	in := benchIntentions(t)
	local, err := CompileRules([]Rule{{HTTP: &HTTPMatch{PathPrefix: "/admin"}}}, RulesOptions{DefaultAllow: true})
	if err != nil {
		t.Fatal(err)
	}
	a.StoreLocal(local)
	if d := a.Authorize(svc("svc-01"), &Request{Method: "GET", Path: "/"}); d.Allow || d.Rule != RuleNotLoaded {
		t.Errorf("local without base: %v", d)
	}
	a.Store(in)
	if d := a.Authorize(svc("svc-01"), &Request{Method: "GET", Path: "/"}); !d.Allow || !strings.HasPrefix(d.Rule, "intention web<-svc-01") {
		t.Errorf("allowed by both: %v", d)
	}
	if d := a.Authorize(svc("svc-01"), &Request{Method: "GET", Path: "/admin"}); d.Allow || d.Rule != "rule 1" {
		t.Errorf("local deny: %v", d)
	}
	if d := a.Authorize(svc("blocked"), &Request{Method: "GET", Path: "/"}); d.Allow || !strings.Contains(d.Rule, "blocked") {
		t.Errorf("intention deny: %v", d)
	}
	d, layers := Explain(a.Load(), svc("svc-01"), &Request{Method: "GET", Path: "/admin"}, false)
	if d.Allow || len(layers) != 2 || layers[0].Layer != "intentions" || !layers[0].Decision.Allow || layers[1].Decision.Allow {
		t.Errorf("explain: %v %+v", d, layers)
	}
	if s := a.Load().Summary(); s.Local == nil || len(s.Local.Rules) != 1 {
		t.Errorf("summary: %+v", s)
	}
	a.StoreLocal(nil)
	if d := a.Authorize(svc("svc-01"), &Request{Method: "GET", Path: "/admin"}); !d.Allow {
		t.Errorf("local removed: %v", d)
	}
	dry, _ := CompileRules([]Rule{{HTTP: &HTTPMatch{PathPrefix: "/admin"}}}, RulesOptions{DefaultAllow: true, DryRun: true})
	a.StoreLocal(dry)
	if d := a.Authorize(svc("svc-01"), &Request{Method: "GET", Path: "/admin"}); !d.Allow || !d.DryRun || d.Rule != "rule 1" {
		t.Errorf("dry-run local: %v", d)
	}
}

func TestMatchersDoNotAllocate(t *testing.T) {
	rules := benchRules(t, 100)
	r := &Request{Method: "GET", Path: "/api/v1/items/42", Header: hdrs{"X-Tenant": {"acme"}, "User-Agent": {"x"}}}
	src := spiffeid.RequireFromString("spiffe://example.org/ns/prod/sa/frontend")
	if d := rules.Authorize(src, r); !d.Allow {
		t.Fatalf("bench request denied: %v", d)
	}
	if n := testing.AllocsPerRun(100, func() { _ = rules.Authorize(src, r) }); n != 0 {
		t.Errorf("Authorize allocated %v times", n)
	}
}

package policy

import (
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func TestIDRules(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	partner := spiffeid.RequireTrustDomainFromString("partner.org")
	rules, err := CompileIDRules([]IDRule{
		{Allow: true, ID: spiffeid.RequireFromString("spiffe://example.org/ns/test/admin")},
		{Allow: false, TrustDomain: td, PathPrefix: "/ns/test/"},
		{Allow: true, TrustDomain: partner, PathPrefix: "/billing"},
		{Allow: true, TrustDomain: td},
	}, false)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		id    string
		allow bool
		rule  string
	}{
		{"spiffe://example.org/ns/test/admin", true, "rule 1"},
		{"spiffe://example.org/ns/test/web", false, "rule 2"},
		{"spiffe://example.org/ns/test", true, "rule 4"}, // "/ns/test/" needs the slash
		{"spiffe://example.org/ns/prod/web", true, "rule 4"},
		{"spiffe://partner.org/billing", true, "rule 3"},
		{"spiffe://partner.org/billing/api", true, "rule 3"},
		{"spiffe://partner.org/billing-eu", false, RuleDefault}, // not at a "/" boundary
		{"spiffe://partner.org/other", false, RuleDefault},
		{"spiffe://other.org/ns/test/admin", false, RuleDefault},
	}
	for _, tt := range tests {
		d := rules.AuthorizeL4(spiffeid.RequireFromString(tt.id))
		if d.Allow != tt.allow || d.Rule != tt.rule {
			t.Errorf("%s: %v, want allow=%v by %s", tt.id, d, tt.allow, tt.rule)
		}
	}
	if d := rules.AuthorizeL4(spiffeid.ID{}); d.Allow || d.Rule != RuleIdentity {
		t.Errorf("no ID: %v", d)
	}
	var nilRules *IDRules
	if d := nilRules.AuthorizeL4(spiffeid.RequireFromString("spiffe://example.org/a")); d.Allow || d.Rule != RuleNotLoaded {
		t.Errorf("nil rules: %v", d)
	}
	s := rules.Summary()
	if !s.Loaded || s.Default != "deny" || len(s.Rules) != 4 || !strings.Contains(s.Rules[1].Match, "/ns/test/") {
		t.Errorf("summary %+v", s)
	}

	allowAll, err := CompileIDRules(nil, true)
	if err != nil {
		t.Fatal(err)
	}
	if d := allowAll.AuthorizeL4(spiffeid.RequireFromString("spiffe://x.org/a")); !d.Allow || d.Rule != RuleDefault {
		t.Errorf("default allow: %v", d)
	}
}

func TestIDRulesInvalid(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	for _, r := range []IDRule{
		{},
		{ID: spiffeid.RequireFromString("spiffe://example.org/a"), TrustDomain: td},
		{TrustDomain: td, PathPrefix: "ns"},
	} {
		if _, err := CompileIDRules([]IDRule{r}, false); err == nil || !strings.Contains(err.Error(), "rule 1") {
			t.Errorf("%+v: error %v, want one naming rule 1", r, err)
		}
	}
}

func TestAuthorizerIDRules(t *testing.T) {
	var a Authorizer
	rules, _ := CompileIDRules([]IDRule{{Allow: true, TrustDomain: spiffeid.RequireTrustDomainFromString("example.org")}}, false)
	a.Store(rules)
	if d := a.AuthorizeL4(spiffeid.RequireFromString("spiffe://example.org/a")); !d.Allow {
		t.Errorf("%v", d)
	}
	if a.Load() != Policy(rules) {
		t.Error("Load does not return the stored rules")
	}
}

func BenchmarkIDRules(b *testing.B) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	rules, _ := CompileIDRules([]IDRule{
		{Allow: false, TrustDomain: td, PathPrefix: "/ns/test/"},
		{Allow: true, TrustDomain: td, PathPrefix: "/ns/prod"},
	}, false)
	id := spiffeid.RequireFromString("spiffe://example.org/ns/prod/sa/web")
	b.ReportAllocs()
	for b.Loop() {
		if !rules.AuthorizeL4(id).Allow {
			b.Fatal("denied")
		}
	}
}

package policy

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// IDRule is one authorization rule by SPIFFE ID, as the static
// configuration file writes it. A rule matches a peer by exactly one of:
//   - ID: the peer's SPIFFE ID equals it;
//   - TrustDomain alone: the peer is in that trust domain;
//   - TrustDomain and PathPrefix: the peer is in that trust domain and its
//     path is PathPrefix or continues it at a "/" boundary ("/billing"
//     matches "/billing" and "/billing/api", not "/billing-eu"; a prefix
//     that ends in "/" matches what starts with it).
type IDRule struct {
	Allow       bool
	ID          spiffeid.ID
	TrustDomain spiffeid.TrustDomain
	PathPrefix  string
}

// String renders the rule the way the configuration writes it, for
// summaries and reasons.
func (r IDRule) String() string {
	action := "deny"
	if r.Allow {
		action = "allow"
	}
	switch {
	case !r.ID.IsZero():
		return action + " spiffe_id " + r.ID.String()
	case r.PathPrefix != "":
		return action + " spiffe://" + r.TrustDomain.Name() + r.PathPrefix + " (path prefix)"
	default:
		return action + " trust_domain " + r.TrustDomain.Name()
	}
}

func (r *IDRule) matches(id spiffeid.ID) bool {
	if !r.ID.IsZero() {
		return id == r.ID
	}
	if id.TrustDomain() != r.TrustDomain {
		return false
	}
	if r.PathPrefix == "" {
		return true
	}
	path := id.Path()
	if !strings.HasPrefix(path, r.PathPrefix) {
		return false
	}
	return len(path) == len(r.PathPrefix) || strings.HasSuffix(r.PathPrefix, "/") || path[len(r.PathPrefix)] == '/'
}

// IDRules is a compiled, immutable list of SPIFFE-ID rules: the first rule
// that matches the peer decides, else the default.
type IDRules struct {
	rules     []IDRule
	decisions []Decision
	def       Decision
}

// CompileIDRules validates rules and compiles them, in order. A rule is
// named "rule N" (1-based) in decisions and metrics.
func CompileIDRules(rules []IDRule, defaultAllow bool) (*IDRules, error) {
	c := &IDRules{rules: append([]IDRule(nil), rules...)}
	var errs []error
	for i, r := range c.rules {
		name := "rule " + strconv.Itoa(i+1)
		switch {
		case !r.ID.IsZero() && (!r.TrustDomain.IsZero() || r.PathPrefix != ""):
			errs = append(errs, fmt.Errorf("policy: %s: an exact SPIFFE ID excludes trust domain and path prefix", name))
		case r.ID.IsZero() && r.TrustDomain.IsZero():
			errs = append(errs, fmt.Errorf("policy: %s: needs a SPIFFE ID or a trust domain", name))
		case r.PathPrefix != "" && !strings.HasPrefix(r.PathPrefix, "/"):
			errs = append(errs, fmt.Errorf("policy: %s: path prefix %q must start with /", name, r.PathPrefix))
		}
		verdict := "denies"
		if r.Allow {
			verdict = "allows"
		}
		c.decisions = append(c.decisions, Decision{Allow: r.Allow, Rule: name,
			Reason: name + " (" + r.String() + ") " + verdict})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	c.def = Decision{Allow: defaultAllow, Rule: RuleDefault, Reason: "no rule matches the source; the default policy denies"}
	if defaultAllow {
		c.def.Reason = "no rule matches the source; the default policy allows"
	}
	return c, nil
}

// AuthorizeL4 decides whether the peer with SPIFFE ID src may connect: a
// nil set or a peer with no ID denies, else the first matching rule, else
// the default. Safe for concurrent use; it never blocks or allocates.
func (c *IDRules) AuthorizeL4(src spiffeid.ID) Decision {
	if c == nil {
		return notLoaded
	}
	if src.IsZero() {
		return Decision{Allow: false, Rule: RuleIdentity, Reason: "source presented no SPIFFE ID"}
	}
	for i := range c.rules {
		if c.rules[i].matches(src) {
			return c.decisions[i]
		}
	}
	return c.def
}

// Summary describes the rules in evaluation order.
func (c *IDRules) Summary() Summary {
	if c == nil {
		return Summary{Default: "deny", Rules: []RuleSummary{}}
	}
	s := Summary{Loaded: true, Default: "deny", Rules: make([]RuleSummary, len(c.rules))}
	if c.def.Allow {
		s.Default = "allow"
	}
	for i, r := range c.rules {
		action := "deny"
		if r.Allow {
			action = "allow"
		}
		s.Rules[i] = RuleSummary{Rule: c.decisions[i].Rule, Precedence: len(c.rules) - i, Match: r.String(), Action: action}
	}
	return s
}

package policy

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Rule is one local authorization rule, as the configuration file writes
// it. It matches a request when every matcher it has matches:
//
//   - the peer, by at most one of: ID (exact SPIFFE ID); Pattern (a SPIFFE
//     ID where "*" is one whole path segment and a final "/**" is one or
//     more segments); TrustDomain alone; TrustDomain with PathPrefix (the
//     peer's path is PathPrefix or continues it at a "/" boundary: "/billing"
//     matches "/billing" and "/billing/api", not "/billing-eu"; a prefix that
//     ends in "/" matches what starts with it). No peer matcher: any peer.
//   - HTTP: path, methods and headers of the request;
//   - JWT: a valid token whose claims verify.
//
// A rule with HTTP or JWT matchers only applies to HTTP services; on a tcp
// connection it never matches.
type Rule struct {
	// Name names the rule in decisions, logs and metrics; "" is "rule N"
	// (1-based position).
	Name        string
	Allow       bool
	ID          spiffeid.ID
	Pattern     string
	TrustDomain spiffeid.TrustDomain
	PathPrefix  string
	HTTP        *HTTPMatch
	JWT         *JWTRequirement
}

// String renders the rule the way the configuration writes it, for
// summaries and reasons.
func (r Rule) String() string {
	action := "deny"
	if r.Allow {
		action = "allow"
	}
	var parts []string
	switch {
	case !r.ID.IsZero():
		parts = append(parts, "spiffe_id "+r.ID.String())
	case r.Pattern != "":
		parts = append(parts, "spiffe_id_pattern "+r.Pattern)
	case r.PathPrefix != "":
		parts = append(parts, "spiffe://"+r.TrustDomain.Name()+r.PathPrefix+" (path prefix)")
	case !r.TrustDomain.IsZero():
		parts = append(parts, "trust_domain "+r.TrustDomain.Name())
	}
	if s := describeHTTP(r.HTTP); s != "" {
		parts = append(parts, s)
	}
	if s := describeJWT(r.JWT); s != "" {
		parts = append(parts, s)
	}
	if len(parts) == 0 {
		parts = append(parts, "any peer")
	}
	return action + " " + strings.Join(parts, " ")
}

// peerMatcher is a compiled peer matcher.
type peerMatcher struct {
	any      bool
	id       string // exact ID
	td       spiffeid.TrustDomain
	prefix   string
	segments []string // pattern path segments; "*" is any one segment
	rest     bool     // pattern ends in "/**"
	// pattern literals: the path before the first "*" and, without rest,
	// after the last one, checked before walking the segments
	head, tail string
}

func compilePeer(r *Rule) (peerMatcher, error) {
	n := 0
	if !r.ID.IsZero() {
		n++
	}
	if r.Pattern != "" {
		n++
	}
	if !r.TrustDomain.IsZero() {
		n++
	}
	switch {
	case n > 1:
		return peerMatcher{}, errors.New("at most one of an exact SPIFFE ID, a pattern and a trust domain")
	case r.PathPrefix != "" && r.TrustDomain.IsZero():
		return peerMatcher{}, errors.New("a path prefix needs a trust domain")
	case r.PathPrefix != "" && !strings.HasPrefix(r.PathPrefix, "/"):
		return peerMatcher{}, fmt.Errorf("path prefix %q must start with /", r.PathPrefix)
	case !r.ID.IsZero():
		return peerMatcher{id: r.ID.String()}, nil
	case r.Pattern != "":
		return compilePattern(r.Pattern)
	case !r.TrustDomain.IsZero():
		return peerMatcher{td: r.TrustDomain, prefix: r.PathPrefix}, nil
	}
	return peerMatcher{any: true}, nil
}

// compilePattern parses "spiffe://td/a/*/b/**".
func compilePattern(p string) (peerMatcher, error) {
	rest, ok := strings.CutPrefix(p, "spiffe://")
	if !ok {
		return peerMatcher{}, fmt.Errorf("pattern %q must start with spiffe://", p)
	}
	tdName, path, _ := strings.Cut(rest, "/")
	td, err := spiffeid.TrustDomainFromString(tdName)
	if err != nil || strings.Contains(tdName, "*") {
		return peerMatcher{}, fmt.Errorf("pattern %q: bad trust domain %q", p, tdName)
	}
	m := peerMatcher{td: td}
	if path == "" {
		return peerMatcher{}, fmt.Errorf("pattern %q has no path (use a trust domain rule)", p)
	}
	segs := strings.Split(path, "/")
	for i, s := range segs {
		switch {
		case s == "**" && i == len(segs)-1:
			m.rest = true
			continue
		case s == "**":
			return peerMatcher{}, fmt.Errorf(`pattern %q: "**" only as the last segment`, p)
		case s == "*":
		case strings.Contains(s, "*"):
			return peerMatcher{}, fmt.Errorf(`pattern %q: "*" only as a whole segment`, p)
		default:
			if err := spiffeid.ValidatePathSegment(s); err != nil {
				return peerMatcher{}, fmt.Errorf("pattern %q: %w", p, err)
			}
		}
		m.segments = append(m.segments, s)
	}
	first, last := len(m.segments), -1
	for i, s := range m.segments {
		if s == "*" {
			first, last = min(first, i), i
		}
	}
	m.head = "/" + strings.Join(m.segments[:first], "/")
	if first < len(m.segments) {
		m.head += "/"
	}
	if !m.rest && last >= 0 && last < len(m.segments)-1 {
		m.tail = "/" + strings.Join(m.segments[last+1:], "/")
	}
	return m, nil
}

func (m *peerMatcher) matches(id spiffeid.ID) bool {
	switch {
	case m.any:
		return true
	case m.id != "":
		return id.String() == m.id
	case id.TrustDomain() != m.td:
		return false
	case m.segments != nil || m.rest:
		p := id.Path()
		return strings.HasPrefix(p, m.head) && strings.HasSuffix(p, m.tail) && m.matchPattern(p)
	case m.prefix == "":
		return true
	}
	path := id.Path()
	if !strings.HasPrefix(path, m.prefix) {
		return false
	}
	return len(path) == len(m.prefix) || strings.HasSuffix(m.prefix, "/") || path[len(m.prefix)] == '/'
}

// matchPattern matches a SPIFFE ID path ("/a/b", already validated by
// spiffeid) segment by segment without allocating.
func (m *peerMatcher) matchPattern(path string) bool {
	for _, want := range m.segments {
		if len(path) == 0 {
			return false
		}
		seg := path[1:]
		next := ""
		if i := strings.IndexByte(seg, '/'); i >= 0 {
			seg, next = seg[:i], seg[i:]
		}
		if want != "*" && seg != want {
			return false
		}
		path = next
	}
	if m.rest {
		return len(path) > 0
	}
	return path == ""
}

// ruleIndex finds the rules that may match a peer: those for its exact ID
// and those with other peer matchers, each in rule order.
type ruleIndex struct {
	byID  map[string][]int
	other []int
}

func newRuleIndex(rules []compiledRule) ruleIndex {
	x := ruleIndex{byID: map[string][]int{}}
	for i := range rules {
		if id := rules[i].peer.id; id != "" {
			x.byID[id] = append(x.byID[id], i)
		} else {
			x.other = append(x.other, i)
		}
	}
	return x
}

// candidates returns the two lists of rule positions to try for src.
func (x *ruleIndex) candidates(src spiffeid.ID) ([]int, []int) {
	return x.byID[src.String()], x.other
}

// compiledRule is one compiled Rule.
type compiledRule struct {
	peer     peerMatcher
	http     *httpMatcher
	jwt      *jwtMatcher
	decision Decision // precomputed: returning it does not allocate
	// dryRun is decision as the dry-run mode reports a deny.
	dryRun Decision
	rule   Rule
}

// l7 reports whether the rule needs a request to match.
func (r *compiledRule) l7() bool { return r.http != nil || r.jwt != nil }

// RulesOptions are the settings of a rule set besides its rules.
type RulesOptions struct {
	// DefaultAllow is the decision when no rule matches.
	DefaultAllow bool
	// DryRun reports the decisions that would deny without denying: they
	// come back with Allow and DryRun set.
	DryRun bool
	// JWT, when set, is required of every request before the rules apply
	// (Consul's service-intentions JWT): a request without a valid token
	// gets 401, one whose claims do not verify 403.
	JWT *JWTRequirement
}

// Rules is a compiled, immutable set of local rules. Every rule whose
// matchers all match is considered: if any of them denies, the request is
// denied (deny wins); otherwise if any allows, it is allowed; otherwise
// the default decides. Rule order does not matter.
type Rules struct {
	denies, allows []compiledRule
	// deny and allow index denies and allows: rules by exact peer ID,
	// and the others, so a request looks at the rules of its peer only.
	deny, allow ruleIndex
	ordered     []*compiledRule // configuration order
	def, defDry Decision
	jwt         *jwtMatcher
	jwtReq      *JWTRequirement
	dryRun      bool
}

// CompileRules validates rules and compiles them. Errors name the rule
// ("rule 3" or its name), all of them joined.
func CompileRules(rules []Rule, opts RulesOptions) (*Rules, error) {
	c := &Rules{dryRun: opts.DryRun, jwtReq: opts.JWT}
	var errs []error
	var err error
	if c.jwt, err = compileJWT(opts.JWT); err != nil {
		errs = append(errs, fmt.Errorf("policy: JWT requirement: %w", err))
	}
	seen := map[string]bool{}
	var order []int
	for i, r := range rules {
		name := r.Name
		if name == "" {
			name = "rule " + strconv.Itoa(i+1)
		}
		if seen[name] {
			errs = append(errs, fmt.Errorf("policy: %s: name used by two rules", name))
		}
		seen[name] = true
		cr, err := compileLocalRule(r, name)
		if err != nil {
			errs = append(errs, fmt.Errorf("policy: %s: %w", name, err))
			continue
		}
		if r.Allow {
			c.allows = append(c.allows, cr)
			order = append(order, len(c.allows)-1)
		} else {
			c.denies = append(c.denies, cr)
			order = append(order, -len(c.denies))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	// order holds, per configured rule, its allow index, or -1-index of
	// its deny: pointers are taken once the slices stop growing.
	for _, i := range order {
		if i >= 0 {
			c.ordered = append(c.ordered, &c.allows[i])
		} else {
			c.ordered = append(c.ordered, &c.denies[-1-i])
		}
	}
	c.deny, c.allow = newRuleIndex(c.denies), newRuleIndex(c.allows)
	c.def = Decision{Allow: opts.DefaultAllow, Rule: RuleDefault, Reason: "no rule matches; the default policy denies", Code: CodeForbidden}
	if opts.DefaultAllow {
		c.def = Decision{Allow: true, Rule: RuleDefault, Reason: "no rule matches; the default policy allows"}
	}
	c.defDry = dryRunOf(c.def)
	return c, nil
}

func compileLocalRule(r Rule, name string) (compiledRule, error) {
	peer, err := compilePeer(&r)
	if err != nil {
		return compiledRule{}, err
	}
	h, err := compileHTTP(r.HTTP, !r.Allow)
	if err != nil {
		return compiledRule{}, err
	}
	j, err := compileJWT(r.JWT)
	if err != nil {
		return compiledRule{}, err
	}
	verdict := "denies"
	if r.Allow {
		verdict = "allows"
	}
	d := Decision{Allow: r.Allow, Rule: name, Reason: name + " (" + r.String() + ") " + verdict}
	if !r.Allow {
		d.Code = CodeForbidden
	}
	return compiledRule{peer: peer, http: h, jwt: j, decision: d, dryRun: dryRunOf(d), rule: r}, nil
}

// dryRunOf is how dry-run mode reports d: a deny becomes an allow that
// says what would have denied.
func dryRunOf(d Decision) Decision {
	if d.Allow {
		return d
	}
	return Decision{Allow: true, DryRun: true, Rule: d.Rule, Reason: "dry run, would deny: " + d.Reason}
}

// DryRun reports whether the rules only report what they would deny.
func (c *Rules) DryRun() bool { return c != nil && c.dryRun }

// Providers lists the JWT provider names the rules use, for checking that
// each is configured.
func (c *Rules) Providers() []string {
	if c == nil {
		return nil
	}
	out := c.jwtReq.names()
	for _, r := range c.ordered {
		out = append(out, r.rule.JWT.names()...)
	}
	return out
}

func (c *Rules) report(d Decision) Decision {
	if c.dryRun && !d.Allow {
		return dryRunOf(d)
	}
	return d
}

// AuthorizeL4 decides a connection to a tcp service: rules with HTTP or
// JWT matchers never match one. A nil set or a peer with no ID denies.
// Safe for concurrent use; it never blocks or allocates.
func (c *Rules) AuthorizeL4(src spiffeid.ID) Decision {
	if c == nil {
		return notLoaded
	}
	if src.IsZero() {
		return noID
	}
	if c.jwt != nil {
		return c.report(Decision{Rule: RuleJWT, Reason: "every request needs a token, which a tcp connection cannot carry", Code: CodeForbidden})
	}
	return c.decideConn(src, false)
}

// Admit decides, at the handshake of a connection to an HTTP service,
// whether any request from src could be allowed: a deny rule that needs no
// request rejects the peer, an allow rule of any kind admits it, else the
// default decides. Each request is then decided by Authorize.
func (c *Rules) Admit(src spiffeid.ID) Decision {
	if c == nil {
		return notLoaded
	}
	if src.IsZero() {
		return noID
	}
	return c.decideConn(src, true)
}

func (c *Rules) decideConn(src spiffeid.ID, admit bool) Decision {
	for i := range c.denies {
		if r := &c.denies[i]; !r.l7() && r.peer.matches(src) {
			return c.pick(r)
		}
	}
	for i := range c.allows {
		if r := &c.allows[i]; (admit || !r.l7()) && r.peer.matches(src) {
			return r.decision
		}
	}
	return c.pickDefault()
}

func (c *Rules) pick(r *compiledRule) Decision {
	if c.dryRun {
		return r.dryRun
	}
	return r.decision
}

func (c *Rules) pickDefault() Decision {
	if c.dryRun {
		return c.defDry
	}
	return c.def
}

// Authorize decides one request r from src. It allocates nothing on the
// allow path (JWT verification excepted, which Request.Auth does).
func (c *Rules) Authorize(src spiffeid.ID, r *Request) Decision {
	if c == nil {
		return notLoaded
	}
	if src.IsZero() {
		return noID
	}
	if c.jwt != nil {
		if o := c.jwt.match(r); !o.ok {
			return c.report(jwtDenial(RuleJWT, "the JWT requirement for every request", o))
		}
	}
	authFailed := ""
	exact, other := c.deny.candidates(src)
	for _, list := range [2][]int{exact, other} {
		for _, i := range list {
			rule := &c.denies[i]
			if !rule.peer.matches(src) {
				continue
			}
			switch o, hdr := c.matchRequest(rule, r, nil); o {
			case match:
				return c.pick(rule)
			case ambiguous:
				return c.report(ambiguousDenial(rule.decision.Rule, hdr))
			}
		}
	}
	exact, other = c.allow.candidates(src)
	for _, list := range [2][]int{exact, other} {
		for _, i := range list {
			rule := &c.allows[i]
			if !rule.peer.matches(src) {
				continue
			}
			switch o, hdr := c.matchRequest(rule, r, &authFailed); o {
			case match:
				return rule.decision
			case ambiguous:
				return c.report(ambiguousDenial(rule.decision.Rule, hdr))
			}
		}
	}
	if authFailed != "" && !c.def.Allow {
		return c.report(Decision{Rule: RuleDefault, Code: CodeUnauthenticated, Provider: authFailed,
			Reason: "no rule allows the request without a valid token from provider " + authFailed})
	}
	return c.pickDefault()
}

// matchRequest applies a rule's HTTP and JWT matchers; authFailed, when not
// nil, records the provider of an allow rule that matched but for its
// missing or invalid token.
func (c *Rules) matchRequest(rule *compiledRule, r *Request, authFailed *string) (outcome, string) {
	if rule.http != nil {
		if o, hdr := rule.http.match(r); o != match {
			return o, hdr
		}
	}
	if rule.jwt != nil {
		o := rule.jwt.match(r)
		if !o.ok {
			if o.unauthenticated && authFailed != nil && *authFailed == "" {
				*authFailed = o.provider
			}
			return noMatch, ""
		}
	}
	return match, ""
}

func ambiguousDenial(rule, header string) Decision {
	return Decision{Rule: rule, Code: CodeBadRequest,
		Reason: "header " + header + " was sent more than once and " + rule + " depends on it"}
}

func jwtDenial(rule, what string, o jwtOutcome) Decision {
	if o.unauthenticated {
		return Decision{Rule: rule, Code: CodeUnauthenticated, Provider: o.provider,
			Reason: what + " is not met: no valid token from provider " + o.provider}
	}
	return Decision{Rule: rule, Code: CodeForbidden, Provider: o.provider,
		Reason: what + " is not met: the token's claims do not verify"}
}

// Summary describes the rules.
func (c *Rules) Summary() Summary {
	if c == nil {
		return Summary{Default: "deny", Rules: []RuleSummary{}}
	}
	s := Summary{Loaded: true, Default: "deny", DryRun: c.dryRun, Combining: "deny wins", JWT: describeJWT(c.jwtReq),
		Rules: make([]RuleSummary, 0, len(c.ordered))}
	if c.def.Allow {
		s.Default = "allow"
	}
	for _, r := range c.ordered {
		action := "deny"
		if r.rule.Allow {
			action = "allow"
		}
		s.Rules = append(s.Rules, RuleSummary{Rule: r.decision.Rule, Match: strings.TrimPrefix(r.rule.String(), action+" "), Action: action})
	}
	return s
}

// RuleJWT names decisions of the JWT requirement every request must meet.
const RuleJWT = "jwt-requirement"

var noID = Decision{Allow: false, Rule: RuleIdentity, Reason: "source presented no SPIFFE ID", Code: CodeForbidden}

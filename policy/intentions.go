package policy

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/hashicorp/consul/api"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/outrider-mesh/outrider/mtls"
)

const (
	wildcard         = "*"
	defaultTenancy   = "default" // Consul's default namespace and partition
	sourceTypeConsul = string(api.IntentionSourceConsul)
)

// CompileOptions are the settings Compile needs besides the intentions.
type CompileOptions struct {
	// TrustDomain is the Connect CA's trust domain, for example
	// "11111111-2222-3333-4444-555555555555.consul". Peers from any other
	// trust domain are denied. Required.
	TrustDomain spiffeid.TrustDomain
	// DefaultAllow is the decision when no intention matches the source:
	// Consul's default intention policy (default_intention_policy, or the
	// ACL default_policy when that is unset).
	DefaultAllow bool
}

// Intentions is the compiled, immutable set of intentions for one
// destination service. It is safe for concurrent use; a nil *Intentions
// denies everything.
type Intentions struct {
	destination     string
	trustDomain     spiffeid.TrustDomain
	defaultDecision Decision
	rules           []rule // evaluation order: highest precedence first
	ignored         []IgnoredIntention
}

// rule is one compiled intention.
type rule struct {
	// Source pattern, normalized: partition and namespace are never "" (the
	// default tenancy is spelled "default"); namespace and name may be "*".
	srcPartition, srcNS, srcName string
	decision                     Decision // precomputed: returning it does not allocate
	summary                      RuleSummary
	// perms are the L7 permissions, in order; nil for an L4 intention.
	// Then decision is the L4 denial, admit the handshake's admission,
	// and noPerm the decision when no permission matches (the default).
	perms          []permission
	admit, noPerm  Decision
	noPermAuthFail Decision // noPerm when an allow permission lacked its token
	// sort keys beyond precedence, for a deterministic order
	dstNS, dstName, id string
}

func (r *rule) matches(partition, ns, name string) bool {
	// Same test as Consul's connect.IntentionMatch for IntentionMatchSource,
	// minus the peer (always local here). The name, most often different,
	// is compared first.
	return (r.srcName == wildcard || r.srcName == name) &&
		(r.srcNS == wildcard || r.srcNS == ns) &&
		r.srcPartition == partition
}

// Compile validates and compiles the intentions for destination, the local
// service's name. list is the answer of Consul's
// GET /v1/connect/intentions/match?by=destination&name=<destination>, in any
// order: Compile sorts it by precedence itself. It does not keep or modify
// list or its entries.
//
// Entries that cannot apply to a connection to destination are ignored and
// listed in Summary().Ignored: those whose DestinationName is neither
// destination nor "*", those from a cluster peer or sameness group, and
// those of a SourceType other than "consul". DestinationNS and
// DestinationPartition are not checked: the match endpoint already scoped the
// list to the local service's namespace and partition.
//
// Compile returns an error, prefixed "policy: " and naming the entry, when
// destination is empty or a wildcard, opts.TrustDomain is zero, or an entry is
// nil, has an empty SourceName or DestinationName, uses "*" where Consul does
// not allow it, or has no L7 Permissions and an Action other than "allow" or
// "deny". On error the caller should keep its previous Intentions.
func Compile(destination string, list []*api.Intention, opts CompileOptions) (*Intentions, error) {
	if destination == "" || strings.Contains(destination, wildcard) {
		return nil, fmt.Errorf("policy: destination %q must be an exact service name", destination)
	}
	if opts.TrustDomain.IsZero() {
		return nil, errors.New("policy: CompileOptions.TrustDomain is required")
	}
	in := &Intentions{
		destination:     destination,
		trustDomain:     opts.TrustDomain,
		defaultDecision: defaultDecision(opts.DefaultAllow),
		rules:           make([]rule, 0, len(list)),
	}
	for i, ixn := range list {
		if err := validate(ixn); err != nil {
			return nil, fmt.Errorf("policy: intention %d: %w", i, err)
		}
		if why := ignoreReason(ixn, destination); why != "" {
			in.ignored = append(in.ignored, IgnoredIntention{Rule: ruleName(ixn), Reason: why})
			continue
		}
		r, err := compileRule(ixn, opts.DefaultAllow)
		if err != nil {
			return nil, fmt.Errorf("policy: %s: %w", ruleName(ixn), err)
		}
		in.rules = append(in.rules, r)
	}
	slices.SortFunc(in.rules, compareRules)
	slices.SortFunc(in.ignored, func(a, b IgnoredIntention) int {
		return cmp.Or(strings.Compare(a.Rule, b.Rule), strings.Compare(a.Reason, b.Reason))
	})
	return in, nil
}

// validate applies Consul's own rules for an intention (see Validate in
// Consul's agent/structs/intention.go) that this package depends on.
func validate(ixn *api.Intention) error {
	if ixn == nil {
		return errors.New("is nil")
	}
	switch {
	case ixn.SourceName == "":
		return fmt.Errorf("%s: SourceName is empty", ixn)
	case ixn.DestinationName == "":
		return fmt.Errorf("%s: DestinationName is empty", ixn)
	}
	for _, f := range [...]struct{ field, value string }{
		{"SourceName", ixn.SourceName},
		{"SourceNS", ixn.SourceNS},
		{"DestinationName", ixn.DestinationName},
		{"DestinationNS", ixn.DestinationNS},
	} {
		if f.value != wildcard && strings.Contains(f.value, wildcard) {
			return fmt.Errorf("%s: %s %q: wildcard '*' cannot be part of a value", ixn, f.field, f.value)
		}
	}
	if strings.Contains(ixn.SourcePartition, wildcard) {
		return fmt.Errorf("%s: SourcePartition %q cannot be a wildcard", ixn, ixn.SourcePartition)
	}
	if ixn.SourceNS == wildcard && ixn.SourceName != wildcard {
		return fmt.Errorf("%s: exact SourceName %q cannot follow wildcard SourceNS", ixn, ixn.SourceName)
	}
	if ixn.DestinationNS == wildcard && ixn.DestinationName != wildcard {
		return fmt.Errorf("%s: exact DestinationName %q cannot follow wildcard DestinationNS", ixn, ixn.DestinationName)
	}
	if len(ixn.Permissions) == 0 {
		switch ixn.Action {
		case api.IntentionActionAllow, api.IntentionActionDeny:
		default:
			return fmt.Errorf("%s: Action %q is neither %q nor %q and there are no L7 Permissions",
				ixn, ixn.Action, api.IntentionActionAllow, api.IntentionActionDeny)
		}
	}
	return nil
}

// ignoreReason says why a valid intention can never match a connection to
// destination, or returns "" when it may.
func ignoreReason(ixn *api.Intention, destination string) string {
	switch {
	case ixn.DestinationName != destination && ixn.DestinationName != wildcard:
		return "destination is not " + destination
	// Cluster peering is not supported yet: a peered source presents an
	// identity from the peer's trust domain, which AuthorizeL4 denies before
	// looking at intentions, and Consul matches SourcePeer only against
	// connections from that peer (never against local services). So these
	// intentions can never match here.
	case ixn.SourcePeer != "":
		return "source peer " + ixn.SourcePeer + " (cluster peering is not supported)"
	// Sameness groups expand to peers and partitions; like peers, they are
	// not supported yet, and never match a local, default-partition source.
	case ixn.SourceSamenessGroup != "":
		return "source sameness group " + ixn.SourceSamenessGroup + " (sameness groups are not supported)"
	case ixn.SourceType != "" && string(ixn.SourceType) != sourceTypeConsul:
		return "source type " + string(ixn.SourceType) + " is not a Consul service"
	}
	return ""
}

func compileRule(ixn *api.Intention, defaultAllow bool) (rule, error) {
	r := rule{
		srcPartition: orDefault(ixn.SourcePartition),
		srcNS:        orDefault(ixn.SourceNS),
		srcName:      ixn.SourceName,
		dstNS:        orDefault(ixn.DestinationNS),
		dstName:      ixn.DestinationName,
		id:           ixn.ID,
	}
	prec := ixn.Precedence
	if prec == 0 {
		prec = precedence(ixn)
	}
	name := ruleName(ixn)
	match := fmt.Sprintf("the most specific matching intention (precedence %d)", prec)
	var action string
	switch {
	case len(ixn.Permissions) > 0:
		// Consul's /v1/agent/connect/authorize denies on an L7 intention too:
		// its permissions need the request, which an L4 proxy never sees.
		action = "L7 permissions"
		r.decision = Decision{Allow: false, Rule: name, Reason: match + fmt.Sprintf(
			" has %d L7 permission(s), which cannot be checked on an L4 connection: denied", len(ixn.Permissions)), Code: CodeForbidden}
		r.admit = Decision{Allow: true, Rule: name, Reason: match + " has L7 permissions: each request is decided by them"}
	case ixn.Action == api.IntentionActionAllow:
		action = "allow"
		r.decision = Decision{Allow: true, Rule: name, Reason: match + " allows it"}
	default:
		action = "deny"
		r.decision = Decision{Allow: false, Rule: name, Reason: match + " denies it", Code: CodeForbidden}
	}
	if len(ixn.Permissions) > 0 {
		perms, err := compilePermissions(name, ixn.Permissions)
		if err != nil {
			return rule{}, err
		}
		r.perms = perms
		r.noPerm = defaultDecision(defaultAllow)
		r.noPerm.Rule = name
		r.noPerm.Reason = match + " has no permission matching the request; " + r.noPerm.Reason[len("no intention matches the source; "):]
		r.noPermAuthFail = r.noPerm
		if !defaultAllow {
			r.noPermAuthFail.Code = CodeUnauthenticated
			r.noPermAuthFail.Reason = match + " allows the request only with a valid token"
		}
	}
	r.summary = RuleSummary{
		Rule:            name,
		Precedence:      prec,
		SourcePartition: r.srcPartition,
		SourceNamespace: r.srcNS,
		SourceName:      r.srcName,
		Action:          action,
	}
	for _, p := range r.perms {
		r.summary.Permissions = append(r.summary.Permissions, p.summary)
	}
	return r, nil
}

// precedence computes an intention's precedence as Consul Community Edition
// does when the API response leaves it 0. The table is the one in Consul's
// "Service intentions overview" documentation (section "Precedence and match
// order", website/content/docs/connect/intentions/index.mdx) and is
// implemented by UpdatePrecedence and countExact in Consul's
// agent/structs/intention.go:
//
//	Precedence | Source NS | Source Name | Destination NS | Destination Name
//	         9 | Exact     | Exact       | Exact          | Exact
//	         8 | Exact     | *           | Exact          | Exact
//	         7 | *         | *           | Exact          | Exact
//	         6 | Exact     | Exact       | Exact          | *
//	         5 | Exact     | *           | Exact          | *
//	         4 | *         | *           | Exact          | *
//	         3 | Exact     | Exact       | *              | *
//	         2 | Exact     | *           | *              | *
//	         1 | *         | *           | *              | *
//
// An empty namespace is the default namespace, which is exact.
func precedence(ixn *api.Intention) int {
	return 3*countExact(ixn.DestinationNS, ixn.DestinationName) + countExact(ixn.SourceNS, ixn.SourceName) + 1
}

// countExact is the number of exact (non-wildcard) values in ns/name. A
// wildcard namespace implies a wildcard name (validate enforces it).
func countExact(ns, name string) int {
	switch {
	case ns == wildcard:
		return 0
	case name == wildcard:
		return 1
	default:
		return 2
	}
}

// compareRules orders rules for evaluation: higher precedence first; at equal
// precedence deny (including L7, which denies at L4) before allow, as Consul
// documents "deny over allow if match criteria are weighted equally"; then
// lexicographically, so that the order never depends on the input order.
func compareRules(a, b rule) int {
	return cmp.Or(
		cmp.Compare(b.summary.Precedence, a.summary.Precedence),
		compareBool(a.decision.Allow, b.decision.Allow),
		strings.Compare(a.srcPartition, b.srcPartition),
		strings.Compare(a.srcNS, b.srcNS),
		strings.Compare(a.srcName, b.srcName),
		strings.Compare(a.dstNS, b.dstNS),
		strings.Compare(a.dstName, b.dstName),
		strings.Compare(a.id, b.id),
		strings.Compare(a.summary.Action, b.summary.Action),
	)
}

// compareBool orders false before true.
func compareBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case !a:
		return -1
	default:
		return 1
	}
}

// ruleName names an intention in Decision.Rule, for example
// "intention web<-api (id 1a2b...)" or "intention ns1/*<-*". Intentions
// created through config entries have no ID.
func ruleName(ixn *api.Intention) string {
	s := "intention " + tenancyName(ixn.DestinationPartition, ixn.DestinationNS, ixn.DestinationName) +
		"<-" + tenancyName(ixn.SourcePartition, ixn.SourceNS, ixn.SourceName)
	if ixn.SourcePeer != "" {
		s += " (peer " + ixn.SourcePeer + ")"
	}
	if ixn.SourceSamenessGroup != "" {
		s += " (sameness group " + ixn.SourceSamenessGroup + ")"
	}
	if ixn.ID != "" {
		s += " (id " + ixn.ID + ")"
	}
	return s
}

// tenancyName spells a service the short way Consul's CLI does: just the name
// in the default partition and namespace.
func tenancyName(partition, ns, name string) string {
	switch {
	case orDefault(partition) != defaultTenancy:
		return partition + "/" + orDefault(ns) + "/" + name
	case orDefault(ns) != defaultTenancy:
		return ns + "/" + name
	default:
		return name
	}
}

func orDefault(s string) string {
	if s == "" {
		return defaultTenancy
	}
	return s
}

func defaultDecision(allow bool) Decision {
	if allow {
		return Decision{Allow: true, Rule: RuleDefault, Reason: "no intention matches the source; the default policy allows"}
	}
	return Decision{Allow: false, Rule: RuleDefault, Reason: "no intention matches the source; the default policy denies", Code: CodeForbidden}
}

// AuthorizeL4 decides whether the peer with SPIFFE ID src may open a
// connection to the destination. In order: a nil set denies (RuleNotLoaded);
// an ID that is not a Consul service identity denies (RuleIdentity); an
// identity from another trust domain denies (RuleTrustDomain); otherwise the
// highest-precedence intention whose source matches decides (allow, deny, or
// deny for an L7 intention), and with no match the default policy does
// (RuleDefault). The source's datacenter is not considered: intentions apply
// across federated datacenters.
//
// AuthorizeL4 is safe for concurrent use, never blocks, and does not allocate
// unless it denies for RuleIdentity or RuleTrustDomain.
func (in *Intentions) AuthorizeL4(src spiffeid.ID) Decision {
	r, d := in.source(src)
	if r == nil {
		return d
	}
	return r.decision
}

// identity checks that src is a Consul service identity of the trust
// domain; otherwise it returns the denial.
func (in *Intentions) identity(src spiffeid.ID) (Decision, mtls.ServiceID, bool) {
	sid, err := mtls.ParseServiceID(src)
	if err != nil {
		reason := "source presented no SPIFFE ID"
		if !src.IsZero() {
			reason = "source " + src.String() + " is not a Consul service identity"
		}
		return Decision{Allow: false, Rule: RuleIdentity, Reason: reason, Code: CodeForbidden}, sid, false
	}
	if sid.TrustDomain != in.trustDomain {
		return Decision{Allow: false, Rule: RuleTrustDomain, Code: CodeForbidden, Reason: "source trust domain " +
			strconv.Quote(sid.TrustDomain.Name()) + " is not " + strconv.Quote(in.trustDomain.Name())}, sid, false
	}
	return Decision{}, sid, true
}

// Summary describes compiled intentions for /config_dump and the admin
// "explain" view. It is a copy: changing it does not change the Intentions.
type Summary struct {
	// Loaded is false for a nil *Intentions, which denies everything.
	Loaded      bool   `json:"loaded"`
	Destination string `json:"destination,omitempty"`
	TrustDomain string `json:"trust_domain,omitempty"`
	// Default is "allow" or "deny": the decision when no rule matches.
	Default string `json:"default"`
	// Rules are in evaluation order; the first whose source matches decides.
	Rules []RuleSummary `json:"rules"`
	// Ignored lists the intentions that can never match, and why.
	Ignored []IgnoredIntention `json:"ignored,omitempty"`
	// Local rules only: how rules combine, the JWT requirement every
	// request must meet, and whether they only report (dry run).
	Combining string `json:"combining,omitempty"`
	JWT       string `json:"jwt_requirement,omitempty"`
	DryRun    bool   `json:"dry_run,omitempty"`
	// Local is the local rules layered over the intentions, if any.
	Local *Summary `json:"local,omitempty"`
}

// RuleSummary describes one compiled intention.
type RuleSummary struct {
	Rule            string `json:"rule"`
	Precedence      int    `json:"precedence"`
	SourcePartition string `json:"source_partition,omitempty"`
	SourceNamespace string `json:"source_namespace,omitempty"`
	SourceName      string `json:"source_name,omitempty"`
	// Match is what a local rule matches (intentions leave it empty).
	Match string `json:"match,omitempty"`
	// Action is "allow", "deny" or "L7 permissions".
	Action string `json:"action"`
	// Permissions are an L7 intention's permissions, in evaluation order.
	Permissions []PermissionSummary `json:"permissions,omitempty"`
}

// PermissionSummary describes one L7 permission of an intention.
type PermissionSummary struct {
	Rule   string `json:"rule"`
	Action string `json:"action"`
	Match  string `json:"match"`
}

// IgnoredIntention is an intention that Compile accepted but left out.
type IgnoredIntention struct {
	Rule   string `json:"rule"`
	Reason string `json:"reason"`
}

// Summary returns a description of the compiled set. A nil *Intentions gives
// a Summary with Loaded false and Default "deny".
func (in *Intentions) Summary() Summary {
	if in == nil {
		return Summary{Default: "deny", Rules: []RuleSummary{}}
	}
	s := Summary{
		Loaded:      true,
		Destination: in.destination,
		TrustDomain: in.trustDomain.Name(),
		Default:     "deny",
		Rules:       make([]RuleSummary, len(in.rules)),
		Ignored:     slices.Clone(in.ignored),
	}
	if in.defaultDecision.Allow {
		s.Default = "allow"
	}
	for i := range in.rules {
		s.Rules[i] = in.rules[i].summary
	}
	return s
}

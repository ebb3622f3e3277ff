package policy

// Rule names of decisions that no intention made. Decisions made by an
// intention name it instead, for example "intention web<-api (id 1a2b...)".
const (
	// RuleDefault: no intention matched; the default policy decided.
	RuleDefault = "default"
	// RuleTrustDomain: the peer's identity is from another trust domain.
	RuleTrustDomain = "trust-domain"
	// RuleIdentity: the peer's SPIFFE ID is not a Consul service identity.
	RuleIdentity = "identity"
	// RuleNotLoaded: no intentions have been compiled and stored yet.
	RuleNotLoaded = "not-loaded"
)

// Decision is the outcome of one authorization. It is a plain value: it can
// be copied, compared and logged, and carries no reference to the rules.
type Decision struct {
	// Allow reports whether the connection or request may proceed.
	Allow bool `json:"allow"`
	// Rule names what decided: one of the Rule* constants, or an intention.
	// It is short and stable enough to use as a metric label.
	Rule string `json:"rule"`
	// Reason is a short human sentence for logs and the admin "explain" view.
	Reason string `json:"reason"`
	// Code says how a denied request is answered (403, 401 or 400); it is
	// CodeNone when Allow is true and for connection-level denials.
	Code Code `json:"code,omitempty"`
	// DryRun marks a decision of rules in dry-run mode that would deny:
	// Allow is true, and Rule and Reason say what would have denied it.
	DryRun bool `json:"dry_run,omitempty"`
	// Provider, with CodeUnauthenticated, is the JWT provider whose token
	// was missing or invalid.
	Provider string `json:"provider,omitempty"`
}

// String renders the decision for logs, for example
// "deny by trust-domain: source trust domain "a.consul" is not "b.consul"".
func (d Decision) String() string {
	verdict := "deny"
	switch {
	case d.DryRun:
		verdict = "would deny (dry run)"
	case d.Allow:
		verdict = "allow"
	}
	return verdict + " by " + d.Rule + ": " + d.Reason
}

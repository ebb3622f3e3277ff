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
	// Allow reports whether the connection may proceed.
	Allow bool
	// Rule names what decided: one of the Rule* constants, or an intention.
	// It is short and stable enough to use as a metric label.
	Rule string
	// Reason is a short human sentence for logs and the admin "explain" view.
	Reason string
}

// String renders the decision for logs, for example
// "deny by trust-domain: source trust domain "a.consul" is not "b.consul"".
func (d Decision) String() string {
	verdict := "deny"
	if d.Allow {
		verdict = "allow"
	}
	return verdict + " by " + d.Rule + ": " + d.Reason
}

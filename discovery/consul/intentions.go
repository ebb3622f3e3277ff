package consul

import (
	"fmt"

	"github.com/hashicorp/consul/api"
)

// Intentions returns a Fetch of the intentions that apply to connections
// into destination (those naming it or "*"), as the agent's
// /v1/connect/intentions/match?by=destination answers, with blocking.
//
// Consul's answer has a key for every name asked about (its value null or
// [] when no intention applies). An answer without destination's key (such
// as "null" or "{}") or with a null intention is malformed and fails: read as
// "no intentions", it would drop every deny intention and leave only the
// default decision, which is allow when ACLs are off.
func Intentions(client *api.Client, destination string) Fetch[[]*api.Intention] {
	return func(opts *api.QueryOptions) ([]*api.Intention, *api.QueryMeta, error) {
		m, meta, err := client.Connect().IntentionMatch(&api.IntentionMatch{
			By:    api.IntentionMatchDestination,
			Names: []string{destination},
		}, opts)
		if err != nil {
			return nil, nil, fmt.Errorf("consul: intentions for %q: %w", destination, err)
		}
		list, err := matched(m, destination)
		if err != nil {
			return nil, nil, err
		}
		return list, meta, nil
	}
}

// matched checks an intention-match answer and returns destination's list.
func matched(m map[string][]*api.Intention, destination string) ([]*api.Intention, error) {
	list, ok := m[destination]
	if !ok {
		return nil, fmt.Errorf("consul: intentions for %q: malformed answer: it does not list %q", destination, destination)
	}
	for i, ixn := range list {
		if ixn == nil {
			return nil, fmt.Errorf("consul: intentions for %q: malformed answer: intention %d is null", destination, i)
		}
	}
	return list, nil
}

// DefaultAllow reports what happens to a connection no intention matches:
// Consul v1.15 allows it when ACLs are disabled and otherwise follows the
// ACL default policy (agent/connect_auth.go, IntentionDefaultAllow). It reads
// the agent's /v1/agent/self; an answer it cannot interpret is an error, so
// the caller fails closed.
func DefaultAllow(client *api.Client) (bool, error) {
	self, err := client.Agent().Self()
	if err != nil {
		return false, fmt.Errorf("consul: agent/self: %w", err)
	}
	return defaultAllowOf(self)
}

// defaultAllowOf is DefaultAllow on the decoded /v1/agent/self answer.
func defaultAllowOf(self map[string]map[string]any) (bool, error) {
	debug := self["DebugConfig"]
	enabled, ok := debug["ACLsEnabled"].(bool)
	if !ok {
		return false, fmt.Errorf("consul: agent/self: DebugConfig.ACLsEnabled missing; cannot tell the default intention policy")
	}
	if !enabled {
		return true, nil
	}
	settings, _ := debug["ACLResolverSettings"].(map[string]any)
	switch policy, _ := settings["ACLDefaultPolicy"].(string); policy {
	case "allow":
		return true, nil
	case "deny":
		return false, nil
	default:
		return false, fmt.Errorf("consul: agent/self: unknown ACL default policy %q", policy)
	}
}

package consul

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"

	"github.com/hashicorp/consul/api"
)

// LoadBalancer returns a Fetch of the load-balancer settings that apply to
// calls to service in datacenter dc ("" for the agent's own): the
// LoadBalancer block of the service-resolver the compiled discovery chain
// resolves service with (nil when none is configured). Consul compiles the
// chain from the service-resolver, service-defaults and proxy-defaults
// entries; the fetch blocks until the chain changes.
func LoadBalancer(client *api.Client, service, dc string) Fetch[*api.LoadBalancer] {
	return func(opts *api.QueryOptions) (*api.LoadBalancer, *api.QueryMeta, error) {
		resp, meta, err := client.DiscoveryChain().Get(service, &api.DiscoveryChainOptions{EvaluateInDatacenter: dc}, opts)
		if err != nil {
			return nil, nil, fmt.Errorf("consul: discovery-chain/%s: %w", service, err)
		}
		if resp == nil || resp.Chain == nil {
			return nil, meta, nil
		}
		return resolverLoadBalancer(resp.Chain), meta, nil
	}
}

// resolverLoadBalancer finds the resolver that handles the chain's default
// route: the start node when it is a resolver, else the resolver of the
// chain's own service (routers and splitters are not followed yet).
func resolverLoadBalancer(c *api.CompiledDiscoveryChain) *api.LoadBalancer {
	if n := c.Nodes[c.StartNode]; n != nil && n.Type == api.DiscoveryGraphNodeTypeResolver {
		return n.LoadBalancer
	}
	names := make([]string, 0, len(c.Nodes))
	for name := range c.Nodes {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		n := c.Nodes[name]
		if n.Type != api.DiscoveryGraphNodeTypeResolver || n.Resolver == nil {
			continue
		}
		if t := c.Targets[n.Resolver.Target]; t != nil && t.Service == c.ServiceName {
			return n.LoadBalancer
		}
	}
	return nil
}

// ChainJSON returns a Fetch of the compiled discovery chain of service
// (/v1/discovery-chain/<service>), undecoded: the "Chain" object as the
// agent serves it, for the sidecar's route compiler, which needs fields the
// consul/api types drop (the splits' Definition with their header
// modifiers). dc ("" for the agent's own) is the datacenter whose servers
// compile it. The fetch blocks until the chain changes.
func ChainJSON(client *api.Client, service, dc string) Fetch[json.RawMessage] {
	return func(opts *api.QueryOptions) (json.RawMessage, *api.QueryMeta, error) {
		opts.Datacenter = dc
		var resp struct{ Chain json.RawMessage }
		meta, err := client.Raw().Query("/v1/discovery-chain/"+url.PathEscape(service), &resp, opts)
		if err != nil {
			return nil, nil, fmt.Errorf("consul: discovery-chain/%s: %w", service, err)
		}
		if len(resp.Chain) == 0 || string(resp.Chain) == "null" {
			return nil, nil, fmt.Errorf("consul: discovery-chain/%s: the answer has no chain", service)
		}
		return resp.Chain, meta, nil
	}
}

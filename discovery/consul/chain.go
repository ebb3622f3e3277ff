package consul

import (
	"encoding/json"
	"fmt"
	"net/url"

	"github.com/hashicorp/consul/api"
)

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

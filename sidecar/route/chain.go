package route

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/hashicorp/consul/api"
)

// Chain is a compiled discovery chain: the "Chain" object of the answer to
// GET /v1/discovery-chain/<service>, decodable with encoding/json. It
// mirrors api.CompiledDiscoveryChain with the fields that type drops: the
// splits' Definition (their header modifiers), the resolvers'
// RequestTimeout and the targets' Partition and Peer.
type Chain struct {
	ServiceName string
	Namespace   string
	Partition   string
	Datacenter  string
	// Protocol is the chain's protocol ("http", "http2", "grpc", "tcp");
	// Consul puts routers and splitters only in HTTP-like chains.
	Protocol string
	// StartNode is the key in Nodes where routing starts.
	StartNode string
	// Nodes are keyed "<type>:<name>", e.g. "router:api.default.default".
	Nodes map[string]*Node
	// Targets are keyed by target ID, e.g. "v1.api.default.default.dc1".
	Targets map[string]*ChainTarget
}

// Node types (Node.Type).
const (
	NodeRouter   = api.DiscoveryGraphNodeTypeRouter
	NodeSplitter = api.DiscoveryGraphNodeTypeSplitter
	NodeResolver = api.DiscoveryGraphNodeTypeResolver
)

// Node is one node of the chain (api.DiscoveryGraphNode).
type Node struct {
	Type string
	Name string
	// Routes (routers): the service-router's routes, in order, ending with
	// the catch-all Consul appends.
	Routes []*ChainRoute
	// Splits (splitters), flattened by Consul: each leads to a resolver.
	Splits []*ChainSplit
	// Resolver (resolvers).
	Resolver *ChainResolver
	// LoadBalancer (resolvers and splitters): the service-resolver's
	// LoadBalancer block.
	LoadBalancer *api.LoadBalancer
}

// ChainRoute is a router node's route (api.DiscoveryRoute).
type ChainRoute struct {
	Definition *api.ServiceRoute
	NextNode   string
}

// ChainSplit is a splitter node's split. Definition carries the split's
// header modifiers, which api.DiscoverySplit drops.
type ChainSplit struct {
	Definition *api.ServiceSplit
	// Weight is the share in percent, with at most two decimals.
	Weight   float32
	NextNode string
}

// ChainResolver is a resolver node's resolver (api.DiscoveryResolver, plus
// the RequestTimeout Consul 1.15 sends, in nanoseconds).
type ChainResolver struct {
	Default        bool
	ConnectTimeout time.Duration
	// RequestTimeout applies when the resolver is the chain's start node
	// (Consul puts it on the route only then).
	RequestTimeout time.Duration
	Target         string
	Failover       *api.DiscoveryFailover
}

// UnmarshalJSON reads durations as Consul writes them: ConnectTimeout as a
// duration string ("3s"), RequestTimeout as nanoseconds; either form is
// accepted for both.
func (r *ChainResolver) UnmarshalJSON(b []byte) error {
	var aux struct {
		Default                        bool
		ConnectTimeout, RequestTimeout json.RawMessage
		Target                         string
		Failover                       *api.DiscoveryFailover
	}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	ct, err := duration(aux.ConnectTimeout)
	if err != nil {
		return fmt.Errorf("ConnectTimeout: %w", err)
	}
	rt, err := duration(aux.RequestTimeout)
	if err != nil {
		return fmt.Errorf("RequestTimeout: %w", err)
	}
	*r = ChainResolver{Default: aux.Default, ConnectTimeout: ct, RequestTimeout: rt, Target: aux.Target, Failover: aux.Failover}
	return nil
}

// duration decodes a JSON duration: a string for time.ParseDuration or a
// number of nanoseconds; absent or null is 0.
func duration(raw json.RawMessage) (time.Duration, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, nil
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, err
		}
		if s == "" {
			return 0, nil
		}
		return time.ParseDuration(s)
	}
	n, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s is not a duration", raw)
	}
	return time.Duration(n), nil
}

// ChainTarget is a chain target: api.DiscoveryTarget plus the Partition and
// Peer fields it drops.
type ChainTarget struct {
	api.DiscoveryTarget
	Partition string
	Peer      string
}

// UnmarshalJSON decodes the api.DiscoveryTarget fields with that type's
// decoder (which parses ConnectTimeout "5s"), then Partition and Peer.
func (t *ChainTarget) UnmarshalJSON(b []byte) error {
	if err := t.DiscoveryTarget.UnmarshalJSON(b); err != nil {
		return err
	}
	var extra struct{ Partition, Peer string }
	if err := json.Unmarshal(b, &extra); err != nil {
		return err
	}
	t.Partition, t.Peer = extra.Partition, extra.Peer
	return nil
}

// MarshalJSON writes what UnmarshalJSON reads (the embedded type's
// MarshalJSON alone would drop Partition and Peer).
func (t *ChainTarget) MarshalJSON() ([]byte, error) {
	b, err := t.DiscoveryTarget.MarshalJSON()
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	m["Partition"], m["Peer"] = t.Partition, t.Peer
	return json.Marshal(m)
}

package discovery

import (
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Endpoint is one instance of an upstream service as the data plane dials it.
type Endpoint struct {
	// Address is the host:port of the instance's sidecar public listener.
	Address string `json:"address"`
	// Weight is the relative share of new connections (Consul's
	// Weights.Passing); always at least 1.
	Weight int `json:"weight"`
	// Identity is the SPIFFE ID the endpoint must present in its TLS
	// handshake. A connection to an endpoint that presents any other
	// identity is refused.
	Identity spiffeid.ID `json:"identity"`
	// Node and ServiceID name the instance in the registry, for logs.
	Node      string `json:"node,omitempty"`
	ServiceID string `json:"service_id,omitempty"`
}

// Snapshot is the set of healthy endpoints of one upstream at one moment.
// It is immutable once published.
type Snapshot struct {
	// Service is the logical upstream name, Datacenter where it was looked up.
	Service    string `json:"service"`
	Datacenter string `json:"datacenter,omitempty"`
	// Endpoints lists the healthy instances in a stable order (by address).
	Endpoints []Endpoint `json:"endpoints"`
	// Index is the registry's index for this answer (Consul's X-Consul-Index).
	Index uint64 `json:"index"`
	// Received is when the registry gave this answer.
	Received time.Time `json:"received"`
}

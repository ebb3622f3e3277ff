package consul

import (
	"cmp"
	"fmt"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/outrider-mesh/outrider/discovery"
	"github.com/outrider-mesh/outrider/mtls"
)

// ConnectEndpoints returns a Fetch of the healthy Connect-capable instances
// of service in datacenter dc ("" for the agent's own), as Consul's
// /v1/health/connect/<service>?passing lists them. Each endpoint carries the
// SPIFFE ID its sidecar must present: the destination service's identity in
// trust domain td.
func ConnectEndpoints(client *api.Client, service, dc string, td spiffeid.TrustDomain) Fetch[*discovery.Snapshot] {
	return func(opts *api.QueryOptions) (*discovery.Snapshot, *api.QueryMeta, error) {
		opts.Datacenter = dc
		entries, meta, err := client.Health().Connect(service, "", true, opts)
		if err != nil {
			return nil, nil, fmt.Errorf("consul: health/connect/%s: %w", service, err)
		}
		snap, err := snapshotOf(service, dc, td, entries)
		if err != nil {
			return nil, nil, err
		}
		snap.Index = meta.LastIndex
		return snap, meta, nil
	}
}

// snapshotOf turns health entries into an immutable snapshot. Entries whose
// identity cannot be formed are skipped with an error only if none remain;
// an empty list is a valid answer (no healthy instance).
func snapshotOf(service, dc string, td spiffeid.TrustDomain, entries []*api.ServiceEntry) (*discovery.Snapshot, error) {
	snap := &discovery.Snapshot{Service: service, Datacenter: dc, Received: time.Now()}
	for _, e := range entries {
		if e == nil || e.Service == nil {
			continue
		}
		svc := e.Service
		dest := svc.Service
		if svc.Kind == api.ServiceKindConnectProxy {
			dest = svc.Proxy.DestinationServiceName
		}
		host := svc.Address
		if host == "" && e.Node != nil {
			host = e.Node.Address
		}
		if host == "" || svc.Port <= 0 {
			continue
		}
		nodeDC := dc
		node := ""
		if e.Node != nil {
			node = e.Node.Node
			if e.Node.Datacenter != "" {
				nodeDC = e.Node.Datacenter
			}
		}
		id, err := mtls.ServiceID{
			TrustDomain: td,
			Partition:   svc.Partition,
			Namespace:   cmp.Or(svc.Namespace, "default"),
			Datacenter:  nodeDC,
			Service:     dest,
		}.ID()
		if err != nil {
			return nil, fmt.Errorf("consul: health/connect/%s: instance %s: %w", service, svc.ID, err)
		}
		snap.Endpoints = append(snap.Endpoints, discovery.Endpoint{
			Address:   net.JoinHostPort(host, strconv.Itoa(svc.Port)),
			Weight:    max(svc.Weights.Passing, 1),
			Identity:  id,
			Node:      node,
			ServiceID: svc.ID,
		})
	}
	slices.SortFunc(snap.Endpoints, func(a, b discovery.Endpoint) int { return cmp.Compare(a.Address, b.Address) })
	return snap, nil
}

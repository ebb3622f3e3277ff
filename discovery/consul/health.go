package consul

import (
	"cmp"
	"fmt"
	"net"
	"net/netip"
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
	return ConnectEndpointsWith(client, service, dc, ConsulIdentity(td))
}

// Instance is what an IdentityFunc knows about one healthy instance.
type Instance struct {
	// Service is the destination service's name (the proxied service, for
	// a sidecar registration), Namespace and Partition its tenancy.
	Service, Namespace, Partition string
	// Datacenter and Node are where it runs.
	Datacenter, Node string
	// Meta is the registration's service metadata (the sidecar's, merged
	// over nothing: read-only).
	Meta map[string]string
}

// IdentityFunc gives the SPIFFE ID an instance must present. It runs on the
// watch goroutine for every instance of every answer.
type IdentityFunc func(Instance) (spiffeid.ID, error)

// ConsulIdentity is the IdentityFunc of Consul's Connect CA: the service
// identity spiffe://<td>/ns/<ns>/dc/<dc>/svc/<service> (with /ap/<partition>
// outside the default partition).
func ConsulIdentity(td spiffeid.TrustDomain) IdentityFunc {
	return func(in Instance) (spiffeid.ID, error) {
		return mtls.ServiceID{TrustDomain: td, Partition: in.Partition, Namespace: in.Namespace,
			Datacenter: in.Datacenter, Service: in.Service}.ID()
	}
}

// ConnectEndpointsWith is ConnectEndpoints with the expected identity of
// each instance given by ids (for SPIFFE identities that do not come from
// Consul's CA). An instance whose identity cannot be formed fails the
// answer, naming the instance: the last good snapshot stays in use.
func ConnectEndpointsWith(client *api.Client, service, dc string, ids IdentityFunc) Fetch[*discovery.Snapshot] {
	return func(opts *api.QueryOptions) (*discovery.Snapshot, *api.QueryMeta, error) {
		opts.Datacenter = dc
		entries, meta, err := client.Health().Connect(service, "", true, opts)
		if err != nil {
			return nil, nil, fmt.Errorf("consul: health/connect/%s: %w", service, err)
		}
		snap, err := snapshotOf(service, dc, ids, entries)
		if err != nil {
			return nil, nil, err
		}
		snap.Index = meta.LastIndex
		return snap, meta, nil
	}
}

// maxWeight caps an instance's weight: Consul sets no upper bound on
// Weights.Passing, and the balancer sums weights; 65536 keeps the sum of
// thousands of instances far from overflowing while leaving every weight
// Consul users set in practice (Envoy accepts at most 128) unchanged.
const maxWeight = 1 << 16

// snapshotOf turns health entries into an immutable snapshot. An empty
// list is a valid answer (no healthy instance: the service scaled to zero)
// and gives a snapshot with no endpoints. An entry Consul never sends (null,
// without its Node or Service, a proxy without its destination, a port
// outside 0-65535, no address at all, an address that is neither an IP
// address nor a host name) is a malformed answer, and so is an
// instance whose identity cannot be formed: both fail the whole answer,
// naming the instance, and the last good snapshot stays in use. An instance
// with port 0 (not reachable over TCP, e.g. registered with a unix socket)
// is skipped.
func snapshotOf(service, dc string, ids IdentityFunc, entries []*api.ServiceEntry) (*discovery.Snapshot, error) {
	snap := &discovery.Snapshot{Service: service, Datacenter: dc, Received: time.Now()}
	for i, e := range entries {
		if e == nil || e.Service == nil || e.Node == nil {
			return nil, fmt.Errorf("consul: health/connect/%s: malformed answer: entry %d has no Node or Service", service, i)
		}
		svc := e.Service
		dest := svc.Service
		if svc.Kind == api.ServiceKindConnectProxy {
			if svc.Proxy == nil {
				return nil, fmt.Errorf("consul: health/connect/%s: malformed answer: proxy %q has no Proxy block", service, svc.ID)
			}
			dest = svc.Proxy.DestinationServiceName
		}
		if dest == "" {
			return nil, fmt.Errorf("consul: health/connect/%s: malformed answer: instance %q names no service", service, svc.ID)
		}
		if svc.Port < 0 || svc.Port > 65535 {
			return nil, fmt.Errorf("consul: health/connect/%s: malformed answer: instance %q has port %d", service, svc.ID, svc.Port)
		}
		host := cmp.Or(svc.Address, e.Node.Address)
		if host == "" {
			return nil, fmt.Errorf("consul: health/connect/%s: malformed answer: instance %q has no address", service, svc.ID)
		}
		if !validHost(host) {
			return nil, fmt.Errorf("consul: health/connect/%s: malformed answer: instance %q has address %q, neither an IP address nor a host name",
				service, svc.ID, host)
		}
		if svc.Port == 0 {
			continue
		}
		nodeDC := cmp.Or(e.Node.Datacenter, dc)
		id, err := ids(Instance{Service: dest, Namespace: cmp.Or(svc.Namespace, "default"), Partition: svc.Partition,
			Datacenter: nodeDC, Node: e.Node.Node, Meta: svc.Meta})
		if err != nil {
			return nil, fmt.Errorf("consul: health/connect/%s: instance %s: %w", service, svc.ID, err)
		}
		snap.Endpoints = append(snap.Endpoints, discovery.Endpoint{
			Address:   net.JoinHostPort(host, strconv.Itoa(svc.Port)),
			Weight:    min(max(svc.Weights.Passing, 1), maxWeight),
			Identity:  id,
			Node:      e.Node.Node,
			ServiceID: svc.ID,
		})
	}
	slices.SortFunc(snap.Endpoints, func(a, b discovery.Endpoint) int { return cmp.Compare(a.Address, b.Address) })
	return snap, nil
}

// validHost reports whether an instance's address can be dialed as the
// host of host:port: an IP address (IPv6 with a zone too), or a host name
// of at most 253 bytes of letters, digits, '-', '.' and '_'. Anything else
// ("[", "10.0.0.1:8080", a name with a space) would make an endpoint whose
// address no dial can use, or one that names another port.
func validHost(h string) bool {
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	if len(h) > 253 {
		return false
	}
	for _, c := range []byte(h) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_') {
			return false
		}
	}
	return true
}

// Target selects the instances of one discovery-chain target: a service in
// a datacenter, narrowed by a service-resolver subset.
type Target struct {
	// Service is the destination service; Datacenter is where it runs ("" for
	// the agent's own).
	Service, Datacenter string
	// Filter is the subset's filter expression over the health entries
	// (Service.Meta.version == v2, "canary" in Service.Tags), evaluated by
	// Consul. A Connect query lists sidecar registrations, which inherit the
	// tags and metadata of the service they proxy.
	Filter string
	// OnlyPassing keeps only instances whose checks all pass. Otherwise an
	// instance is used unless a check is critical (warning counts as
	// healthy), as Consul's Envoy integration does.
	OnlyPassing bool
}

// TargetEndpoints returns a Fetch of the Connect-capable instances of t, as
// ConnectEndpointsWith does for a whole service, with t's subset filter
// and health rule. A malformed filter is an error of every answer (Consul
// answers 400), reported by the watch and retried.
func TargetEndpoints(client *api.Client, t Target, ids IdentityFunc) Fetch[*discovery.Snapshot] {
	return func(opts *api.QueryOptions) (*discovery.Snapshot, *api.QueryMeta, error) {
		opts.Datacenter = t.Datacenter
		opts.Filter = t.Filter
		entries, meta, err := client.Health().Connect(t.Service, "", t.OnlyPassing, opts)
		if err != nil {
			return nil, nil, fmt.Errorf("consul: health/connect/%s: %w", t.Service, err)
		}
		if !t.OnlyPassing {
			entries = slices.DeleteFunc(entries, func(e *api.ServiceEntry) bool { return e != nil && anyCritical(e.Checks) })
		}
		snap, err := snapshotOf(t.Service, t.Datacenter, ids, entries)
		if err != nil {
			return nil, nil, err
		}
		snap.Index = meta.LastIndex
		return snap, meta, nil
	}
}

// anyCritical reports whether one of checks is critical. A service or node
// in maintenance mode has a critical maintenance check, and is not used
// (consul/api's AggregatedStatus says "maintenance" for it, not
// "critical").
func anyCritical(checks api.HealthChecks) bool {
	for _, c := range checks {
		if c != nil && c.Status == api.HealthCritical {
			return true
		}
	}
	return false
}

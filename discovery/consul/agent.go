package consul

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/hashicorp/consul/api"
)

// ErrNoSidecar means the agent has no connect-proxy registration for the
// service: a configuration error, not a transient one.
var ErrNoSidecar = errors.New("no sidecar registration")

// ProxyRegistration returns a Fetch of the agent's local registration of
// the proxy service proxyID (a hash-based blocking query; use HashBased).
func ProxyRegistration(client *api.Client, proxyID string) Fetch[*api.AgentService] {
	return func(opts *api.QueryOptions) (*api.AgentService, *api.QueryMeta, error) {
		svc, meta, err := client.Agent().Service(proxyID, opts)
		if err != nil {
			if isNotFound(err) {
				return nil, nil, fmt.Errorf("consul: proxy registration %q not found on the agent: %w", proxyID, ErrNoSidecar)
			}
			return nil, nil, fmt.Errorf("consul: agent/service/%s: %w", proxyID, err)
		}
		if svc == nil {
			// A 200 whose body is "null": not an answer the agent gives.
			return nil, nil, fmt.Errorf("consul: agent/service/%s: malformed answer: no service", proxyID)
		}
		if svc.Kind != api.ServiceKindConnectProxy || svc.Proxy == nil {
			return nil, nil, fmt.Errorf("consul: service %q is of kind %q, not a connect-proxy: %w", proxyID, svc.Kind, ErrNoSidecar)
		}
		return svc, meta, nil
	}
}

// SidecarFor finds the ID of the connect-proxy registered on the local agent
// for the service instance serviceID, the way `consul connect proxy
// -sidecar-for` does. It returns an error wrapping ErrNoSidecar when there is
// none or more than one, and the transport error when Consul cannot be
// reached (the caller retries those).
func SidecarFor(ctx context.Context, client *api.Client, serviceID string) (string, error) {
	q := (&api.QueryOptions{}).WithContext(ctx)
	filter := fmt.Sprintf("Kind == %q and Proxy.DestinationServiceID == %q", api.ServiceKindConnectProxy, serviceID)
	svcs, err := client.Agent().ServicesWithFilterOpts(filter, q)
	if err != nil {
		return "", fmt.Errorf("consul: listing agent services: %w", err)
	}
	var ids []string
	for id := range svcs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	switch len(ids) {
	case 0:
		return "", fmt.Errorf("consul: service %q has no sidecar proxy registered on this agent (register one with \"connect\": {\"sidecar_service\": {}}): %w", serviceID, ErrNoSidecar)
	case 1:
		return ids[0], nil
	}
	return "", fmt.Errorf("consul: service %q has %d sidecar registrations (%s); pick one with -proxy-id: %w",
		serviceID, len(ids), strings.Join(ids, ", "), ErrNoSidecar)
}

func isNotFound(err error) bool {
	var se api.StatusError
	return errors.As(err, &se) && se.Code == 404
}

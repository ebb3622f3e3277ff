package consul

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/hashicorp/consul/api"
)

// ErrRejected means Consul refused a registration as invalid (HTTP 4xx):
// retrying the same request cannot succeed.
var ErrRejected = errors.New("rejected by Consul")

// rejected wraps err with ErrRejected when Consul answered 4xx (429, too
// many requests, is transient and stays retryable).
func rejected(err error) error {
	var se api.StatusError
	if errors.As(err, &se) && se.Code >= 400 && se.Code < 500 && se.Code != 429 {
		return fmt.Errorf("%w: %w", ErrRejected, err)
	}
	return err
}

// Registration describes a sidecar that Outrider registers itself, for
// hosts where nothing else does (Compose, VMs). The result is the same
// connect-proxy registration a `connect { sidecar_service {} }` stanza
// creates, so every other Consul tool sees an ordinary sidecar.
type Registration struct {
	// ServiceID is the application instance the sidecar serves.
	ServiceID string
	// Service, when set, is registered too (and deregistered on exit).
	// Its ID must equal ServiceID. When nil, ServiceID must already be
	// registered on the agent.
	Service *api.AgentServiceRegistration
	// PublicAddress and PublicPort are where other sidecars reach this one.
	// An empty address lets Consul use the node's address.
	PublicAddress string
	PublicPort    int
	// Upstreams become the proxy's upstream listeners.
	Upstreams []api.Upstream
}

// ParseUpstream reads the -upstream flag syntax: name:port, or
// name@datacenter:port, with an optional bind address prefix:
// 127.0.0.2:name:port.
func ParseUpstream(s string) (api.Upstream, error) {
	parts := strings.Split(s, ":")
	var u api.Upstream
	switch len(parts) {
	case 2:
	case 3:
		if net.ParseIP(parts[0]) == nil {
			return u, fmt.Errorf("upstream %q: %q is not an IP address (want [bind-ip:]name[@dc]:port)", s, parts[0])
		}
		u.LocalBindAddress = parts[0]
		parts = parts[1:]
	default:
		return u, fmt.Errorf("upstream %q: want [bind-ip:]name[@dc]:port", s)
	}
	name, dc, _ := strings.Cut(parts[0], "@")
	port, err := strconv.Atoi(parts[1])
	if err != nil || port <= 0 || port > 65535 {
		return u, fmt.Errorf("upstream %q: %q is not a port", s, parts[1])
	}
	if name == "" {
		return u, fmt.Errorf("upstream %q: empty service name", s)
	}
	u.DestinationName, u.Datacenter, u.LocalBindPort = name, dc, port
	return u, nil
}

// Register registers the sidecar (and the application, if r.Service is
// set) and returns the proxy's ID and a function that deregisters what was
// registered, returning once the agent answered or its ctx is done. The
// proxy gets the two checks Consul gives a sidecar by default: a TCP check
// on its public port and an alias of the application's health.
func Register(ctx context.Context, client *api.Client, r Registration) (proxyID string, deregister func(context.Context) error, err error) {
	if r.ServiceID == "" {
		return "", nil, errors.New("consul: register: the application's service ID is empty")
	}
	if r.PublicPort <= 0 || r.PublicPort > 65535 {
		return "", nil, fmt.Errorf("consul: register: public port %d is not a valid port", r.PublicPort)
	}
	q := (&api.QueryOptions{}).WithContext(ctx)
	app := r.Service
	if app != nil {
		if app.ID == "" {
			app.ID = r.ServiceID
		}
		if app.ID != r.ServiceID || app.Name == "" || app.Port <= 0 {
			return "", nil, fmt.Errorf("consul: register: the application needs ID %q, a name and a port", r.ServiceID)
		}
		if err := client.Agent().ServiceRegisterOpts(app, api.ServiceRegisterOpts{}.WithContext(ctx)); err != nil {
			return "", nil, fmt.Errorf("consul: registering service %q: %w", app.ID, rejected(err))
		}
	} else {
		svc, _, err := client.Agent().Service(r.ServiceID, q)
		if err != nil {
			if isNotFound(err) {
				return "", nil, fmt.Errorf("consul: register: service %q is not registered on this agent; give its name and port to register it: %w", r.ServiceID, ErrNoSidecar)
			}
			return "", nil, fmt.Errorf("consul: looking up service %q: %w", r.ServiceID, err)
		}
		app = &api.AgentServiceRegistration{ID: svc.ID, Name: svc.Service, Port: svc.Port, Address: svc.Address}
	}
	localAddr := app.Address
	if localAddr == "" || net.ParseIP(localAddr) == nil {
		localAddr = "127.0.0.1"
	}
	proxyID = r.ServiceID + "-sidecar-proxy"
	proxy := &api.AgentServiceRegistration{
		Kind:    api.ServiceKindConnectProxy,
		ID:      proxyID,
		Name:    app.Name + "-sidecar-proxy",
		Address: r.PublicAddress,
		Port:    r.PublicPort,
		Proxy: &api.AgentServiceConnectProxyConfig{
			DestinationServiceName: app.Name,
			DestinationServiceID:   app.ID,
			LocalServiceAddress:    localAddr,
			LocalServicePort:       app.Port,
			Upstreams:              r.Upstreams,
		},
		Checks: api.AgentServiceChecks{
			{
				Name:     "Connect Sidecar Listening",
				TCP:      net.JoinHostPort(cmp.Or(r.PublicAddress, "127.0.0.1"), strconv.Itoa(r.PublicPort)),
				Interval: "10s",
			},
			{Name: "Connect Sidecar Aliasing " + app.ID, AliasService: app.ID},
		},
	}
	if err := client.Agent().ServiceRegisterOpts(proxy, api.ServiceRegisterOpts{}.WithContext(ctx)); err != nil {
		if r.Service != nil {
			client.Agent().ServiceDeregister(app.ID)
		}
		return "", nil, fmt.Errorf("consul: registering sidecar %q: %w", proxyID, rejected(err))
	}
	registeredApp := r.Service != nil
	deregister = func(ctx context.Context) error {
		var errs []error
		q := (&api.QueryOptions{}).WithContext(ctx)
		if err := client.Agent().ServiceDeregisterOpts(proxyID, q); err != nil {
			errs = append(errs, fmt.Errorf("consul: deregistering %q: %w", proxyID, err))
		}
		if registeredApp {
			if err := client.Agent().ServiceDeregisterOpts(app.ID, q); err != nil {
				errs = append(errs, fmt.Errorf("consul: deregistering %q: %w", app.ID, err))
			}
		}
		return errors.Join(errs...)
	}
	return proxyID, deregister, nil
}

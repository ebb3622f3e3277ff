package sidecar

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/outrider-mesh/outrider/config"
	"github.com/outrider-mesh/outrider/discovery"
	"github.com/outrider-mesh/outrider/discovery/consul"
	"github.com/outrider-mesh/outrider/gateway"
	"github.com/outrider-mesh/outrider/sidecar/balance"
	"github.com/outrider-mesh/outrider/sidecar/health"
	"github.com/outrider-mesh/outrider/sidecar/http1"
)

// Config is the data plane's effective configuration for one proxied
// service instance. In the Consul-native mode it is derived from the
// proxy's registration (FromRegistration) and replaced whenever that
// registration changes; it is a value and is never mutated once built.
type Config struct {
	// ProxyID is the proxy's service ID in Consul.
	ProxyID string `json:"proxy_id"`
	// Service is the proxied service's name: the identity the sidecar
	// presents and the destination its intentions are looked up for.
	Service string `json:"service"`
	// ServiceID is the proxied service instance's ID.
	ServiceID string `json:"service_id"`
	// Namespace and Partition of the proxied service ("default" in CE).
	Namespace string `json:"namespace"`
	Partition string `json:"partition,omitempty"`

	// Public is the mTLS listener other sidecars connect to.
	Public PublicListener `json:"public_listener"`
	// Upstreams are the local listeners the application dials.
	Upstreams []Upstream `json:"upstreams"`
	// Ingress are public HTTP(S) listeners for clients outside the mesh,
	// routed to Upstreams (Proxy.Config ingress; the static file's
	// ingress).
	Ingress gateway.Ingresses `json:"ingress,omitempty"`
	// Tracing is read from Proxy.Config (usually set once for the whole
	// mesh in proxy-defaults); the process's OTEL_* variables and flags
	// win over it. Read when the sidecar starts.
	Tracing TracingConfig `json:"tracing"`
}

// TracingConfig is the tracing part of Proxy.Config.
type TracingConfig struct {
	// Endpoint is Proxy.Config otlp_endpoint: the OTLP collector, e.g.
	// http://jaeger:4317; setting it turns tracing on.
	Endpoint string `json:"otlp_endpoint,omitempty"`
	// Protocol is Proxy.Config otlp_protocol: grpc (default) or http/protobuf.
	Protocol string `json:"otlp_protocol,omitempty"`
	// Sampling is Proxy.Config trace_sampling: the fraction of new traces
	// sampled, parent-based (nil: the default, all).
	Sampling *float64 `json:"trace_sampling,omitempty"`
}

// PublicListener is the inbound side: mTLS in, plaintext to the application.
type PublicListener struct {
	// BindAddress is host:port of the listener: the registration's Address
	// (default 0.0.0.0) and Port, unless Proxy.Config bind_address/bind_port
	// override them, as with Consul's built-in proxy and Envoy.
	BindAddress string `json:"bind_address"`
	// LocalService is host:port of the application: Proxy.LocalServiceAddress
	// (default 127.0.0.1) and Proxy.LocalServicePort.
	LocalService string `json:"local_service_address"`
	// LocalConnectTimeout bounds the dial to the application
	// (Proxy.Config local_connect_timeout_ms, default 1s).
	LocalConnectTimeout time.Duration `json:"local_connect_timeout"`
	// HandshakeTimeout bounds the client's TLS handshake
	// (Proxy.Config handshake_timeout_ms, default 10s).
	HandshakeTimeout time.Duration `json:"handshake_timeout"`
	// Protocol is the local service's protocol: Proxy.Config.protocol,
	// which the Consul agent fills from the service's service-defaults
	// entry, else proxy-defaults, unless the registration sets it (the
	// precedence Consul applies for Envoy). Default tcp.
	Protocol Protocol `json:"protocol"`
	// MaxHeaderBytes bounds an HTTP request head (Proxy.Config
	// max_header_bytes, default 64 KiB); larger heads get 431.
	MaxHeaderBytes int `json:"max_header_bytes"`
	// MaxHeaders bounds the header fields of a request, and of the
	// application's response (Proxy.Config max_headers, default 100 as
	// Envoy's max_headers_count); more get 431 (502 for a response).
	MaxHeaders int `json:"max_headers"`
	// LocalRequestTimeout bounds how long an HTTP request waits for the
	// application's response head (Proxy.Config local_request_timeout_ms,
	// default 15s as Envoy's route timeout); then the caller gets 504.
	LocalRequestTimeout time.Duration `json:"local_request_timeout"`
	// HTTPLimits bound the listener's HTTP connections and requests.
	HTTPLimits
	// Gateway is the API-gateway layer in front of the application
	// (Proxy.Config gateway; the static file's public.gateway). A change
	// applies live; the zero value is off.
	Gateway gateway.Config `json:"gateway,omitzero"`
}

// HTTPLimits are the edge bounds of an HTTP listener (the public one and
// every upstream one) beyond the head limits. In the Consul mode they are
// proxy-wide Proxy.Config keys, as max_header_bytes is; in the static file
// the public section's keys, which the upstream listeners share. A zero
// field means its default (WithDefaults fills them in).
type HTTPLimits struct {
	// IdleTimeout closes a keep-alive client connection that has not
	// finished its next request head this long after the previous
	// exchange (or its first head after the TLS handshake): the idle wait
	// and the head's arrival (slowloris) together, on the HTTP/1.1 loop;
	// the idle wait between requests on the net/http path (HTTP/2
	// connections, whose heads are bounded by the 30 s head timeout).
	// Proxy.Config idle_timeout_ms, default 90s (above the 60 s after which
	// a peer sidecar drops a pooled connection, so the client side closes
	// first; a shorter value makes peers meet closed connections, which
	// they retry only for idempotent requests). Applies to new connections
	// on the HTTP/1.1 loop; the net/http path reads it when the listener
	// opens.
	IdleTimeout time.Duration `json:"idle_timeout"`
	// BodyIdleTimeout bounds each wait for more of a request body (slow
	// POST, as nginx's client_body_timeout): a body that makes no progress
	// this long is cut, and the request answered 408. Not on gRPC
	// request streams, whose deadline bounds them. Proxy.Config
	// body_idle_timeout_ms, default 60s; it cannot be turned off.
	BodyIdleTimeout time.Duration `json:"body_idle_timeout"`
	// MaxInterim bounds the interim (1xx) responses relayed before a
	// final one; one more makes the response invalid, and the caller gets
	// 502 bad_upstream_response. Proxy.Config max_interim_responses,
	// default 10, 1 to 1000.
	MaxInterim int `json:"max_interim_responses"`
	// MaxConcurrentStreams bounds the HTTP/2 streams a client may have
	// open on one connection (SETTINGS_MAX_CONCURRENT_STREAMS; the server
	// resets the extra one). Proxy.Config max_concurrent_streams, default
	// 1000 (mesh peers multiplex a whole service's traffic on few
	// connections), 1 to 100000. Read when the listener opens.
	MaxConcurrentStreams int `json:"max_concurrent_streams"`
	// InitialStreamWindowSize and InitialConnectionWindowSize are the
	// HTTP/2 receive windows (request bodies) of the listener's
	// connections, per stream and per connection: larger ones let a
	// high-latency peer stream uploads faster, at the cost of that much
	// buffered memory per stream. Proxy.Config initial_stream_window_size
	// and initial_connection_window_size, default 1 MiB each (Go's
	// server), 65535 to 2147483647. Read when the listener opens. The
	// sidecar's own client connections keep Go's transport windows.
	InitialStreamWindowSize     int `json:"initial_stream_window_size"`
	InitialConnectionWindowSize int `json:"initial_connection_window_size"`
}

// Defaults and bounds of HTTPLimits.
const (
	DefaultIdleTimeout          = clientIdleTimeout
	DefaultBodyIdleTimeout      = bodyIdleTimeout
	DefaultMaxInterim           = maxInterim
	DefaultMaxConcurrentStreams = meshMaxStreams
	DefaultStreamWindowSize     = 1 << 20
	DefaultConnectionWindowSize = 1 << 20
	MaxInterimLimit             = 1000
	MaxConcurrentStreamsLimit   = 100000
	// MinWindowSize and MaxWindowSize bound an HTTP/2 window (RFC 9113
	// 6.9.2: the initial 65535, and 2^31-1).
	MinWindowSize = 65535
	MaxWindowSize = 1<<31 - 1
)

// withDefaults returns l with each zero field taken from def.
func (l HTTPLimits) withDefaults(def HTTPLimits) HTTPLimits {
	l.IdleTimeout = cmp.Or(l.IdleTimeout, def.IdleTimeout)
	l.BodyIdleTimeout = cmp.Or(l.BodyIdleTimeout, def.BodyIdleTimeout)
	l.MaxInterim = cmp.Or(l.MaxInterim, def.MaxInterim)
	l.MaxConcurrentStreams = cmp.Or(l.MaxConcurrentStreams, def.MaxConcurrentStreams)
	l.InitialStreamWindowSize = cmp.Or(l.InitialStreamWindowSize, def.InitialStreamWindowSize)
	l.InitialConnectionWindowSize = cmp.Or(l.InitialConnectionWindowSize, def.InitialConnectionWindowSize)
	return l
}

// defaultHTTPLimits are the documented defaults.
var defaultHTTPLimits = HTTPLimits{IdleTimeout: DefaultIdleTimeout, BodyIdleTimeout: DefaultBodyIdleTimeout,
	MaxInterim: DefaultMaxInterim, MaxConcurrentStreams: DefaultMaxConcurrentStreams,
	InitialStreamWindowSize: DefaultStreamWindowSize, InitialConnectionWindowSize: DefaultConnectionWindowSize}

// httpLimitsValue reads the HTTPLimits keys of Proxy.Config; field names
// a key for errors.
func httpLimitsValue(m map[string]any, field func(string) string) (HTTPLimits, error) {
	var l HTTPLimits
	var err error
	if l.IdleTimeout, err = msValue(m, "idle_timeout_ms", DefaultIdleTimeout); err != nil {
		return l, fmt.Errorf("sidecar: %s: %w", field("idle_timeout_ms"), err)
	}
	if l.BodyIdleTimeout, err = msValue(m, "body_idle_timeout_ms", DefaultBodyIdleTimeout); err != nil {
		return l, fmt.Errorf("sidecar: %s: %w", field("body_idle_timeout_ms"), err)
	}
	if l.MaxInterim, err = intInRange(m, "max_interim_responses", DefaultMaxInterim, 1, MaxInterimLimit, field); err != nil {
		return l, err
	}
	if l.MaxConcurrentStreams, err = intInRange(m, "max_concurrent_streams", DefaultMaxConcurrentStreams, 1, MaxConcurrentStreamsLimit, field); err != nil {
		return l, err
	}
	if l.InitialStreamWindowSize, err = intInRange(m, "initial_stream_window_size", DefaultStreamWindowSize, MinWindowSize, MaxWindowSize, field); err != nil {
		return l, err
	}
	if l.InitialConnectionWindowSize, err = intInRange(m, "initial_connection_window_size", DefaultConnectionWindowSize, MinWindowSize, MaxWindowSize, field); err != nil {
		return l, err
	}
	return l, nil
}

// intInRange reads an integer key of an opaque Consul config map, def
// when it is absent; a value that is not an integer between lo and hi is
// an error naming field(key).
func intInRange(m map[string]any, key string, def, lo, hi int, field func(string) string) (int, error) {
	v, ok := m[key]
	if !ok || v == nil {
		return def, nil
	}
	if n, err := intValue(v); err == nil && n >= lo && n <= hi {
		return n, nil
	}
	return 0, fmt.Errorf("sidecar: %s: want an integer between %d and %d, got %v", field(key), lo, hi, v)
}

// Protocol is an L4 or L7 protocol as Consul names it in service-defaults.
type Protocol string

// The protocols Consul's config entries name.
const (
	TCP   Protocol = "tcp"
	HTTP  Protocol = "http"
	HTTP2 Protocol = "http2"
	GRPC  Protocol = "grpc"
)

// L7 reports whether the protocol is proxied per request.
func (p Protocol) L7() bool { return p == HTTP || p == HTTP2 || p == GRPC }

// protocolValue reads a "protocol" key from an opaque Consul config map.
func protocolValue(m map[string]any) (Protocol, error) {
	v, ok := m["protocol"]
	if !ok || v == nil || v == "" {
		return TCP, nil
	}
	s, _ := v.(string)
	switch p := Protocol(strings.ToLower(s)); p {
	case TCP, HTTP, HTTP2, GRPC:
		return p, nil
	}
	return "", fmt.Errorf("want one of tcp, http, http2, grpc, got %v", v)
}

// Upstream is one outbound listener: plaintext in from the application,
// mTLS out to a healthy instance of the destination.
type Upstream struct {
	// DestinationName is the upstream service's name.
	DestinationName string `json:"destination_name"`
	// Datacenter is where to discover it ("" for the local datacenter).
	Datacenter string `json:"datacenter,omitempty"`
	// Namespace of the destination ("default" in CE).
	Namespace string `json:"namespace"`
	// BindAddress is LocalBindAddress (default 127.0.0.1):LocalBindPort.
	BindAddress string `json:"bind_address"`
	// ConnectTimeout bounds the connect plus handshake to an endpoint
	// (Config connect_timeout_ms on the upstream, else on the proxy,
	// default 5s as Consul's Envoy clusters use).
	ConnectTimeout time.Duration `json:"connect_timeout"`
	// Protocol is the destination's protocol: the upstream's
	// Config.protocol, which the Consul agent fills from the destination's
	// service-defaults, else proxy-defaults. Default tcp. A change applies
	// to new connections without rebinding the listener.
	Protocol Protocol `json:"protocol"`
	// MaxHeaderBytes bounds HTTP heads on this listener (the proxy's
	// max_header_bytes).
	MaxHeaderBytes int `json:"max_header_bytes"`
	// MaxHeaders bounds header fields on this listener (the proxy's
	// max_headers).
	MaxHeaders int `json:"max_headers"`
	// HTTPLimits bound this listener's HTTP connections and requests (the
	// proxy's keys, shared with the public listener). MaxInterim also
	// bounds the ingress requests routed to this upstream.
	HTTPLimits
	// Limits is the upstream's circuit breaking (Config.limits, from the
	// source's service-defaults UpstreamConfig). A change applies live.
	Limits Limits `json:"limits"`
	// Outlier is passive outlier detection (Config.passive_health_check,
	// from the same UpstreamConfig); the zero value is off. Live.
	Outlier balance.OutlierConfig `json:"passive_health_check"`
	// RetryBudget bounds the retries of the routes' retry policies
	// (Config.retry_budget; default 20% of requests in flight, at least
	// 3). Live.
	RetryBudget RetryBudget `json:"retry_budget"`
	// HealthCheck is the active health check of each endpoint
	// (Config.health_check on the upstream); the zero value is off. An
	// endpoint is used only when Consul and the check both pass it. A
	// change restarts the checks.
	HealthCheck health.Config `json:"health_check,omitzero"`

	// Endpoints, when not empty, is a static endpoint list (static mode):
	// no discovery runs for this upstream.
	Endpoints []discovery.Endpoint `json:"endpoints,omitempty"`
	// Identities gives the SPIFFE ID each Consul-discovered instance must
	// present (mixed mode: IDs from SPIRE); nil means Consul's service
	// identity in the sidecar's trust domain.
	Identities consul.IdentityFunc `json:"-"`
	// LoadBalancer, when set, is the balancing configuration (static mode);
	// nil means the destination's service-resolver, watched in Consul.
	LoadBalancer *balance.Config `json:"load_balancer,omitempty"`
}

// Key identifies an upstream listener by the fields that need a new
// listener or discovery watch when they change: the listener is replaced
// (the old one closes first, so the same port can be bound again; its open
// connections continue). Other fields apply to new connections in place.
func (u Upstream) Key() string {
	mode := ""
	if len(u.Endpoints) > 0 {
		mode = "static:"
	}
	return u.BindAddress + "->" + mode + u.Datacenter + "/" + u.Namespace + "/" + u.DestinationName
}

// FromRegistration derives the Config from a connect-proxy registration
// the way Consul's built-in proxy does (connect/proxy/config.go in Consul
// v1.15), with timeouts parsed from JSON numbers or strings. Errors name the
// offending field.
func FromRegistration(svc *api.AgentService) (Config, error) {
	if svc == nil || svc.Proxy == nil || svc.Kind != api.ServiceKindConnectProxy {
		return Config{}, fmt.Errorf("sidecar: registration is not a connect-proxy")
	}
	p := svc.Proxy
	if p.DestinationServiceName == "" {
		return Config{}, fmt.Errorf("sidecar: registration %s: Proxy.DestinationServiceName is empty", svc.ID)
	}
	c := Config{
		ProxyID:   svc.ID,
		Service:   p.DestinationServiceName,
		ServiceID: p.DestinationServiceID,
		Namespace: cmp.Or(svc.Namespace, "default"),
		Partition: svc.Partition,
	}
	field := func(name string) string { return fmt.Sprintf("registration %s: Proxy.Config.%s", svc.ID, name) }

	host := cmp.Or(svc.Address, "0.0.0.0")
	port := svc.Port
	if v, ok := p.Config["bind_address"]; ok {
		s, ok := v.(string)
		if !ok || s == "" {
			return Config{}, fmt.Errorf("sidecar: %s: want a non-empty string, got %v", field("bind_address"), v)
		}
		host = s
	}
	if v, ok := p.Config["bind_port"]; ok {
		n, err := intValue(v)
		if err != nil {
			return Config{}, fmt.Errorf("sidecar: %s: %w", field("bind_port"), err)
		}
		port = n
	}
	if port <= 0 || port > 65535 {
		return Config{}, fmt.Errorf("sidecar: registration %s: Port %d is not a valid port", svc.ID, port)
	}
	if p.LocalServicePort <= 0 || p.LocalServicePort > 65535 {
		if p.LocalServiceSocketPath != "" {
			return Config{}, fmt.Errorf("sidecar: registration %s: Proxy.LocalServiceSocketPath is not supported yet; use LocalServicePort", svc.ID)
		}
		return Config{}, fmt.Errorf("sidecar: registration %s: Proxy.LocalServicePort %d is not a valid port", svc.ID, p.LocalServicePort)
	}
	localTimeout, err := msValue(p.Config, "local_connect_timeout_ms", time.Second)
	if err != nil {
		return Config{}, fmt.Errorf("sidecar: %s: %w", field("local_connect_timeout_ms"), err)
	}
	handshake, err := msValue(p.Config, "handshake_timeout_ms", 10*time.Second)
	if err != nil {
		return Config{}, fmt.Errorf("sidecar: %s: %w", field("handshake_timeout_ms"), err)
	}
	requestTimeout, err := msValue(p.Config, "local_request_timeout_ms", 15*time.Second)
	if err != nil {
		return Config{}, fmt.Errorf("sidecar: %s: %w", field("local_request_timeout_ms"), err)
	}
	connectTimeout, err := msValue(p.Config, "connect_timeout_ms", 5*time.Second)
	if err != nil {
		return Config{}, fmt.Errorf("sidecar: %s: %w", field("connect_timeout_ms"), err)
	}
	protocol, err := protocolValue(p.Config)
	if err != nil {
		return Config{}, fmt.Errorf("sidecar: %s: %w", field("protocol"), err)
	}
	maxHeader, err := intInRange(p.Config, "max_header_bytes", http1.DefaultMaxHeaderBytes, 1024, 1<<20, field)
	if err != nil {
		return Config{}, err
	}
	maxHeaders, err := intInRange(p.Config, "max_headers", http1.DefaultMaxFields, 1, 10000, field)
	if err != nil {
		return Config{}, err
	}
	limits, err := httpLimitsValue(p.Config, field)
	if err != nil {
		return Config{}, err
	}
	if c.Tracing, err = tracingValue(p.Config, field); err != nil {
		return Config{}, err
	}
	c.Public = PublicListener{
		BindAddress:         net.JoinHostPort(host, strconv.Itoa(port)),
		LocalService:        net.JoinHostPort(cmp.Or(p.LocalServiceAddress, "127.0.0.1"), strconv.Itoa(p.LocalServicePort)),
		LocalConnectTimeout: localTimeout,
		HandshakeTimeout:    handshake,
		Protocol:            protocol,
		MaxHeaderBytes:      maxHeader,
		MaxHeaders:          maxHeaders,
		LocalRequestTimeout: requestTimeout,
		HTTPLimits:          limits,
	}
	if v, ok := p.Config["gateway"]; ok && v != nil {
		if err := config.DecodeValue(field("gateway"), v, &c.Public.Gateway); err != nil {
			return Config{}, err
		}
		if c.Public.Gateway.Enabled() && !protocol.L7() {
			return Config{}, fmt.Errorf("sidecar: %s: needs Proxy.Config.protocol http, http2 or grpc (got %s)", field("gateway"), protocol)
		}
	}
	seen := map[string]string{}
	for i, u := range p.Upstreams {
		where := fmt.Sprintf("registration %s: Proxy.Upstreams[%d]", svc.ID, i)
		if u.DestinationType != "" && u.DestinationType != api.UpstreamDestTypeService {
			return Config{}, fmt.Errorf("sidecar: %s: DestinationType %q is not supported yet (only \"service\")", where, u.DestinationType)
		}
		if u.DestinationName == "" {
			return Config{}, fmt.Errorf("sidecar: %s: DestinationName is empty", where)
		}
		if u.LocalBindSocketPath != "" {
			return Config{}, fmt.Errorf("sidecar: %s: LocalBindSocketPath is not supported yet; use LocalBindPort", where)
		}
		if u.LocalBindPort <= 0 || u.LocalBindPort > 65535 {
			return Config{}, fmt.Errorf("sidecar: %s: LocalBindPort %d is not a valid port", where, u.LocalBindPort)
		}
		ct, err := msValue(u.Config, "connect_timeout_ms", connectTimeout)
		if err != nil {
			return Config{}, fmt.Errorf("sidecar: %s: Config.connect_timeout_ms: %w", where, err)
		}
		upProto, err := protocolValue(u.Config)
		if err != nil {
			return Config{}, fmt.Errorf("sidecar: %s: Config.protocol: %w", where, err)
		}
		upLimits, err := limitsValue(u.Config)
		if err != nil {
			return Config{}, fmt.Errorf("sidecar: %s: Config.limits: %w", where, err)
		}
		var outlier balance.OutlierConfig
		if v, ok := u.Config["passive_health_check"]; ok && v != nil {
			if outlier, err = balance.FromConsulPassiveHealthCheck(v); err != nil {
				return Config{}, fmt.Errorf("sidecar: %s: Config.passive_health_check: %w", where, err)
			}
		}
		budget, err := retryBudgetValue(u.Config)
		if err != nil {
			return Config{}, fmt.Errorf("sidecar: %s: Config.retry_budget: %w", where, err)
		}
		hc, err := health.FromConsul(u.Config["health_check"])
		if err != nil {
			var ce *health.ConfigError
			if errors.As(err, &ce) {
				return Config{}, fmt.Errorf("sidecar: %s: Config.%s: %s", where, ce.Field, ce.Reason)
			}
			return Config{}, fmt.Errorf("sidecar: %s: Config.health_check: %w", where, err)
		}
		up := Upstream{
			RetryBudget:     budget,
			DestinationName: u.DestinationName,
			Datacenter:      u.Datacenter,
			Namespace:       cmp.Or(u.DestinationNamespace, "default"),
			BindAddress:     net.JoinHostPort(cmp.Or(u.LocalBindAddress, "127.0.0.1"), strconv.Itoa(u.LocalBindPort)),
			ConnectTimeout:  ct,
			Protocol:        upProto,
			MaxHeaderBytes:  maxHeader,
			MaxHeaders:      maxHeaders,
			HTTPLimits:      limits,
			Limits:          upLimits,
			Outlier:         outlier,
			HealthCheck:     hc,
		}
		if prev, dup := seen[up.BindAddress]; dup {
			return Config{}, fmt.Errorf("sidecar: %s: LocalBindPort %s is already used by upstream %q", where, up.BindAddress, prev)
		}
		seen[up.BindAddress] = up.DestinationName
		c.Upstreams = append(c.Upstreams, up)
	}
	if v, ok := p.Config["ingress"]; ok && v != nil {
		if err := config.DecodeValue(field("ingress"), v, &c.Ingress); err != nil {
			return Config{}, err
		}
		if err := c.checkIngressUpstreams(); err != nil {
			return Config{}, fmt.Errorf("sidecar: %s%w", field("ingress"), err)
		}
	}
	return c, nil
}

// tracingValue reads the tracing keys of Proxy.Config.
func tracingValue(m map[string]any, field func(string) string) (TracingConfig, error) {
	var t TracingConfig
	str := func(key string) (string, error) {
		v, ok := m[key]
		if !ok || v == nil {
			return "", nil
		}
		s, ok := v.(string)
		if !ok {
			return "", fmt.Errorf("sidecar: %s: want a string, got %v", field(key), v)
		}
		return s, nil
	}
	var err error
	if t.Endpoint, err = str("otlp_endpoint"); err != nil {
		return t, err
	}
	if t.Protocol, err = str("otlp_protocol"); err != nil {
		return t, err
	}
	if t.Protocol != "" && t.Protocol != "grpc" && t.Protocol != "http/protobuf" {
		return t, fmt.Errorf("sidecar: %s: want grpc or http/protobuf, got %q", field("otlp_protocol"), t.Protocol)
	}
	if v, ok := m["trace_sampling"]; ok && v != nil {
		var f float64
		switch x := v.(type) {
		case float64:
			f = x
		case string:
			f, err = strconv.ParseFloat(x, 64)
			if err != nil {
				f = -1
			}
		default:
			f = -1
		}
		if f < 0 || f > 1 {
			return t, fmt.Errorf("sidecar: %s: want a fraction between 0 and 1, got %v", field("trace_sampling"), v)
		}
		t.Sampling = &f
	}
	return t, nil
}

// maxMillis is the longest millisecond count a time.Duration holds.
const maxMillis = math.MaxInt64 / int(time.Millisecond)

// msValue reads a millisecond count from an opaque Consul config map. JSON
// gives numbers as float64; HCL and CLI users write strings.
func msValue(m map[string]any, key string, def time.Duration) (time.Duration, error) {
	v, ok := m[key]
	if !ok || v == nil {
		return def, nil
	}
	n, err := intValue(v)
	if err != nil {
		return 0, err
	}
	if n <= 0 {
		return 0, fmt.Errorf("want a positive number of milliseconds, got %d", n)
	}
	if n > maxMillis {
		// time.Duration(n) * time.Millisecond would wrap (to a negative
		// timeout for 1e13).
		return 0, fmt.Errorf("want at most %d milliseconds, got %d", maxMillis, n)
	}
	return time.Duration(n) * time.Millisecond, nil
}

func intValue(v any) (int, error) {
	switch x := v.(type) {
	case float64:
		if x != float64(int(x)) {
			return 0, fmt.Errorf("want an integer, got %v", x)
		}
		return int(x), nil
	case int:
		return x, nil
	case string:
		n, err := strconv.Atoi(x)
		if err != nil {
			return 0, fmt.Errorf("want an integer, got %q", x)
		}
		return n, nil
	}
	return 0, fmt.Errorf("want an integer, got %T %v", v, v)
}

// WithDefaults returns c with every zero field that has a default set to
// it, as FromRegistration would: for a Config built by hand (static mode).
func (c Config) WithDefaults() Config {
	p := &c.Public
	p.LocalConnectTimeout = cmp.Or(p.LocalConnectTimeout, time.Second)
	p.HandshakeTimeout = cmp.Or(p.HandshakeTimeout, 10*time.Second)
	p.LocalRequestTimeout = cmp.Or(p.LocalRequestTimeout, 15*time.Second)
	p.MaxHeaderBytes = cmp.Or(p.MaxHeaderBytes, http1.DefaultMaxHeaderBytes)
	p.MaxHeaders = cmp.Or(p.MaxHeaders, http1.DefaultMaxFields)
	p.HTTPLimits = p.HTTPLimits.withDefaults(defaultHTTPLimits)
	p.Protocol = cmp.Or(p.Protocol, TCP)
	c.Namespace = cmp.Or(c.Namespace, "default")
	ups := make([]Upstream, len(c.Upstreams))
	for i, u := range c.Upstreams {
		u.ConnectTimeout = cmp.Or(u.ConnectTimeout, 5*time.Second)
		u.MaxHeaderBytes = cmp.Or(u.MaxHeaderBytes, p.MaxHeaderBytes)
		u.MaxHeaders = cmp.Or(u.MaxHeaders, p.MaxHeaders)
		u.HTTPLimits = u.HTTPLimits.withDefaults(p.HTTPLimits)
		u.Protocol = cmp.Or(u.Protocol, TCP)
		u.Namespace = cmp.Or(u.Namespace, "default")
		ups[i] = u
	}
	c.Upstreams = ups
	return c
}

// checkIngressUpstreams reports an ingress route whose upstream is not
// one of c.Upstreams, as "[i].routes[j].upstream: ...".
func (c *Config) checkIngressUpstreams() error {
	var errs []error
	for i, l := range c.Ingress {
		for j, r := range l.Routes {
			if !slices.ContainsFunc(c.Upstreams, func(u Upstream) bool { return u.DestinationName == r.Upstream }) {
				errs = append(errs, fmt.Errorf("[%d].routes[%d].upstream: %q is not one of the upstreams", i, j, r.Upstream))
			}
		}
	}
	return errors.Join(errs...)
}

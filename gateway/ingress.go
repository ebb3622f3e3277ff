package gateway

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/outrider-mesh/outrider/gateway/certs"
	"github.com/outrider-mesh/outrider/internal/confval"
)

// Ingress is one ingress listener: a public HTTP(S) listener for clients
// outside the mesh, in front of the sidecar's mesh upstreams (the static
// file's ingress[i], or Proxy.Config ingress[i] for Consul users). Its
// requests reach the upstreams over mesh mTLS, with the upstreams'
// discovery, balancing, retries and routing.
type Ingress struct {
	// Name labels the listener in logs and metrics; default "ingress<i>".
	Name string `yaml:"name"`
	// Bind is host:port of the listener, e.g. 0.0.0.0:8443. Required.
	Bind string `yaml:"bind"`
	// TLS terminates TLS with these certificates (SNI selection, hot
	// reload; see gateway/certs). Unset: plain HTTP, for a listener behind
	// a load balancer that terminates TLS itself.
	TLS *certs.Config `yaml:"tls"`
	// Routes send requests to upstreams by host and path, first match
	// wins; a request none matches gets 404. At least one.
	Routes []IngressRoute `yaml:"routes"`
	// Gateway applies the gateway features to the listener's requests,
	// before they are routed.
	Gateway Config `yaml:"gateway"`
	// MaxHeaderBytes bounds a request head (default 65536, 1024 to
	// 1048576); larger heads get 431.
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// MaxHeaders bounds a request's header fields (default 100, as
	// Envoy's max_headers_count; 1 to 10000); more get 431.
	MaxHeaders int `yaml:"max_headers"`
	// ReadHeaderTimeout bounds the TLS handshake and the reading of each
	// request head (slowloris). Default 10s.
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	// IdleTimeout closes a keep-alive connection idle this long. Default
	// 60s.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// BodyIdleTimeout bounds each wait for more of a request body (slow
	// POST): a body that makes no progress this long is cut and the
	// request answered 408. Not on gRPC request streams, whose deadline
	// bounds them. Default 60s; it cannot be turned off.
	BodyIdleTimeout time.Duration `yaml:"body_idle_timeout"`
	// MaxConcurrentStreams bounds the HTTP/2 streams a client may have
	// open on one connection (the extra one is reset). Default 100, as
	// Envoy's edge recommendation; 1 to 100000.
	MaxConcurrentStreams int `yaml:"max_concurrent_streams"`
	// InitialStreamWindowSize and InitialConnectionWindowSize are the
	// HTTP/2 flow-control windows the listener grants a client for request
	// bodies: per stream (default 65536) and per connection (default
	// 1048576), as Envoy's edge recommendation; each 65535 to 2147483647,
	// Envoy's range. They bound what a client may send before the proxy
	// has read it.
	InitialStreamWindowSize     int `yaml:"initial_stream_window_size"`
	InitialConnectionWindowSize int `yaml:"initial_connection_window_size"`
}

// IngressRoute is one ingress route.
type IngressRoute struct {
	// Hosts the route answers: exact names ("api.example.com") or one
	// leading wildcard label ("*.example.com" matches a.example.com, not
	// example.com nor a.b.example.com); compared without case, port and
	// trailing dot. Empty matches every host.
	Hosts []string `yaml:"hosts"`
	// Match selects by path and method within those hosts.
	Match Match `yaml:"match"`
	// Upstream is the destination_name of one of the sidecar's
	// upstreams. Required.
	Upstream string `yaml:"upstream"`
}

// Ingress defaults.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout       = 60 * time.Second
	DefaultMaxHeaderBytes    = 64 << 10
	DefaultMaxHeaders        = 100
	DefaultBodyIdleTimeout   = 60 * time.Second
	// DefaultMaxConcurrentStreams, DefaultInitialStreamWindowSize and
	// DefaultInitialConnectionWindowSize are Envoy's edge values.
	DefaultMaxConcurrentStreams        = 100
	DefaultInitialStreamWindowSize     = 64 << 10
	DefaultInitialConnectionWindowSize = 1 << 20
	// MaxConcurrentStreamsLimit bounds max_concurrent_streams: each open
	// stream holds a goroutine and its buffers.
	MaxConcurrentStreamsLimit = 100000
	// minWindow and maxWindow are the HTTP/2 window bounds (RFC 9113's
	// initial window and largest window; Envoy's range).
	minWindow = 65535
	maxWindow = 1<<31 - 1
)

// ApplyDefaults fills in the documented defaults of fields left zero.
func (l *Ingress) ApplyDefaults(i int) {
	l.Name = cmp.Or(l.Name, fmt.Sprintf("ingress%d", i))
	l.ReadHeaderTimeout = cmp.Or(l.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	l.IdleTimeout = cmp.Or(l.IdleTimeout, DefaultIdleTimeout)
	l.MaxHeaderBytes = cmp.Or(l.MaxHeaderBytes, DefaultMaxHeaderBytes)
	l.MaxHeaders = cmp.Or(l.MaxHeaders, DefaultMaxHeaders)
	l.BodyIdleTimeout = cmp.Or(l.BodyIdleTimeout, DefaultBodyIdleTimeout)
	l.MaxConcurrentStreams = cmp.Or(l.MaxConcurrentStreams, DefaultMaxConcurrentStreams)
	l.InitialStreamWindowSize = cmp.Or(l.InitialStreamWindowSize, DefaultInitialStreamWindowSize)
	l.InitialConnectionWindowSize = cmp.Or(l.InitialConnectionWindowSize, DefaultInitialConnectionWindowSize)
}

// Validate reports every problem, with paths relative to the listener.
// Whether each route's upstream exists is for the caller to check.
func (l Ingress) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(l.Bind); err != nil {
		errs = append(errs, confval.Errorf("bind", "want host:port, got %q", l.Bind))
	}
	if l.MaxHeaderBytes != 0 && (l.MaxHeaderBytes < 1024 || l.MaxHeaderBytes > 1<<20) {
		errs = append(errs, confval.Errorf("max_header_bytes", "want 1024 to 1048576, got %d", l.MaxHeaderBytes))
	}
	if l.MaxHeaders != 0 && (l.MaxHeaders < 1 || l.MaxHeaders > 10000) {
		errs = append(errs, confval.Errorf("max_headers", "want 1 to 10000, got %d", l.MaxHeaders))
	}
	if l.ReadHeaderTimeout < 0 {
		errs = append(errs, confval.Errorf("read_header_timeout", "negative"))
	}
	if l.IdleTimeout < 0 {
		errs = append(errs, confval.Errorf("idle_timeout", "negative"))
	}
	if l.BodyIdleTimeout < 0 {
		errs = append(errs, confval.Errorf("body_idle_timeout", "negative (0 or unset: the default, 60s)"))
	}
	if n := l.MaxConcurrentStreams; n != 0 && (n < 1 || n > MaxConcurrentStreamsLimit) {
		errs = append(errs, confval.Errorf("max_concurrent_streams", "want 1 to %d, got %d", MaxConcurrentStreamsLimit, n))
	}
	window := func(key string, n int) {
		if n != 0 && (n < minWindow || n > maxWindow) {
			errs = append(errs, confval.Errorf(key, "want %d to %d, got %d", minWindow, maxWindow, n))
		}
	}
	window("initial_stream_window_size", l.InitialStreamWindowSize)
	window("initial_connection_window_size", l.InitialConnectionWindowSize)
	if len(l.Routes) == 0 {
		errs = append(errs, confval.Errorf("routes", "at least one route is required"))
	}
	for i, r := range l.Routes {
		at := fmt.Sprintf("routes[%d]", i)
		if r.Upstream == "" {
			errs = append(errs, confval.Errorf(at+".upstream", "required"))
		}
		for j, h := range r.Hosts {
			if _, err := hostPattern(h); err != nil {
				errs = append(errs, confval.Errorf(fmt.Sprintf("%s.hosts[%d]", at, j), "%v", err))
			}
		}
		if _, err := r.Match.compile(); err != nil {
			errs = append(errs, confval.Prefix(at+".match", err))
		}
	}
	if err := l.Gateway.Validate(); err != nil {
		errs = append(errs, confval.Prefix("gateway", err))
	}
	if l.TLS != nil {
		if err := l.TLS.Validate(); err != nil {
			errs = append(errs, confval.Prefix("tls", err))
		}
	}
	return errors.Join(errs...)
}

// hostPattern normalizes a configured host: lower case, no trailing dot;
// a wildcard only as the whole first label.
func hostPattern(h string) (string, error) {
	p := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(h)), ".")
	rest := strings.TrimPrefix(p, "*.")
	switch {
	case p == "":
		return "", errors.New("empty host")
	case strings.Contains(rest, "*"):
		return "", fmt.Errorf("%q: a wildcard may only be the whole first label (*.example.com)", h)
	case strings.ContainsAny(rest, ":/ \t") || strings.Contains(rest, ".."):
		return "", fmt.Errorf("%q is not a host name (no port or path)", h)
	}
	return p, nil
}

// Router sends ingress requests to upstream handlers by host and path.
// It is immutable.
type Router struct {
	routes []ingressRoute
}

type ingressRoute struct {
	exact, wild []string // wild holds the suffix after "*" (".example.com")
	match       compiled
	next        http.Handler
	upstream    string
}

// NewRouter compiles the listener's routes; upstream returns the handler
// of a named upstream (false: unknown, an error).
func NewRouter(routes []IngressRoute, upstream func(name string) (http.Handler, bool)) (*Router, error) {
	rt := &Router{}
	for i, r := range routes {
		h, ok := upstream(r.Upstream)
		if !ok {
			return nil, confval.Errorf(fmt.Sprintf("routes[%d].upstream", i), "%q is not one of the sidecar's upstreams", r.Upstream)
		}
		m, err := r.Match.compile()
		if err != nil {
			return nil, confval.Prefix(fmt.Sprintf("routes[%d].match", i), err)
		}
		ir := ingressRoute{match: m, next: h, upstream: r.Upstream}
		for _, host := range r.Hosts {
			p, err := hostPattern(host)
			if err != nil {
				return nil, confval.Errorf(fmt.Sprintf("routes[%d].hosts", i), "%v", err)
			}
			if strings.HasPrefix(p, "*.") {
				ir.wild = append(ir.wild, p[1:])
			} else {
				ir.exact = append(ir.exact, p)
			}
		}
		rt.routes = append(rt.routes, ir)
	}
	return rt, nil
}

// requestHost is r's host, lower case, without port and trailing dot.
func requestHost(r *http.Request) string {
	h := r.Host
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.HasSuffix(h, "]") {
		h = h[:i]
	}
	return strings.TrimSuffix(strings.ToLower(h), ".")
}

func (ir *ingressRoute) hostMatches(host string) bool {
	if len(ir.exact) == 0 && len(ir.wild) == 0 {
		return true
	}
	for _, e := range ir.exact {
		if host == e {
			return true
		}
	}
	for _, w := range ir.wild {
		if len(host) > len(w) && strings.HasSuffix(host, w) && !strings.Contains(host[:len(host)-len(w)], ".") {
			return true
		}
	}
	return false
}

// Route returns the upstream a request goes to and its handler.
func (rt *Router) Route(r *http.Request) (string, http.Handler, bool) {
	host := requestHost(r)
	for i := range rt.routes {
		ir := &rt.routes[i]
		if ir.hostMatches(host) && ir.match.matches(r) {
			return ir.upstream, ir.next, true
		}
	}
	return "", nil, false
}

// ServeHTTP routes r, or answers 404 when no route matches.
func (rt *Router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, h, ok := rt.Route(r); ok {
		h.ServeHTTP(w, r)
		return
	}
	http.Error(w, "no route for this host and path", http.StatusNotFound)
}

// Ingresses are a sidecar's ingress listeners.
type Ingresses []Ingress

// Validate checks each listener and that names and binds are unique.
func (ls Ingresses) Validate() error {
	var errs []error
	names, binds := map[string]int{}, map[string]int{}
	for i, l := range ls {
		at := fmt.Sprintf("[%d]", i)
		if err := l.Validate(); err != nil {
			errs = append(errs, confval.Prefix(at, err))
		}
		if l.Name != "" {
			if j, dup := names[l.Name]; dup {
				errs = append(errs, confval.Errorf(at+".name", "%q is also the name of [%d]", l.Name, j))
			}
			names[l.Name] = i
		}
		if j, dup := binds[l.Bind]; dup && l.Bind != "" {
			errs = append(errs, confval.Errorf(at+".bind", "%q is also the bind of [%d]", l.Bind, j))
		}
		binds[l.Bind] = i
	}
	return errors.Join(errs...)
}

package sidecar

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"slices"
	"time"

	"github.com/outrider-mesh/outrider/discovery"
	"github.com/outrider-mesh/outrider/discovery/consul"
	"github.com/outrider-mesh/outrider/mtls/consulca"
	"github.com/outrider-mesh/outrider/sidecar/balance"
)

func (s *Sidecar) listenAdmin() (net.Listener, error) {
	if s.opts.AdminBind == "-" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", s.opts.AdminBind)
	if err != nil {
		return nil, fmt.Errorf("sidecar: admin listener: %w", err)
	}
	s.adminAddr <- ln.Addr().String()
	return ln, nil
}

// serveAdmin serves the admin endpoints until ctx is done:
//
//	GET /ready        200 "ready" once serving, 503 with the reason before
//	GET /config_dump  the effective configuration and state, as JSON
//	GET /debug/pprof/ Go's profiles (CPU, heap, goroutines, trace)
func (s *Sidecar) serveAdmin(ctx context.Context, ln net.Listener) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ready", s.handleReady)
	mux.HandleFunc("GET /config_dump", s.handleConfigDump)
	// Go's profiler, as Envoy's admin exposes its own: the admin listener
	// is loopback-only by default.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("sidecar: admin server: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func (s *Sidecar) handleReady(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if s.Ready() {
		fmt.Fprintln(w, "ready")
		return
	}
	w.WriteHeader(http.StatusServiceUnavailable)
	fmt.Fprintln(w, "not ready:", s.notReadyReason())
}

func (s *Sidecar) notReadyReason() string {
	if s.proxyID.Load() == nil {
		return "proxy registration not loaded from Consul yet"
	}
	id := s.identity.Load()
	if id == nil {
		return "identity not loaded"
	}
	select {
	case <-id.Ready():
	default:
		return "leaf certificate or CA roots not loaded from Consul yet"
	}
	if s.authz.Load() == nil {
		return "intentions not loaded from Consul yet"
	}
	return "listeners not up"
}

// ConfigDump is the JSON document served at /config_dump. It never contains
// secrets: the ACL token is reported as set or not, keys are never shown.
type ConfigDump struct {
	Version    string           `json:"version"`
	Ready      bool             `json:"ready"`
	Consul     ConsulDump       `json:"consul"`
	ProxyID    string           `json:"proxy_id,omitempty"`
	Config     *Config          `json:"config,omitempty"`
	Identity   *consulca.Status `json:"identity,omitempty"`
	Intentions any              `json:"intentions,omitempty"`
	Upstreams  []UpstreamDump   `json:"upstreams"`
	Watches    []consul.Status  `json:"watches"`
	Stats      map[string]int64 `json:"stats"`
	// DrainTimeout is how long shutdown waits for open connections.
	DrainTimeout string `json:"drain_timeout"`
}

// ConsulDump describes the agent connection.
type ConsulDump struct {
	Address string `json:"address"`
	Token   string `json:"token"`
}

// UpstreamDump is one upstream's listener, endpoints and their freshness.
type UpstreamDump struct {
	Upstream
	Listening string              `json:"listening"`
	Snapshot  *discovery.Snapshot `json:"snapshot,omitempty"`
	Discovery consul.Status       `json:"discovery"`
	// LoadBalancer is the balancing in force (the service-resolver's
	// LoadBalancer, or the protocol's default policy).
	LoadBalancer balance.Config `json:"load_balancer"`
	// LoadBalancerWatch is the discovery-chain watch's freshness.
	LoadBalancerWatch consul.Status `json:"load_balancer_watch"`
	// IdleConnections counts pooled HTTP/1.1 connections to endpoints.
	IdleConnections int `json:"idle_connections"`
}

// Dump returns the current ConfigDump.
func (s *Sidecar) Dump() ConfigDump {
	d := ConfigDump{
		Version: s.opts.Version,
		Ready:   s.Ready(),
		Consul:  ConsulDump{Address: s.opts.ConsulAddress, Token: "(not set)"},
		Stats: map[string]int64{
			"connections_total":         s.stat.connections.Load(),
			"connections_active":        s.stat.active.Load(),
			"tls_handshake_failures":    s.stat.handshakeFailures.Load(),
			"tls_resumed_handshakes":    s.stat.resumed.Load(),
			"connections_denied":        s.stat.denied.Load(),
			"upstream_connect_failures": s.stat.upstreamFailures.Load(),
			"http_requests_total":       s.stat.requests.Load(),
			"http_bad_requests":         s.stat.badRequests.Load(),
		},
		DrainTimeout: s.opts.DrainTimeout.String(),
		Upstreams:    []UpstreamDump{},
		Watches:      []consul.Status{},
	}
	if s.opts.TokenSet {
		d.Consul.Token = "(redacted)"
	}
	if p := s.proxyID.Load(); p != nil {
		d.ProxyID = *p
	}
	d.Config = s.config.Load()
	if id := s.identity.Load(); id != nil {
		st := id.Status()
		d.Identity = &st
	}
	if in := s.authz.Load(); in != nil {
		d.Intentions = in.Summary()
	}
	if w := s.regW.Load(); w != nil {
		d.Watches = append(d.Watches, w.Status())
	}
	if w := s.authzW.Load(); w != nil {
		d.Watches = append(d.Watches, w.Status())
	}
	s.mu.Lock()
	for _, r := range s.upstreams {
		ud := UpstreamDump{Upstream: *r.out.cfg.Load(), Listening: r.out.ln.Addr().String(),
			LoadBalancer: r.out.bal.Config(), IdleConnections: r.out.h1.idle()}
		r.out.mu.Lock()
		ud.Snapshot = r.out.snap
		r.out.mu.Unlock()
		if w := r.watch.Load(); w != nil {
			ud.Discovery = w.Status()
		}
		if w := r.lbWatch.Load(); w != nil {
			ud.LoadBalancerWatch = w.Status()
		}
		d.Upstreams = append(d.Upstreams, ud)
	}
	s.mu.Unlock()
	slices.SortFunc(d.Upstreams, func(a, b UpstreamDump) int { return cmp.Compare(a.BindAddress, b.BindAddress) })
	return d
}

func (s *Sidecar) handleConfigDump(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(s.Dump())
}

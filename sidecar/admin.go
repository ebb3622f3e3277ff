package sidecar

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"slices"
	"time"

	"github.com/outrider-mesh/outrider/discovery"
	"github.com/outrider-mesh/outrider/discovery/consul"
	"github.com/outrider-mesh/outrider/mtls"
	"github.com/outrider-mesh/outrider/policy/jwtauth"
	"github.com/outrider-mesh/outrider/sidecar/balance"
	"github.com/outrider-mesh/outrider/sidecar/health"
	"github.com/outrider-mesh/outrider/sidecar/overload"
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
//	GET /live          200 while the process serves its admin port
//	GET /ready         200 "ready" once serving, 503 with the reason before and from shutdown on
//	GET /metrics       Prometheus metrics
//	GET /config_dump   the effective configuration and state, as JSON
//	GET /clusters      each upstream's endpoints with their live state, as JSON
//	GET /certs         the leaf certificate and trusted roots in use, as JSON
//	GET /authz/explain what the policy would decide for a peer and request, and why
//	GET /logging       the log level; POST /logging?level=debug changes it
//	GET /debug/pprof/  Go's profiles, only with Options.Pprof
func (s *Sidecar) serveAdmin(ctx context.Context, ln net.Listener) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /live", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "live") })
	mux.HandleFunc("GET /ready", s.handleReady)
	mux.Handle("GET /metrics", s.metrics.Handler())
	mux.HandleFunc("GET /config_dump", s.handleConfigDump)
	mux.HandleFunc("GET /clusters", s.handleClusters)
	mux.HandleFunc("GET /certs", s.handleCerts)
	mux.HandleFunc("GET /authz/explain", s.handleExplain)
	mux.HandleFunc("GET /logging", s.handleLogging)
	mux.HandleFunc("POST /logging", s.handleLogging)
	if s.opts.Pprof {
		// Go's profiler, as Envoy's admin exposes its own; off by default
		// because a CPU profile or trace costs the data plane while it runs.
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
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
	if s.draining.Load() {
		return "shutting down: draining"
	}
	if s.proxyID.Load() == nil {
		return "proxy registration not loaded from Consul yet"
	}
	id := s.currentIdentity()
	if id == nil {
		return "identity not loaded"
	}
	select {
	case <-id.Ready():
	default:
		st := id.Status()
		reason := "no SVID and trust bundle loaded yet from " + st.Source
		if st.LastError != "" {
			reason += " (" + st.LastError + ")"
		}
		return reason
	}
	if err := s.svidValid(); err != nil {
		return err.Error()
	}
	if s.authz.Load() == nil {
		return "intentions not loaded from Consul yet"
	}
	return "listeners not up"
}

// ConfigDump is the JSON document served at /config_dump. It never contains
// secrets: the ACL token is reported as set or not, keys are never shown.
type ConfigDump struct {
	Version    string               `json:"version"`
	Ready      bool                 `json:"ready"`
	Consul     ConsulDump           `json:"consul"`
	ProxyID    string               `json:"proxy_id,omitempty"`
	Config     *Config              `json:"config,omitempty"`
	Identity   *mtls.IdentityStatus `json:"identity,omitempty"`
	Intentions any                  `json:"intentions,omitempty"`
	// JWTProviders are the JWT providers' key sets: where from, when
	// loaded, whether stale.
	JWTProviders []jwtauth.ProviderStatus `json:"jwt_providers,omitempty"`
	Upstreams    []UpstreamDump           `json:"upstreams"`
	Watches      []consul.Status          `json:"watches"`
	Stats        map[string]int64         `json:"stats"`
	// DrainTimeout is how long shutdown waits for open connections.
	DrainTimeout string `json:"drain_timeout"`
	// DrainDelay is how long shutdown keeps serving after leaving the
	// routing, before the listeners close.
	DrainDelay string `json:"drain_delay"`
	// Overload is the overload manager's budget and state.
	Overload overload.Status `json:"overload"`
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
	// Routes are the discovery chain's routes in match order (none: every
	// request goes to the default cluster).
	Routes []RouteDump `json:"routes,omitempty"`
	// Clusters are the chain's targets with their endpoints' freshness;
	// the first is the default cluster (the destination, no subset).
	Clusters []ClusterSummary `json:"clusters"`
}

// RouteDump is one route of an upstream's discovery chain.
type RouteDump struct {
	Name string `json:"name"`
	// Splits lists where matching requests go: a cluster per split, with
	// its weight in hundredths of a percent; failover clusters follow.
	Splits         []SplitDump   `json:"splits"`
	PrefixRewrite  string        `json:"prefix_rewrite,omitempty"`
	RequestTimeout time.Duration `json:"request_timeout,omitempty"`
	NumRetries     int           `json:"num_retries,omitempty"`
}

// SplitDump is one split of a route.
type SplitDump struct {
	Weight   uint32   `json:"weight"`
	Clusters []string `json:"clusters"`
}

// ClusterSummary is one cluster of an upstream.
type ClusterSummary struct {
	Name      string        `json:"name"`
	Selection string        `json:"selection"`
	Endpoints int           `json:"endpoints"`
	Discovery consul.Status `json:"discovery"`
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
		DrainDelay:   s.opts.DrainDelay.String(),
		Overload:     s.overload.Status(),
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
	if id := s.currentIdentity(); id != nil {
		st := id.Status()
		d.Identity = &st
	}
	if in := s.authz.Load(); in != nil {
		d.Intentions = in.Summary()
	}
	if v := s.opts.JWT; v != nil {
		d.JWTProviders = v.Status()
	}
	if w := s.regW.Load(); w != nil {
		d.Watches = append(d.Watches, w.Status())
	}
	if w := s.authzW.Load(); w != nil {
		d.Watches = append(d.Watches, w.Status())
	}
	s.mu.Lock()
	for _, r := range s.upstreams {
		rg := r.out.routes.Load()
		ud := UpstreamDump{Upstream: *r.out.cfg.Load(), Listening: r.out.ln.Addr().String(),
			LoadBalancer: rg.def.bal.Config(), IdleConnections: r.out.h1.idle()}
		rg.def.mu.Lock()
		ud.Snapshot = rg.def.snap
		rg.def.mu.Unlock()
		if w := r.watch.Load(); w != nil {
			ud.Discovery = w.Status()
		}
		if w := r.chainW.Load(); w != nil {
			ud.LoadBalancerWatch = w.Status()
		}
		ud.Routes = rg.dumpRoutes()
		r.out.eachCluster(func(c *cluster) {
			cs := ClusterSummary{Name: c.name, Selection: describeTarget(c.key), Endpoints: len(c.bal.Endpoints())}
			if c.watch != nil {
				cs.Discovery = c.watch.Status()
			}
			ud.Clusters = append(ud.Clusters, cs)
		})
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

// ClusterDump is one upstream in /clusters.
type ClusterDump struct {
	Upstream string `json:"upstream"`
	// Cluster is the discovery-chain target (the upstream's name for its
	// default cluster).
	Cluster   string              `json:"cluster"`
	Protocol  Protocol            `json:"protocol"`
	Policy    balance.Policy      `json:"policy"`
	Endpoints []ClusterEndpoint   `json:"endpoints"`
	Discovery consul.Status       `json:"discovery"`
	Snapshot  *discovery.Snapshot `json:"-"`
}

// ClusterEndpoint is one endpoint's live state: every endpoint Consul
// passes (or listed statically), balanced or not.
type ClusterEndpoint struct {
	Address  string `json:"address"`
	Identity string `json:"identity"`
	Weight   int    `json:"weight"`
	// Balanced is whether the balancer may pick the endpoint: false while
	// the active health check excludes it.
	Balanced       bool  `json:"balanced"`
	ActiveRequests int64 `json:"active_requests"`
	IdleConns      int   `json:"idle_connections"`
	// EjectedUntil is set while outlier detection keeps the endpoint out;
	// Ejections counts its ejections.
	EjectedUntil *time.Time `json:"ejected_until,omitempty"`
	Ejections    int        `json:"ejections,omitempty"`
	// Health is the active health check's view (pending, healthy or
	// unhealthy, and the last failure); absent when checks are off.
	Health *health.Status `json:"health,omitempty"`
}

func (s *Sidecar) handleClusters(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	out := make([]ClusterDump, 0, len(s.upstreams))
	for _, r := range s.upstreams {
		cfg := r.out.cfg.Load()
		r.out.eachCluster(func(c *cluster) {
			cd := ClusterDump{Upstream: cfg.DestinationName, Cluster: c.name, Protocol: cfg.Protocol, Policy: c.bal.Config().Policy,
				Endpoints: []ClusterEndpoint{}}
			if c.watch != nil {
				cd.Discovery = c.watch.Status()
			}
			c.mu.Lock()
			chk := c.checker
			c.mu.Unlock()
			for _, e := range c.bal.Endpoints() {
				ce := ClusterEndpoint{
					Address: e.Address, Identity: e.Identity.String(), Weight: e.Weight, Balanced: !e.Excluded(),
					ActiveRequests: e.Active(), IdleConns: r.out.h1.idleFor(e.Endpoint), Ejections: e.Ejections(),
				}
				if until, ok := e.Ejected(); ok {
					ce.EjectedUntil = &until
				}
				if chk != nil {
					st, ok := chk.Status(e.Address)
					if !ok {
						st = health.Status{State: health.Pending}
					}
					ce.Health = &st
				}
				cd.Endpoints = append(cd.Endpoints, ce)
			}
			out = append(out, cd)
		})
	}
	s.mu.Unlock()
	slices.SortStableFunc(out, func(a, b ClusterDump) int { return cmp.Compare(a.Upstream, b.Upstream) })
	writeJSON(w, out)
}

func (s *Sidecar) handleCerts(w http.ResponseWriter, _ *http.Request) {
	id := s.currentIdentity()
	if id == nil {
		http.Error(w, "identity not loaded yet", http.StatusServiceUnavailable)
		return
	}
	st := CertsStatus{IdentityStatus: id.Status()}
	if !st.NotAfter.IsZero() {
		st.ExpiresIn = time.Until(st.NotAfter).Round(time.Second).String()
	}
	if err := s.svidValid(); err != nil {
		st.Problem = err.Error()
	} else {
		st.Valid = true
	}
	writeJSON(w, st)
}

// CertsStatus is the JSON document served at /certs: the identity source's
// status plus the time left on the SVID and whether it can be presented.
type CertsStatus struct {
	mtls.IdentityStatus
	// ExpiresIn is the time to the SVID's NotAfter (negative once expired).
	ExpiresIn string `json:"expires_in,omitempty"`
	// Valid is false while no SVID within its validity period is held;
	// Problem then says why (new handshakes fail closed meanwhile).
	Valid   bool   `json:"valid"`
	Problem string `json:"problem,omitempty"`
}

// handleLogging shows the log level, or sets it from ?level= on POST.
func (s *Sidecar) handleLogging(w http.ResponseWriter, r *http.Request) {
	if s.opts.LogLevel == nil {
		http.Error(w, "the log level is fixed for this sidecar", http.StatusNotImplemented)
		return
	}
	if r.Method == http.MethodPost {
		var l slog.Level
		if err := l.UnmarshalText([]byte(r.URL.Query().Get("level"))); err != nil {
			http.Error(w, "level: want debug, info, warn or error", http.StatusBadRequest)
			return
		}
		prev := s.opts.LogLevel.Level()
		s.opts.LogLevel.Set(l)
		s.log.Warn("log level changed through the admin API", "was", prev.String(), "now", l.String())
	}
	fmt.Fprintln(w, s.opts.LogLevel.Level().String())
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // rule names hold "<-"
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

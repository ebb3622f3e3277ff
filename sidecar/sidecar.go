package sidecar

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.opentelemetry.io/otel/attribute"
	"golang.org/x/sync/errgroup"

	"github.com/outrider-mesh/outrider/discovery"
	"github.com/outrider-mesh/outrider/discovery/consul"
	"github.com/outrider-mesh/outrider/gateway"
	"github.com/outrider-mesh/outrider/gateway/certs"
	"github.com/outrider-mesh/outrider/mtls"
	"github.com/outrider-mesh/outrider/mtls/consulca"
	"github.com/outrider-mesh/outrider/policy"
	"github.com/outrider-mesh/outrider/policy/jwtauth"
	"github.com/outrider-mesh/outrider/policy/pathnorm"
	"github.com/outrider-mesh/outrider/sidecar/overload"
	"github.com/outrider-mesh/outrider/telemetry/accesslog"
	"github.com/outrider-mesh/outrider/telemetry/metrics"
	"github.com/outrider-mesh/outrider/telemetry/tracing"
)

// Options configure a Sidecar. The zero value of every field but the
// target (SidecarFor or ProxyID) is usable.
type Options struct {
	// SidecarFor is the service instance ID whose sidecar this is; the proxy
	// registration is looked up on the agent. Exclusive with ProxyID.
	SidecarFor string
	// ProxyID is the proxy's own service ID. Exclusive with SidecarFor.
	ProxyID string
	// AdminBind is host:port of the admin endpoints (default
	// 127.0.0.1:19000); "-" turns the admin server off.
	AdminBind string
	// DrainTimeout bounds how long shutdown waits for open connections
	// (default 15s).
	DrainTimeout time.Duration
	// Logger receives the sidecar's logs (default: discard).
	Logger *slog.Logger
	// ConsulAddress names the agent in logs and /config_dump.
	ConsulAddress string
	// TokenSet reports whether a Consul ACL token is configured (the token
	// itself is never shown).
	TokenSet bool
	// Version is reported by /config_dump.
	Version string
	// Backoff bounds Consul retries (defaults 250ms and 30s).
	MinBackoff, MaxBackoff time.Duration
	// OnShutdown runs first when shutdown starts, before any listener
	// closes (the CLI deregisters a self-registered sidecar there). It
	// should return within LeaveTimeout: Consul may be down.
	OnShutdown func()
	// Maintenance (Consul mode) takes a sidecar that has served out of
	// its peers' routing when shutdown starts, by putting its proxy
	// service in Consul maintenance mode (reason consul.MaintenanceReason),
	// and lifts a maintenance mode that Outrider set on that proxy service
	// once the sidecar is ready again. A maintenance mode someone else set
	// is never lifted. For a registration made by someone else (the CLI's
	// -sidecar-for and -proxy-id without -register); a self-registered
	// sidecar deregisters in OnShutdown instead.
	Maintenance bool
	// DrainDelay is how long from the start of shutdown every listener
	// keeps accepting and serving, /ready answering 503, while the
	// instance leaves the routing (OnShutdown, Maintenance) and peers and
	// a platform polling /ready stop sending. Leaving the routing takes
	// longer than the delay only if Consul is slow (LeaveTimeout bounds
	// it). The delay ends early once the local application stops
	// listening (nothing could serve new connections then), and is
	// skipped by a sidecar that never became ready. 0: none.
	DrainDelay time.Duration
	// ShutdownGracePeriod keeps the upstream listeners open after the
	// public one closed, until the local application stops listening or
	// this long has passed, so the application can finish its own
	// outbound calls while it shuts down (0: no wait).
	ShutdownGracePeriod time.Duration
	// PostQuantum offers and accepts the X25519MLKEM768 hybrid key
	// exchange first on mesh links (costs about a quarter more CPU per full
	// handshake; off by default, as in Envoy).
	PostQuantum bool
	// EventLoop relays established streams on epoll event loops (Linux),
	// one per GOMAXPROCS, instead of two goroutines per connection.
	EventLoop bool
	// Tracing records spans; the caller owns it and shuts it down. When nil,
	// TraceConfig (if enabled) makes one once the proxied service's name
	// (the default service.name) is known, and Run shuts it down. With
	// neither, no spans are made and trace headers pass through untouched.
	Tracing     *tracing.Tracing
	TraceConfig *tracing.Config
	// Metrics is the registry /metrics serves (nil: the sidecar makes one).
	Metrics *metrics.Metrics
	// AccessLog receives one entry per request or L4 connection (nil: off).
	AccessLog *accesslog.Logger
	// LogLevel, when set, is the level /logging reads and changes.
	LogLevel *slog.LevelVar
	// Pprof serves Go's profiler under /debug/pprof/ on the admin port.
	Pprof bool
	// Overload is the overload manager every listener admits connections
	// and requests through (nil: one with the default budget, see
	// sidecar/overload). Run samples its memory reading.
	Overload *overload.Manager

	// Config, when set, is the whole configuration (static mode, `outrider
	// run -config`): no registration is looked up and SidecarFor and
	// ProxyID must be empty. The Consul client may then be nil if nothing
	// else needs Consul (Identity and Policy set, every upstream static).
	Config *Config
	// Identity is where the SVID and trust bundles come from (nil: Consul's
	// Connect CA for the proxied service). The sidecar runs it.
	Identity mtls.Identity
	// Policy, when set, authorizes inbound peers instead of the Consul
	// intentions of the proxied service.
	Policy policy.Policy
	// LocalPolicy, when set, is layered over Policy or the intentions: a
	// request must be allowed by both (StoreLocalPolicy replaces it).
	LocalPolicy *policy.Rules
	// JWT verifies the bearer tokens that rules ask for; the sidecar runs
	// it (fetching and refreshing remote key sets). nil: no providers, so
	// a rule that needs a token never matches.
	JWT *jwtauth.Verifier
	// PathNormalization relaxes how inbound HTTP request paths are
	// normalized before rules match them (the zero value is the safe
	// default).
	PathNormalization pathnorm.Options
}

// Sidecar is one running Consul Connect sidecar.
type Sidecar struct {
	client *api.Client
	opts   Options
	log    *slog.Logger
	conns  *tracker
	stat   counters

	// Published state, read by the admin server.
	proxyID  atomic.Pointer[string]
	config   atomic.Pointer[Config]
	identity atomic.Pointer[mtls.Identity]
	expired  atomic.Int64 // unix nanoseconds of the last "SVID expired" log
	authz    policy.Authorizer
	authzW   atomic.Pointer[consul.Watch[*policy.Intentions]]
	regW     atomic.Pointer[consul.Watch[*api.AgentService]]

	loops    *loops // nil unless Options.EventLoop
	overload *overload.Manager

	metrics *metrics.Metrics
	tel     *telemetry // what the data path records into
	tracing atomic.Pointer[tracing.Tracing]

	mu        sync.Mutex // guards the listeners below (reconcile vs admin)
	inbound   *inbound
	upstreams map[string]*upstreamRunner
	ingresses map[string]*ingress // by name

	gwMetricsOnce    sync.Once
	gwMetrics        *gateway.Metrics
	certsMetricsOnce sync.Once
	certsMetricsV    *certs.Metrics
	// outbounds is the running upstreams by destination name, for
	// request-time lookups (ingress routes, aggregation).
	outbounds atomic.Pointer[map[string]*outbound]
	ready     atomic.Bool
	draining  atomic.Bool   // shutdown has started: never ready again
	served    chan struct{} // closed when the sidecar is ready the first time
	servedOne sync.Once

	adminAddr chan string
}

// counters are cumulative connection statistics.
type counters struct {
	connections       atomic.Int64
	active            atomic.Int64
	handshakeFailures atomic.Int64
	resumed           atomic.Int64
	upstreamFailures  atomic.Int64
	denied            atomic.Int64
	requests          atomic.Int64 // HTTP requests answered by an upstream
	badRequests       atomic.Int64 // malformed HTTP requests rejected
}

// upstreamRunner is an outbound listener and the discovery watch feeding it.
type upstreamRunner struct {
	out    *outbound
	watch  atomic.Pointer[consul.Watch[*discovery.Snapshot]]
	chainW atomic.Pointer[consul.Watch[json.RawMessage]]
	cancel context.CancelFunc
	done   chan struct{}
}

// New returns a Sidecar for the Consul agent client talks to.
func New(client *api.Client, opts Options) (*Sidecar, error) {
	if opts.Config != nil {
		if opts.SidecarFor != "" || opts.ProxyID != "" {
			return nil, errors.New("sidecar: a static Config excludes SidecarFor and ProxyID")
		}
		if opts.Config.Service == "" {
			return nil, errors.New("sidecar: the static Config names no service")
		}
		cfg := opts.Config.WithDefaults()
		opts.Config = &cfg
	} else if (opts.SidecarFor == "") == (opts.ProxyID == "") {
		return nil, errors.New("sidecar: exactly one of SidecarFor and ProxyID is required")
	}
	if client == nil && (opts.Config == nil || opts.Identity == nil || opts.Policy == nil) {
		return nil, errors.New("sidecar: a Consul client is required unless a static Config, an Identity and a Policy are all given")
	}
	if opts.AdminBind == "" {
		opts.AdminBind = "127.0.0.1:19000"
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = 15 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 250 * time.Millisecond
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 30 * time.Second
	}
	m := opts.Metrics
	if m == nil {
		name := cmp.Or(opts.SidecarFor, opts.ProxyID)
		if opts.Config != nil {
			name = cmp.Or(opts.Config.ProxyID, opts.Config.Service)
		}
		m = metrics.New(name)
	}
	s := &Sidecar{
		client:    client,
		opts:      opts,
		log:       opts.Logger,
		conns:     newTracker(),
		upstreams: map[string]*upstreamRunner{},
		adminAddr: make(chan string, 1),
		served:    make(chan struct{}),
		metrics:   m,
		tel:       newTelemetry(m, opts.AccessLog),
	}
	s.overload = opts.Overload
	if s.overload == nil {
		s.overload = overload.New(overload.Config{}.Resolve(debug.SetMemoryLimit(-1)))
	}
	if err := s.overload.Register(m.Registry()); err != nil {
		s.log.Warn("overload metrics not registered", "error", err)
	}
	s.outbounds.Store(&map[string]*outbound{})
	s.registerGauges()
	return s, nil
}

// AdminAddr returns the admin server's address once it listens (for tests
// that bind port 0).
func (s *Sidecar) AdminAddr(ctx context.Context) (string, error) {
	select {
	case a := <-s.adminAddr:
		s.adminAddr <- a
		return a, nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// Ready reports whether the sidecar serves traffic: listeners up, an SVID
// and its trust bundle loaded, the SVID within its validity period, and
// the authorization rules (intentions) loaded, and shutdown not started.
func (s *Sidecar) Ready() bool {
	return s.ready.Load() && !s.draining.Load() && s.svidValid() == nil
}

// currentIdentity is the running identity source, nil before Run made it.
func (s *Sidecar) currentIdentity() mtls.Identity {
	if p := s.identity.Load(); p != nil {
		return *p
	}
	return nil
}

// svidValid returns why no valid SVID is held (not loaded yet, expired,
// not yet valid), or nil. It does not count as a handshake: nothing is
// logged.
func (s *Sidecar) svidValid() error {
	id := s.currentIdentity()
	if id == nil {
		return mtls.ErrNotReady
	}
	svid, err := id.GetX509SVID()
	if err != nil {
		return err
	}
	if len(svid.Certificates) == 0 {
		return errors.New("mtls: empty SVID")
	}
	return mtls.CheckValidity(svid.Certificates[0], time.Now())
}

func (s *Sidecar) watchOpts(extra ...consul.Option) []consul.Option {
	return append([]consul.Option{
		consul.WithLogger(s.log),
		consul.WithAddress(s.opts.ConsulAddress),
		consul.WithBackoff(s.opts.MinBackoff, s.opts.MaxBackoff),
	}, extra...)
}

// Run serves until ctx is done, then drains: it leaves the routing (see
// Options.Maintenance and OnShutdown), keeps serving for the drain delay,
// stops accepting, waits for open connections up to the drain timeout,
// closes the rest and returns nil. The admin server answers throughout
// (/ready says 503 from the start of shutdown) and stops last. It returns
// an error at once for a configuration error: the admin address cannot be
// bound, or the target has no sidecar registration.
func (s *Sidecar) Run(ctx context.Context) error {
	adminLn, err := s.listenAdmin()
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	// The admin server and the overload sampler outlive ctx: they serve
	// through the drain and stop when run returns (a failing admin server
	// cancels gctx, which ends run).
	after, stopAfter := context.WithCancel(context.WithoutCancel(ctx))
	defer stopAfter()
	if adminLn != nil {
		g.Go(func() error { return s.serveAdmin(after, adminLn) })
	}
	g.Go(func() error { defer stopAfter(); return s.run(gctx) })
	g.Go(func() error { s.overload.Run(after, 0); return nil })
	err = g.Wait()
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		err = nil
	}
	return err
}

func (s *Sidecar) run(ctx context.Context) error {
	var (
		proxyID string
		cfg     Config
	)
	if s.opts.Config != nil {
		cfg = *s.opts.Config
		proxyID = cmp.Or(cfg.ProxyID, cfg.Service)
		s.log.Info("static configuration", "service", cfg.Service, "public_listener", cfg.Public.BindAddress,
			"local_service", cfg.Public.LocalService, "upstreams", len(cfg.Upstreams))
	} else {
		var reg *api.AgentService
		var err error
		if proxyID, reg, err = s.resolve(ctx); err != nil {
			return err
		}
		if cfg, err = FromRegistration(reg); err != nil {
			return err
		}
		s.log.Info("sidecar registration found", "proxy_id", proxyID, "service", cfg.Service,
			"public_listener", cfg.Public.BindAddress, "local_service", cfg.Public.LocalService, "upstreams", len(cfg.Upstreams))
	}
	s.proxyID.Store(&proxyID)
	s.metrics.SetService(cfg.Service)
	if err := s.startTracing(ctx, cfg, proxyID); err != nil {
		return err
	}

	if s.opts.EventLoop {
		var err error
		if s.loops, err = newLoops(runtime.GOMAXPROCS(0)); err != nil {
			return err
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	defer s.shutdown()
	if s.maintenance() {
		g.Go(func() error { s.liftMaintenance(gctx, proxyID); return nil })
	}

	// The registration watch delivers the latest registration; the
	// reconcile loop below applies it. Latest wins: a slow apply never
	// queues stale registrations. A static configuration has none (regs
	// stays empty).
	regs := make(chan *api.AgentService, 1)
	if s.opts.Config == nil {
		regW := consul.NewWatch("agent/service/"+proxyID, consul.ProxyRegistration(s.client, proxyID), func(r *api.AgentService) {
			select {
			case <-regs:
			default:
			}
			regs <- r
		}, s.watchOpts(consul.HashBased())...)
		s.regW.Store(regW)
		g.Go(func() error { return regW.Run(gctx) })
	}

	id := s.opts.Identity
	if id == nil {
		id = consulca.New(s.client, cfg.Service, s.watchOpts()...)
	}
	id = mtls.FailClosed(id, s.reportExpired)
	s.identity.Store(&id)
	g.Go(func() error { return id.Run(gctx) })
	if v := s.opts.JWT; v != nil {
		g.Go(func() error { return v.Run(gctx) })
	}

	g.Go(func() error {
		select {
		case <-id.Ready():
		case <-gctx.Done():
			return gctx.Err()
		}
		svid, err := id.GetX509SVID()
		if err != nil {
			return fmt.Errorf("sidecar: identity ready without an SVID: %w", err)
		}
		td := svid.ID.TrustDomain()
		st := id.Status()
		s.log.Info("identity loaded", "service", cfg.Service, "source", st.Source, "spiffe_id", svid.ID.String(),
			"trust_domain", td.Name(), "not_after", st.NotAfter)
		if s.opts.LocalPolicy != nil {
			s.StoreLocalPolicy(s.opts.LocalPolicy)
		}
		if s.opts.Policy != nil {
			s.StorePolicy(s.opts.Policy)
		} else {
			g.Go(func() error { return s.watchIntentions(gctx, cfg.Service, td) })
		}
		if err := s.apply(gctx, cfg, id, td); err != nil {
			return err
		}
		for {
			select {
			case <-gctx.Done():
				return gctx.Err()
			case r := <-regs:
				next, err := FromRegistration(r)
				if err != nil {
					s.log.Error("ignoring invalid registration change; keeping the current configuration", "error", err)
					continue
				}
				if next.Service != cfg.Service {
					s.log.Error("registration now proxies another service; restart the sidecar to change identity",
						"was", cfg.Service, "now", next.Service)
					continue
				}
				if err := s.apply(gctx, next, id, td); err != nil {
					s.log.Error("applying registration change failed", "error", err)
				}
			}
		}
	})
	return g.Wait()
}

// reportExpired logs, at most every 30 seconds, that handshakes are
// refused because the SVID is outside its validity period. It runs on
// handshake goroutines.
func (s *Sidecar) reportExpired(err error) {
	now := time.Now().UnixNano()
	last := s.expired.Load()
	if now-last < int64(30*time.Second) || !s.expired.CompareAndSwap(last, now) {
		return
	}
	s.log.Error("no valid SVID: handshakes fail closed until the identity source renews it", "error", err)
}

// resolve finds the proxy registration, retrying while Consul cannot be
// reached; a missing registration is a configuration error.
func (s *Sidecar) resolve(ctx context.Context) (string, *api.AgentService, error) {
	for attempt := 1; ; attempt++ {
		proxyID := s.opts.ProxyID
		var err error
		if proxyID == "" {
			proxyID, err = consul.SidecarFor(ctx, s.client, s.opts.SidecarFor)
		}
		var reg *api.AgentService
		if err == nil {
			reg, _, err = consul.ProxyRegistration(s.client, proxyID)((&api.QueryOptions{}).WithContext(ctx))
		}
		if err == nil {
			return proxyID, reg, nil
		}
		if errors.Is(err, consul.ErrNoSidecar) {
			return "", nil, err
		}
		if ctx.Err() != nil {
			return "", nil, ctx.Err()
		}
		delay := consul.Backoff(s.opts.MinBackoff, s.opts.MaxBackoff, attempt)
		s.log.Warn("cannot reach Consul; retrying", "consul", s.opts.ConsulAddress, "attempt", attempt,
			"retry_in", delay.Round(time.Millisecond), "error", err)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return "", nil, ctx.Err()
		case <-t.C:
		}
	}
}

// waitForApplication returns once nothing listens on app (the application
// has exited) or the shutdown grace period has passed.
func (s *Sidecar) waitForApplication(app string) {
	if s.opts.ShutdownGracePeriod <= 0 || app == "" {
		return
	}
	s.log.Info("public listener closed; upstreams stay open until the application exits",
		"local_service", app, "grace_period", s.opts.ShutdownGracePeriod)
	if untilStopped(app, s.opts.ShutdownGracePeriod) {
		s.log.Info("application stopped listening; closing upstreams", "local_service", app)
		return
	}
	s.log.Info("shutdown grace period over; closing upstreams", "local_service", app)
}

// untilStopped returns once nothing listens on app (reporting true) or d
// has passed (false). With no app it waits d.
func untilStopped(app string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if app != "" {
			c, err := net.DialTimeout("tcp", app, 200*time.Millisecond)
			if err != nil {
				return true
			}
			c.Close()
		}
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		time.Sleep(min(250*time.Millisecond, left))
	}
}

// LeaveTimeout bounds each call to Consul that shutdown makes to leave the
// routing (the maintenance mode here, the CLI's deregistration): Consul
// may be what is down, and the drain goes on without it.
const LeaveTimeout = 2 * time.Second

// leaveRouting runs first in shutdown: OnShutdown, then, for a sidecar
// that has served, the maintenance mode (Options.Maintenance) and the rest
// of the drain delay, during which every listener still accepts and
// serves.
func (s *Sidecar) leaveRouting() {
	start := time.Now()
	if s.opts.OnShutdown != nil {
		s.opts.OnShutdown()
	}
	select {
	case <-s.served:
	default:
		return // never ready: no peer was sent here by this sidecar
	}
	if id := s.proxyID.Load(); s.maintenance() && id != nil {
		ctx, cancel := context.WithTimeout(context.Background(), LeaveTimeout)
		reason := consul.MaintenanceReason(os.Getpid())
		if err := consul.EnterMaintenance(ctx, s.client, *id, reason); err != nil {
			s.log.Error("cannot take the instance out of Consul's routing; draining anyway (peers drop it when its checks fail)",
				"proxy_id", *id, "error", err)
		} else {
			s.log.Info("proxy service in Consul maintenance mode: peers stop routing here", "proxy_id", *id, "reason", reason)
		}
		cancel()
	}
	d := s.opts.DrainDelay - time.Since(start)
	if d <= 0 {
		return
	}
	var app string
	s.mu.Lock()
	if s.inbound != nil {
		app = s.inbound.cfg.Load().LocalService
	}
	s.mu.Unlock()
	s.log.Info("draining: listeners stay open for the drain delay, /ready says not ready",
		"drain_delay", s.opts.DrainDelay, "left", d.Round(time.Millisecond), "local_service", app)
	if untilStopped(app, d) {
		s.log.Info("application stopped listening; drain delay cut short", "local_service", app)
	}
}

// maintenance reports whether this sidecar manages its proxy service's
// maintenance mode (Options.Maintenance, in Consul mode).
func (s *Sidecar) maintenance() bool {
	return s.opts.Maintenance && s.opts.Config == nil && s.client != nil
}

// liftMaintenance waits until the sidecar is ready, then lifts the
// maintenance mode a previous sidecar for proxyID left (see
// Options.Maintenance), retrying while Consul cannot be reached, until
// done or ctx ends. It runs on its own goroutine, owned by run.
func (s *Sidecar) liftMaintenance(ctx context.Context, proxyID string) {
	select {
	case <-s.served:
	case <-ctx.Done():
		return
	}
	for attempt := 1; ; attempt++ {
		reason, lifted, err := consul.LiftMaintenance(ctx, s.client, proxyID)
		switch {
		case err == nil && lifted:
			s.log.Info("ready: lifted the maintenance mode a draining sidecar left", "proxy_id", proxyID, "reason", reason)
			return
		case err == nil && reason != "":
			s.log.Warn("proxy service in a maintenance mode Outrider did not set; left in place", "proxy_id", proxyID, "reason", reason)
			return
		case err == nil:
			return
		case ctx.Err() != nil:
			return
		}
		delay := consul.Backoff(s.opts.MinBackoff, s.opts.MaxBackoff, attempt)
		s.log.Warn("cannot read the proxy service's maintenance mode; retrying", "proxy_id", proxyID, "attempt", attempt,
			"retry_in", delay.Round(time.Millisecond), "error", err)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

func (s *Sidecar) watchIntentions(ctx context.Context, service string, td spiffeid.TrustDomain) error {
	var defaultAllow *bool
	fetch := func(opts *api.QueryOptions) (*policy.Intentions, *api.QueryMeta, error) {
		if defaultAllow == nil {
			allow, err := consul.DefaultAllow(s.client)
			if err != nil {
				return nil, nil, err
			}
			defaultAllow = &allow
		}
		list, meta, err := consul.Intentions(s.client, service)(opts)
		if err != nil {
			return nil, nil, err
		}
		in, err := policy.Compile(service, list, policy.CompileOptions{TrustDomain: td, DefaultAllow: *defaultAllow})
		if err != nil {
			return nil, nil, err
		}
		return in, meta, nil
	}
	w := consul.NewWatch("connect/intentions/match/"+service, fetch, func(in *policy.Intentions) {
		s.authz.Store(in)
		s.log.Info("intentions updated", "service", service, "default_allow", *defaultAllow)
		s.updateReady()
	}, s.watchOpts()...)
	s.authzW.Store(w)
	return w.Run(ctx)
}

// apply makes the listeners match cfg: the public listener is started or
// rebound when its address changes (other fields apply to new connections);
// upstream listeners are added, kept or removed by key.
func (s *Sidecar) apply(ctx context.Context, cfg Config, src mtls.Source, td spiffeid.TrustDomain) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev := s.config.Load()
	s.config.Store(&cfg)

	switch {
	case cfg.Public.BindAddress == "":
		// Egress only (static mode): no public listener.
	case s.inbound == nil || prev == nil || prev.Public.BindAddress != cfg.Public.BindAddress:
		ln, err := net.Listen("tcp", cfg.Public.BindAddress)
		if err != nil {
			s.config.Store(prev)
			return fmt.Errorf("sidecar: public listener: %w", err)
		}
		if s.inbound != nil {
			s.inbound.ln.Close()
			s.inbound.close()
		}
		pub := cfg.Public
		in := newInbound(ln, &pub, s)
		// Every protocol is offered whatever the service's protocol is, so
		// a protocol change never fails handshakes; what the connection
		// carries is decided after the handshake by the current protocol.
		in.tls = mtls.ServerConfig(src, s.authorize(&cfg), []string{mtls.ALPNOutrider, "h2", "http/1.1"})
		if s.opts.PostQuantum {
			in.tls.CurvePreferences = mtls.PostQuantumCurves
		}
		s.inbound = in
		go serve(ln, s.conns, s.overload, s.log, in.handle)
		s.log.Info("public listener up", "address", ln.Addr().String())
	default:
		s.inbound.cfg.Store(&cfg.Public)
	}

	want := map[string]Upstream{}
	for _, u := range cfg.Upstreams {
		want[u.Key()] = u
	}
	for key, r := range s.upstreams {
		if _, ok := want[key]; !ok {
			r.stop()
			delete(s.upstreams, key)
			s.log.Info("upstream listener removed", "upstream", r.out.name(), "address", r.out.cfg.Load().BindAddress)
		}
	}
	var errs []error
	for key, u := range want {
		if r, ok := s.upstreams[key]; ok {
			r.out.setConfig(u)
			continue
		}
		r, err := s.startUpstream(ctx, u, src, td)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.upstreams[key] = r
	}
	s.publishOutbounds()
	if s.inbound != nil {
		if err := s.setGateway(&s.inbound.gw, cfg.Public.Gateway, "public", headerLimits{cfg.Public.MaxHeaders, cfg.Public.MaxHeaderBytes}); err != nil {
			errs = append(errs, fmt.Errorf("sidecar: public listener gateway (the previous one stays): %w", err))
		}
	}
	if err := s.setIngresses(cfg.Ingress); err != nil {
		errs = append(errs, err)
	}
	s.updateReadyLocked()
	return errors.Join(errs...)
}

// StorePolicy replaces the base policy (static mode's rules): new
// connections and every request from now on are decided by it.
func (s *Sidecar) StorePolicy(p policy.Policy) {
	s.authz.Store(p)
	sum := p.Summary()
	s.log.Info("authorization rules loaded", "rules", len(sum.Rules), "default", sum.Default, "dry_run", sum.DryRun)
}

// StoreLocalPolicy replaces the local rules layered over the base policy
// (nil removes them), as a reload of the policy file does.
func (s *Sidecar) StoreLocalPolicy(r *policy.Rules) {
	s.authz.StoreLocal(r)
	if r != nil {
		sum := r.Summary()
		s.log.Info("local authorization rules loaded", "rules", len(sum.Rules), "default", sum.Default, "dry_run", sum.DryRun)
	}
}

func (s *Sidecar) authorize(cfg *Config) mtls.Authorizer {
	service := cfg.Service
	return func(peer spiffeid.ID) error {
		// An HTTP service admits a peer that some rule may allow requests
		// from; each request is then decided on its own. A tcp service
		// decides the connection for good.
		var d policy.Decision
		if c := s.config.Load(); c != nil && c.Public.Protocol.L7() {
			d = s.authz.Admit(peer)
		} else {
			d = s.authz.AuthorizeL4(peer)
		}
		switch {
		case d.DryRun:
			s.metrics.AuthzWouldDeny(d.Rule)
			s.log.Info("dry run: connection would be denied", "service", service, "peer", peer.String(), "rule", d.Rule, "reason", d.Reason)
		default:
			s.metrics.AuthzDecision(d.Allow, d.Rule)
		}
		if !d.Allow {
			s.stat.denied.Add(1)
			return fmt.Errorf("policy: %s denied by %s: %s", peer, d.Rule, d.Reason)
		}
		if s.log.Enabled(context.Background(), slog.LevelDebug) {
			s.log.Debug("connection authorized", "service", service, "peer", peer.String(), "rule", d.Rule)
		}
		return nil
	}
}

func (s *Sidecar) startUpstream(ctx context.Context, u Upstream, src mtls.Source, td spiffeid.TrustDomain) (*upstreamRunner, error) {
	static := len(u.Endpoints) > 0
	if s.client == nil && !static {
		return nil, fmt.Errorf("sidecar: upstream %q is discovered in Consul but no Consul client is configured", u.DestinationName)
	}
	ln, err := net.Listen("tcp", u.BindAddress)
	if err != nil {
		return nil, fmt.Errorf("sidecar: upstream %q listener: %w", u.DestinationName, err)
	}
	out := newOutbound(u, ln, src, s)
	wctx, cancel := context.WithCancel(ctx)
	r := &upstreamRunner{out: out, cancel: cancel, done: make(chan struct{})}
	var wg sync.WaitGroup
	if static {
		out.update(&discovery.Snapshot{Service: u.DestinationName, Endpoints: u.Endpoints, Received: time.Now()})
	} else {
		ids := u.Identities
		if ids == nil {
			ids = consul.ConsulIdentity(td)
		}
		out.watchCtx = wctx
		out.newWatch = func(c *cluster) *consul.Watch[*discovery.Snapshot] {
			name := "health/connect/" + c.key.Service
			if c != out.def() {
				name += " (" + c.name + ")"
			}
			return consul.NewWatch(name, consul.TargetEndpoints(s.client, c.key, ids),
				func(snap *discovery.Snapshot) { out.updateCluster(c, snap) }, s.watchOpts()...)
		}
		def := out.def()
		def.watch = out.newWatch(def)
		r.watch.Store(def.watch)
		wg.Go(func() { def.watch.Run(wctx) })
	}
	switch {
	case u.LoadBalancer != nil:
		out.setLoadBalancer(*u.LoadBalancer)
	case s.client == nil || static:
		// Static endpoints: the protocol's default policy, no chain.
	default:
		cw := consul.NewWatch("discovery-chain/"+u.DestinationName, consul.ChainJSON(s.client, u.DestinationName, u.Datacenter),
			out.applyChain, s.watchOpts()...)
		r.chainW.Store(cw)
		wg.Go(func() { cw.Run(wctx) })
	}
	wg.Go(func() { serve(ln, s.conns, s.overload, s.log, out.handle) })
	go func() { wg.Wait(); close(r.done) }()
	s.log.Info("upstream listener up", "upstream", u.DestinationName, "address", ln.Addr().String(), "static_endpoints", len(u.Endpoints))
	return r, nil
}

// stop closes the upstream listener and its watches; open connections
// keep going until they end or the sidecar drains.
func (r *upstreamRunner) stop() {
	r.stopAccepting()
	r.out.close()
}

// stopAccepting closes the upstream listener and stops its watches; the
// connection pools stay, for the requests of open connections, until
// out.close.
func (r *upstreamRunner) stopAccepting() {
	r.cancel()
	r.out.ln.Close()
	<-r.done
	r.out.eachCluster(func(c *cluster) { c.stop() })
}

func (s *Sidecar) updateReady() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.updateReadyLocked()
}

func (s *Sidecar) updateReadyLocked() {
	cfg := s.config.Load()
	ready := cfg != nil && (s.inbound != nil || cfg.Public.BindAddress == "") && len(s.upstreams) == len(cfg.Upstreams) && s.authz.Load() != nil
	if id := s.currentIdentity(); ready && id != nil {
		select {
		case <-id.Ready():
		default:
			ready = false
		}
	}
	if s.draining.Load() {
		return // shutdown has begun; ready stays false
	}
	if ready && !s.ready.Load() {
		s.log.Info("sidecar ready")
		s.servedOne.Do(func() { close(s.served) })
	}
	s.ready.Store(ready)
}

// shutdown leaves the routing, keeps serving for the drain delay, then
// stops accepting, inbound first, drains connections and stops every
// watch.
func (s *Sidecar) shutdown() {
	s.mu.Lock()
	s.draining.Store(true)
	s.ready.Store(false)
	s.mu.Unlock()
	s.leaveRouting()
	s.mu.Lock()
	// Listeners stop accepting now; the pools their connections' requests
	// use (to the application, to upstream endpoints) close only once
	// those connections have drained: a request read on a keep-alive
	// connection just before the drain began is still answered.
	var app string
	in := s.inbound
	if in != nil {
		in.ln.Close()
		in.h2Server.shutdown()
		app = in.cfg.Load().LocalService
	}
	// From here a request on a peer's keep-alive connection is answered
	// with Connection: close (before, one could slip in between the
	// listener's close and the drain below).
	s.conns.drainInbound()
	// Ingress listeners stop accepting at once; their in-flight requests
	// finish (within the drain timeout) before the upstreams they use
	// close.
	var ingresses sync.WaitGroup
	for name, ig := range s.ingresses {
		ig.stop()
		ingresses.Go(func() { ig.drain(s.opts.DrainTimeout) })
		delete(s.ingresses, name)
	}
	s.mu.Unlock()
	s.waitForApplication(app)
	ingresses.Wait()
	s.mu.Lock()
	var outs []*outbound
	for key, r := range s.upstreams {
		r.stopAccepting()
		r.out.h2Server.shutdown()
		outs = append(outs, r.out)
		delete(s.upstreams, key)
	}
	s.mu.Unlock()
	n := s.conns.count()
	if n > 0 {
		s.log.Info("draining connections", "open", n, "timeout", s.opts.DrainTimeout)
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.DrainTimeout)
	defer cancel()
	if closed := s.conns.drain(ctx); closed > 0 {
		s.log.Warn("drain timeout: closed open connections", "closed", closed)
	}
	if in != nil {
		in.close()
	}
	for _, o := range outs {
		o.close()
	}
	if s.loops != nil {
		s.loops.close()
	}
}

// registerGauges exposes state computed at scrape time: discovery
// freshness, certificate expiry and tracing export counts.
func (s *Sidecar) registerGauges() {
	s.metrics.SetDiscoveryStatus(func() []metrics.WatchStatus {
		var out []metrics.WatchStatus
		add := func(st consul.Status) {
			out = append(out, metrics.WatchStatus{Name: st.Name, LastSuccess: st.LastSuccess, Stale: st.Stale(), Failures: st.Failures})
		}
		if w := s.regW.Load(); w != nil {
			add(w.Status())
		}
		if w := s.authzW.Load(); w != nil {
			add(w.Status())
		}
		s.mu.Lock()
		for _, r := range s.upstreams {
			if w := r.chainW.Load(); w != nil {
				add(w.Status())
			}
			r.out.eachCluster(func(c *cluster) {
				if c.watch != nil {
					add(c.watch.Status())
				}
			})
		}
		s.mu.Unlock()
		return out
	})
	s.metrics.SetHealthyEndpoints(func() []metrics.UpstreamEndpoints {
		var out []metrics.UpstreamEndpoints
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, r := range s.upstreams {
			if !r.out.cfg.Load().HealthCheck.Enabled() {
				continue
			}
			n := 0
			r.out.eachCluster(func(c *cluster) {
				c.mu.Lock()
				if c.checker != nil {
					n += c.checker.Healthy()
				}
				c.mu.Unlock()
			})
			out = append(out, metrics.UpstreamEndpoints{Upstream: r.out.name(), Count: n})
		}
		return out
	})
	s.metrics.SetCertExpiry(func() (time.Time, bool) {
		id := s.currentIdentity()
		if id == nil {
			return time.Time{}, false
		}
		svid, err := id.GetX509SVID()
		if err != nil || len(svid.Certificates) == 0 {
			return time.Time{}, false
		}
		return svid.Certificates[0].NotAfter, true
	})
	s.metrics.SetTracingStats(func() (int64, int64, int64, int64) {
		t := s.tracing.Load()
		if t == nil {
			return 0, 0, 0, 0
		}
		st := t.Stats()
		return st.Started, st.Exported, st.Dropped, st.ExportErrors
	})
}

// startTracing sets up the tracer before any listener starts (listeners
// read s.tel when they are made). A Tracing built here is shut down, its
// queue flushed, when ctx ends.
func (s *Sidecar) startTracing(ctx context.Context, cfg Config, proxyID string) error {
	service := cfg.Service
	t := s.opts.Tracing
	if tc, ok := s.traceConfig(cfg.Tracing); t == nil && ok {
		var err error
		t, err = tracing.New(ctx, tc, service, tracing.WithLogger(s.log), tracing.WithVersion(s.opts.Version),
			tracing.WithAttributes(attribute.String("outrider.proxy_id", proxyID)))
		if err != nil {
			return fmt.Errorf("sidecar: tracing: %w", err)
		}
		context.AfterFunc(ctx, func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			t.Shutdown(sctx)
		})
	}
	if t == nil || !t.Enabled() {
		return nil
	}
	s.tracing.Store(t)
	s.tel.useTracing(t)
	s.log.Info("tracing on", "config", t.Describe())
	return nil
}

// traceConfig merges the process's tracing configuration (OTEL_* and
// flags, which win) with the registration's Proxy.Config keys, and
// reports whether tracing is on.
func (s *Sidecar) traceConfig(reg TracingConfig) (tracing.Config, bool) {
	var tc tracing.Config
	if s.opts.TraceConfig != nil {
		tc = *s.opts.TraceConfig
	} else {
		tc, _ = tracing.FromEnv(func(string) string { return "" }) // the defaults
	}
	if !tc.Enabled && reg.Endpoint != "" {
		tc.Enabled, tc.Endpoint = true, reg.Endpoint
		if reg.Protocol != "" {
			tc.Protocol = reg.Protocol
		}
		if reg.Sampling != nil {
			tc.Sampler, tc.SamplerArg = "parentbased_traceidratio", *reg.Sampling
		}
	}
	return tc, tc.Enabled
}

package sidecar

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/outrider-mesh/outrider/discovery"
	"github.com/outrider-mesh/outrider/discovery/consul"
	"github.com/outrider-mesh/outrider/sidecar/balance"
	"github.com/outrider-mesh/outrider/sidecar/health"
	"github.com/outrider-mesh/outrider/sidecar/route"
)

// cluster is one place an upstream's requests can go: the instances of
// one discovery-chain target (the destination service, a subset of it,
// another service or datacenter), with their balancer. An upstream whose
// chain has no routing has one, its default cluster. The upstream's
// HTTP/1.1 pools are shared by its clusters (they are keyed by address and
// identity), as is its HTTP/2 transport.
type cluster struct {
	// name is the chain's target ID (v2.api.default.default.dc1), or the
	// destination name for the default cluster.
	name string
	key  consul.Target
	// connectTimeout is the service-resolver's ConnectTimeout in
	// nanoseconds; 0 means the upstream's.
	connectTimeout atomic.Int64

	bal *balance.Balancer
	// mu serializes balancer updates from the endpoint and chain watches
	// and the active health checker; snap and lb are the last seen.
	mu   sync.Mutex
	snap *discovery.Snapshot
	lb   balance.Config
	seen atomic.Bool // a first snapshot arrived
	// checker actively checks snap's endpoints (nil: checks off); the
	// balancer gets only the endpoints it passes. stopped is set by stop,
	// after which no checker is started. Both under mu.
	checker *health.Checker
	stopped bool

	watch  *consul.Watch[*discovery.Snapshot] // nil: static endpoints
	cancel context.CancelFunc
	done   chan struct{}
}

func newCluster(o *outbound, name string, key consul.Target) *cluster {
	c := &cluster{name: name, key: key, bal: balance.NewBalancer(balance.RoundRobin)}
	u := o.cfg.Load()
	c.bal.OnEject(func(addr string, d time.Duration) {
		o.tel.metrics.OutlierEjection(u.DestinationName)
		o.log.Warn("endpoint ejected by outlier detection", "upstream", u.DestinationName, "cluster", name, "endpoint", addr, "for", d)
	})
	c.bal.SetOutlier(u.Outlier)
	c.checker = o.newChecker(c, u)
	return c
}

// rebalanceLocked rebuilds the balancer from the latest snapshot (less
// the endpoints the active health check excludes, when it is on), load
// balancer config and protocol (least request is the L7 default, round
// robin the L4 one, as in Envoy). c.mu is held.
func (c *cluster) rebalanceLocked(l7 bool) {
	cfg := c.lb
	if cfg.Policy == "" {
		cfg.Policy = balance.RoundRobin
		if l7 {
			cfg.Policy = balance.LeastRequest
		}
	}
	var excluded map[string]bool
	if c.checker != nil {
		excluded = c.checker.Excluded(c.snap)
	}
	c.bal.UpdateExcluding(c.snap, cfg, excluded)
}

// stop ends the cluster's endpoint watch and active health checks and
// waits for them.
func (c *cluster) stop() {
	if c.cancel != nil {
		c.cancel()
		<-c.done
	}
	c.mu.Lock()
	chk := c.checker
	c.checker, c.stopped = nil, true
	c.mu.Unlock()
	if chk != nil {
		chk.Close() // outside mu: its goroutines may be waiting for it
	}
}

// routing is an upstream's compiled discovery chain and the clusters of
// its targets. It is immutable once published; a chain update publishes a
// new one.
type routing struct {
	table *route.Table // nil: every request goes to def
	def   *cluster
	// clusters are every cluster, def included, by name.
	clusters map[string]*cluster
	// byResolver lists each resolver's clusters: its target, then its
	// failover targets, in order.
	byResolver map[*route.Resolver][]*cluster
	defOnly    []*cluster // [def]
}

// defaultRouting sends everything to def.
func defaultRouting(def *cluster) *routing {
	return &routing{def: def, clusters: map[string]*cluster{def.name: def}, defOnly: []*cluster{def}}
}

// dest is where one request goes: the route and split the chain chose for
// it (nil without routing), and the clusters to pick an endpoint from.
type dest struct {
	rt     *route.Route
	sp     *route.Split
	cs     []*cluster
	hash   uint64
	hashed bool
	cookie *balance.SetCookie
	// deadline is the route's RequestTimeout from the request's start
	// (zero: none).
	deadline time.Time
}

// reset clears d for the next request, keeping nothing that points into
// the previous one.
func (d *dest) reset() { *d = dest{} }

// choose selects the route, split and clusters for a request; r is the
// request as the chain's matches see it. It allocates nothing.
func (rg *routing) choose(d *dest, r *route.Request) {
	d.cs = rg.defOnly
	if rg.table == nil {
		return
	}
	rt := rg.table.Select(r)
	if rt == nil {
		return // no route matches: the default cluster, as Consul's catch-all does
	}
	sp := rt.Pick(rand.Uint32())
	d.rt, d.sp = rt, sp
	if cs := rg.byResolver[sp.Resolver]; len(cs) > 0 {
		d.cs = cs
	}
}

// l4 returns the clusters for a tcp connection: the chain's catch-all route
// (a tcp chain is a resolver, maybe with failover).
func (rg *routing) l4() []*cluster {
	if rg.table == nil || len(rg.table.Routes) == 0 {
		return rg.defOnly
	}
	rt := rg.table.Routes[len(rg.table.Routes)-1]
	if cs := rg.byResolver[rt.Pick(rand.Uint32()).Resolver]; len(cs) > 0 {
		return cs
	}
	return rg.defOnly
}

// pick returns an endpoint of the first cluster of cs that has one not in
// tried and not ejected (failover: the next target is used only when the
// ones before it have no healthy endpoint left). A balancer hands out a
// tried or ejected endpoint rather than none; pick takes such a fallback
// only when no later target has better, and then the first cluster's.
// Without this, a connection refused by the only endpoint of dc1 was
// retried on it, not failed over to dc2, until Consul marked it critical.
func pick(cs []*cluster, hash uint64, hashed bool, tried []string) (*cluster, *balance.Endpoint, error) {
	var (
		fc *cluster
		fb *balance.Endpoint
	)
	for _, c := range cs {
		ep, err := c.bal.Pick(hash, hashed, tried)
		if err != nil {
			continue
		}
		if len(cs) == 1 || !fallback(ep, tried) {
			if fb != nil {
				fb.Done()
			}
			return c, ep, nil
		}
		if fb == nil {
			fc, fb = c, ep
		} else {
			ep.Done()
		}
	}
	if fb != nil {
		return fc, fb, nil
	}
	return nil, nil, balance.ErrNoEndpoint
}

// fallback reports whether ep is one a balancer picks only when it has
// nothing better: tried or ejected.
func fallback(ep *balance.Endpoint, tried []string) bool {
	if slices.Contains(tried, ep.Address) {
		return true
	}
	_, ejected := ep.Ejected()
	return ejected
}

// applyChain compiles a discovery chain and publishes the routing it
// describes: clusters for new targets are created and their watches
// started, clusters for targets no longer used stopped. A chain that does
// not compile is logged and the current routing kept. Called on the chain
// watch's goroutine.
func (o *outbound) applyChain(raw json.RawMessage) {
	var ch route.Chain
	if err := json.Unmarshal(raw, &ch); err != nil {
		o.log.Error("ignoring undecodable discovery chain; keeping the current routing", "upstream", o.name(), "error", err)
		return
	}
	table, err := route.Compile(&ch)
	if err != nil {
		o.log.Error("ignoring invalid discovery chain; keeping the current routing", "upstream", o.name(), "error", err)
		return
	}
	o.chainMu.Lock()
	defer o.chainMu.Unlock()
	old := o.routes.Load()
	def := old.def
	next := &routing{table: table, def: def, clusters: map[string]*cluster{def.name: def},
		byResolver: make(map[*route.Resolver][]*cluster), defOnly: old.defOnly}
	localDC := o.cfg.Load().Datacenter
	byTarget := make(map[*route.Target]*cluster, len(table.Targets))
	var started []*cluster
	for _, t := range table.Targets {
		key := consul.Target{Service: t.Service, Datacenter: t.Datacenter, Filter: t.Filter, OnlyPassing: t.OnlyPassing}
		if localDC == "" && t.Datacenter == ch.Datacenter {
			key.Datacenter = "" // the agent's own, as the default cluster queries it
		}
		var c *cluster
		switch {
		case key == def.key:
			c = def
		case old.clusters[t.ID] != nil && old.clusters[t.ID].key == key:
			c = old.clusters[t.ID]
		default:
			c = newCluster(o, t.ID, key)
			started = append(started, c)
		}
		byTarget[t] = c
		next.clusters[c.name] = c
	}
	// Load-balancer settings and connect timeout: each cluster takes those
	// of the first resolver (by name) that has it as its own target, else
	// of the first that fails over to it.
	lbs := make(map[*cluster]balance.Config)
	assign := func(primary bool) {
		for _, res := range table.Resolvers {
			for i, t := range res.Targets {
				c := byTarget[t]
				if _, done := lbs[c]; done || (i == 0) != primary {
					continue
				}
				cfg, err := balance.FromConsul(res.LoadBalancer)
				if err != nil {
					o.log.Error("ignoring invalid service-resolver LoadBalancer", "upstream", o.name(), "resolver", res.Name, "error", err)
				}
				lbs[c] = cfg
				c.connectTimeout.Store(int64(res.ConnectTimeout))
			}
		}
	}
	assign(true)
	assign(false)
	for _, res := range table.Resolvers {
		cs := make([]*cluster, 0, len(res.Targets))
		for _, t := range res.Targets {
			cs = append(cs, byTarget[t])
		}
		next.byResolver[res] = cs
	}
	if trivial(table, next) {
		// One route, one split, to the default cluster, with nothing to
		// apply: requests skip route matching, as without a chain.
		next.table = nil
	}
	l7 := o.cfg.Load().Protocol.L7()
	for c, cfg := range lbs {
		c.mu.Lock()
		c.lb = cfg
		c.rebalanceLocked(l7)
		c.mu.Unlock()
	}
	for _, c := range started {
		o.startCluster(c)
	}
	o.routes.Store(next)
	for name, c := range old.clusters {
		if next.clusters[name] != c {
			c.stop()
		}
	}
	o.refreshEndpoints()
	if len(started) > 0 || len(old.clusters) != len(next.clusters) {
		names := make([]string, 0, len(next.clusters))
		for name := range next.clusters {
			names = append(names, name)
		}
		slices.Sort(names)
		o.log.Info("upstream routing updated", "upstream", o.name(), "routes", len(table.Routes), "clusters", names)
	}
}

// startCluster starts c's endpoint watch under the upstream's context.
func (o *outbound) startCluster(c *cluster) {
	if o.newWatch == nil {
		return
	}
	ctx, cancel := context.WithCancel(o.watchCtx)
	c.cancel, c.done = cancel, make(chan struct{})
	c.watch = o.newWatch(c)
	go func() {
		defer close(c.done)
		c.watch.Run(ctx)
	}()
}

// updateCluster publishes a new snapshot of c's endpoints; called on c's
// watch goroutine.
func (o *outbound) updateCluster(c *cluster, snap *discovery.Snapshot) {
	c.mu.Lock()
	c.snap = snap
	if c.checker != nil {
		c.checker.Update(snap)
	}
	c.rebalanceLocked(o.cfg.Load().Protocol.L7())
	c.mu.Unlock()
	c.seen.Store(true)
	o.refreshEndpoints()
	o.log.Info("upstream endpoints updated", "upstream", o.name(), "cluster", c.name, "endpoints", len(snap.Endpoints), "index", snap.Index)
}

// refreshEndpoints recomputes what the clusters' endpoints share: the
// identity of each address (for the HTTP/2 dialer) and the HTTP/1.1 pools
// to keep.
func (o *outbound) refreshEndpoints() {
	o.epMu.Lock()
	defer o.epMu.Unlock()
	ids := make(map[string]spiffeid.ID)
	keep := make(map[poolKey]bool)
	for _, c := range o.routes.Load().clusters {
		c.mu.Lock()
		snap := c.snap
		c.mu.Unlock()
		if snap == nil {
			continue
		}
		for _, e := range snap.Endpoints {
			ids[e.Address] = e.Identity
			keep[poolKey{e.Address, e.Identity}] = true
		}
	}
	o.ids.Store(&ids)
	o.h1.retain(keep)
}

// eachCluster calls f for every current cluster, sorted by name (the
// default cluster first).
func (o *outbound) eachCluster(f func(*cluster)) {
	rg := o.routes.Load()
	cs := make([]*cluster, 0, len(rg.clusters))
	for _, c := range rg.clusters {
		cs = append(cs, c)
	}
	slices.SortFunc(cs, func(a, b *cluster) int {
		if (a == rg.def) != (b == rg.def) {
			if a == rg.def {
				return -1
			}
			return 1
		}
		return cmp.Compare(a.name, b.name)
	})
	for _, c := range cs {
		f(c)
	}
}

// describeTarget names a cluster's selection for logs and dumps.
func describeTarget(k consul.Target) string {
	s := k.Service
	if k.Datacenter != "" {
		s += " in " + k.Datacenter
	}
	if k.Filter != "" {
		s += fmt.Sprintf(" where %s", k.Filter)
	}
	return s
}

// dumpRoutes describes the routes for /config_dump.
func (rg *routing) dumpRoutes() []RouteDump {
	if rg.table == nil {
		return nil
	}
	out := make([]RouteDump, 0, len(rg.table.Routes))
	for _, rt := range rg.table.Routes {
		rd := RouteDump{Name: rt.Name, PrefixRewrite: rt.PrefixRewrite, RequestTimeout: rt.RequestTimeout, NumRetries: rt.Retry.NumRetries}
		for _, sp := range rt.Splits {
			sd := SplitDump{Weight: sp.Weight}
			for _, c := range rg.byResolver[sp.Resolver] {
				sd.Clusters = append(sd.Clusters, c.name)
			}
			rd.Splits = append(rd.Splits, sd)
		}
		out = append(out, rd)
	}
	return out
}

// trivial reports whether table sends everything to the default cluster
// alone and changes nothing on the way (Consul's default chain).
func trivial(table *route.Table, rg *routing) bool {
	if len(table.Routes) != 1 {
		return false
	}
	rt := table.Routes[0]
	if len(rt.Splits) != 1 || rt.PrefixRewrite != "" || rt.RequestTimeout != 0 || rt.IdleTimeout != 0 || rt.Retry.Enabled() ||
		!rt.RequestHeaders.IsZero() || !rt.ResponseHeaders.IsZero() {
		return false
	}
	sp := rt.Splits[0]
	cs := rg.byResolver[sp.Resolver]
	return sp.RequestHeaders.IsZero() && sp.ResponseHeaders.IsZero() && len(cs) == 1 && cs[0] == rg.def
}

// newChecker returns the active health checker of c under u (nil when
// u's checks are off). Its transitions are logged and rebalance c; its
// results are counted.
func (o *outbound) newChecker(c *cluster, u *Upstream) *health.Checker {
	if !u.HealthCheck.Enabled() {
		return nil
	}
	upstream := u.DestinationName
	t := health.Transport{HTTP1: o.probeH1, HTTP2: o.probeH2, UseHTTP2: u.Protocol == HTTP2 || u.Protocol == GRPC, Host: upstream}
	var chk *health.Checker
	chk = health.New(u.HealthCheck, health.NewProber(u.HealthCheck, t),
		health.OnResult(func(r health.Result) { o.tel.metrics.HealthCheck(upstream, r.String()) }),
		health.OnChange(func(ch health.Change) {
			attrs := []any{"upstream", upstream, "cluster", c.name, "endpoint", ch.Endpoint.Address, "from", ch.From.String(), "to", ch.To.String()}
			if ch.To == health.Unhealthy {
				o.log.Warn("endpoint failed its active health check", append(attrs, "reason", ch.Reason)...)
			} else {
				o.log.Info("endpoint passed its active health check", attrs...)
			}
			c.mu.Lock()
			if c.checker == chk { // not replaced or stopped meanwhile
				c.rebalanceLocked(o.cfg.Load().Protocol.L7())
			}
			c.mu.Unlock()
		}))
	return chk
}

// restartHealth replaces c's active health checker with one for the
// upstream's current configuration (none when checks are off); the new
// one starts with every endpoint pending. Called when the configuration
// changes.
func (o *outbound) restartHealth(c *cluster) {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return
	}
	old := c.checker
	c.checker = o.newChecker(c, o.cfg.Load())
	if c.checker != nil {
		c.checker.Update(c.snap)
	}
	c.rebalanceLocked(o.cfg.Load().Protocol.L7())
	c.mu.Unlock()
	if old != nil {
		old.Close() // outside mu: its goroutines may be waiting for it
	}
}

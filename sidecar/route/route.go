package route

import (
	"time"

	"github.com/hashicorp/consul/api"
)

// Table is a compiled discovery chain: what one upstream's HTTP requests
// are routed by. It is immutable once Compile returns it, so request
// goroutines read it concurrently without locks; a new chain compiles to a
// new Table, which the owner publishes (e.g. with atomic.Pointer).
type Table struct {
	// Routes are the router's routes in chain order; a chain without a
	// router compiles to one catch-all route. Consul always ends a router
	// with a catch-all (PathPrefix "/"), but Select returns nil when no
	// route matches (a path that does not start with "/").
	Routes []*Route
	// Resolvers are the resolvers any route can send to, once each, sorted
	// by Name.
	Resolvers []*Resolver
	// Targets are every target a resolver can send to (primary and
	// failover), once each, sorted by ID.
	Targets []*Target
	// Protocol is the chain's protocol ("http", "http2", "grpc", ...).
	Protocol string
}

// Route is one route: the match that selects it and where and how the
// request is sent.
type Route struct {
	// Name is "<router node>#<index>" (e.g.
	// "router:api.default.default#0") or, for the catch-all route of a
	// chain without a router, the start node's key (e.g.
	// "resolver:api.default.default.dc1"): for logs, metrics and config
	// dumps.
	Name string
	// Splits are where the request may go; a route always has at least one.
	// Pick chooses one.
	Splits []*Split
	// PrefixRewrite replaces the matched path prefix, or the whole path of
	// a PathExact route; "" leaves the path alone. Rewrite applies it.
	PrefixRewrite string
	// RequestTimeout bounds the whole request, retries included. 0: the
	// route sets none, and the caller's default applies (Envoy's is 15s);
	// negative: no timeout (Consul gives Envoy 0, which disables it).
	// From the router destination, or for a chain that starts with a
	// resolver, from that resolver's RequestTimeout.
	RequestTimeout time.Duration
	// IdleTimeout bounds how long the request's stream may be idle. 0: the
	// route sets none; negative: no timeout.
	IdleTimeout time.Duration
	// Retry is the route's retry policy; the zero value retries nothing.
	Retry RetryPolicy
	// RequestHeaders and ResponseHeaders are the router destination's
	// header modifiers. A split's own modifiers apply before the route's
	// (ApplyRequest, ApplyResponse), so the route's Set wins, as in Envoy.
	RequestHeaders, ResponseHeaders Modifiers
	// LoadBalancer is the LoadBalancer of the node the route leads to (the
	// splitter or resolver). Consul turns its HashPolicies into the route's
	// hash policy: what Envoy hashes the request with. Each Resolver's
	// LoadBalancer says how its endpoints are picked.
	LoadBalancer *api.LoadBalancer

	match matcher
	// rewriteLen is how much of a matched path PrefixRewrite replaces: the
	// PathPrefix's length, or -1 for a PathExact (all of it).
	rewriteLen int
	total      uint32 // sum of the split weights
}

// Split is one weighted destination of a route.
type Split struct {
	// Weight is the split's share in hundredths of a percent (Consul's
	// weights, floats with two decimals, rounded to hundredths). The
	// weights of a route's splits add up to 10000 when Consul validated
	// the splitter, but Pick only needs them to add up to more than 0.
	Weight uint32
	// Resolver is where the split sends the request.
	Resolver *Resolver
	// RequestHeaders and ResponseHeaders are the split's own header
	// modifiers (service-splitter Splits[i].RequestHeaders).
	RequestHeaders, ResponseHeaders Modifiers
}

// Resolver is a resolver node: the targets a request is sent to, in
// failover order.
type Resolver struct {
	// Name is the node's name, e.g. "v1.api.default.default.dc1" (its key
	// in Chain.Nodes is "resolver:" + Name).
	Name string
	// Targets are the primary target first, then Failover.Targets in
	// order.
	Targets []*Target
	// ConnectTimeout is the resolver's, else its primary target's; 0 when
	// neither sets one (Envoy's default is 5s).
	ConnectTimeout time.Duration
	// LoadBalancer is the resolver node's LoadBalancer block; nil means
	// the caller's default policy.
	LoadBalancer *api.LoadBalancer
}

// Target is a set of service instances: a service, a subset filter and a
// datacenter.
type Target struct {
	// ID is the chain's target ID, e.g. "v1.api.default.default.dc1".
	ID                                                       string
	Service, ServiceSubset, Namespace, Partition, Datacenter string
	// Peer is the cluster peer the service is imported from, "" for none.
	Peer string
	// Filter is the subset's catalog filter expression (bexpr, e.g.
	// "Service.Meta.version == v1"); "" selects every instance.
	Filter string
	// OnlyPassing keeps only instances whose checks all pass (warning
	// excluded).
	OnlyPassing bool
	// ConnectTimeout is the target's own, from its service's resolver.
	ConnectTimeout time.Duration
	// SNI is the server name Envoy would present to the target's
	// instances.
	SNI string
}

// Request is what routes match on. The caller fills one per request,
// typically reusing a value; Select keeps no reference to it.
type Request struct {
	// Method is the method as sent; methods match case-sensitively (Consul
	// upper-cases the router's methods).
	Method string
	// Path is the request path without the query, as sent on the wire
	// (not unescaped).
	Path string
	// RawQuery is the query without the "?" (url.URL.RawQuery).
	RawQuery string
	// Header looks up request header fields; nil means none.
	Header Headers
}

// Headers looks up request header fields.
type Headers interface {
	// Header returns the first value of the fields named name (ASCII
	// case-insensitive; name is in canonical form, as
	// textproto.CanonicalMIMEHeaderKey gives it) and how many fields
	// carry that name, as policy.Headers does.
	Header(name string) (value string, n int)
	// Joined returns the values of all fields named name joined with
	// ",". Select calls it only after Header reported more than one
	// field: Envoy matches a repeated header on the joined value.
	Joined(name string) string
}

// Select returns the first route whose match holds for r, nil if none.
// It does not allocate, except for what Headers.Joined does for a
// repeated header.
func (t *Table) Select(r *Request) *Route {
	for _, rt := range t.Routes {
		if rt.match.matches(r) {
			return rt
		}
	}
	return nil
}

// Pick chooses a split by weight. rnd is uniform in [0, 2^32) (e.g.
// rand.Uint32()); the same rnd always picks the same split: with
// cumulative weights c_0 = 0 < ... < c_n = total, split i is picked for
// rnd*total/2^32 in [c_i, c_i+1). A split of weight 0 is never picked.
func (rt *Route) Pick(rnd uint32) *Split {
	if len(rt.Splits) == 1 {
		return rt.Splits[0]
	}
	x := uint32(uint64(rnd) * uint64(rt.total) >> 32)
	for _, s := range rt.Splits {
		if x < s.Weight {
			return s
		}
		x -= s.Weight
	}
	return rt.Splits[len(rt.Splits)-1] // not reached: x < total
}

// Rewrite applies PrefixRewrite to path (without the query) as Envoy's
// prefix_rewrite does: the part the route matched (its PathPrefix, or the
// whole path for PathExact) is replaced, the rest kept ("/v2/" -> "/"
// turns "/v2/users" into "/users"; a trailing slash in one but not the
// other gives "//" or a missing "/", as in Envoy). It returns path
// unchanged when the route has no rewrite or path is not one the route
// matched. Compile rejects PrefixRewrite on a PathRegex route, as Consul
// does, and one that does not start with "/".
func (rt *Route) Rewrite(path string) string {
	if rt.PrefixRewrite == "" {
		return path
	}
	if !rt.match.path.Matches(path) {
		return path
	}
	if rt.rewriteLen < 0 {
		return rt.PrefixRewrite
	}
	return rt.PrefixRewrite + path[rt.rewriteLen:]
}

// ApplyRequest applies the request header modifiers of split s (which Pick
// returned for rt; nil for none) and then of the route, Envoy's order:
// weighted cluster, then route.
func (rt *Route) ApplyRequest(s *Split, h HeaderEditor) {
	if s != nil {
		s.RequestHeaders.Apply(h)
	}
	rt.RequestHeaders.Apply(h)
}

// ApplyResponse applies the response header modifiers of split s (nil for
// none) and then of the route, Envoy's order.
func (rt *Route) ApplyResponse(s *Split, h HeaderEditor) {
	if s != nil {
		s.ResponseHeaders.Apply(h)
	}
	rt.ResponseHeaders.Apply(h)
}

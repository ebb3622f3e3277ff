package gateway

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"go.opentelemetry.io/otel/trace"

	"github.com/outrider-mesh/outrider/gateway/aggregate"
	"github.com/outrider-mesh/outrider/gateway/cache"
	"github.com/outrider-mesh/outrider/gateway/clientip"
	"github.com/outrider-mesh/outrider/gateway/compress"
	"github.com/outrider-mesh/outrider/gateway/filter"
	"github.com/outrider-mesh/outrider/gateway/ratelimit"
	"github.com/outrider-mesh/outrider/gateway/reqinfo"
	"github.com/outrider-mesh/outrider/internal/confval"
	"github.com/outrider-mesh/outrider/internal/httpmatch"
)

// Config is the gateway section of a listener: the static file's
// gateway (sidecar role) or ingress.listeners[i].gateway (ingress role),
// or Proxy.Config gateway for Consul users. The zero value is off.
type Config struct {
	// TrustedProxies are the addresses (CIDR prefixes or single
	// addresses) of proxies in front of this listener whose
	// X-Forwarded-For entries are believed when finding a client's
	// address, for client_ip rate-limit keys and the filter's CIDR lists. Empty: the
	// client is the TCP peer and X-Forwarded-For is ignored.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// Redis is the server global rate limits share (see
	// gateway/ratelimit); required by a limit with scope global.
	Redis *ratelimit.RedisConfig `yaml:"redis"`
	// CacheSize bounds the response cache the listener's routes share
	// (their cache sections turn caching on), in bytes of headers and
	// bodies, least recently used evicted first. Default 64MiB.
	CacheSize confval.ByteSize `yaml:"cache_size"`
	// Aggregate declares composite endpoints, each fanning out to several
	// upstream calls whose JSON answers are merged (gateway/aggregate).
	// A route whose match covers an endpoint's path applies its features
	// to it too.
	Aggregate aggregate.Config `yaml:"aggregate"`
	// Routes are tried in order; the first whose match fits a request
	// applies its features. A request no route matches is proxied with
	// none.
	Routes []Route `yaml:"routes"`
}

// Route is one gateway route: a match and the features applied to the
// requests it matches.
type Route struct {
	// Name labels the route in metrics, logs and the access log's rule;
	// default "route<i>" by position.
	Name string `yaml:"name"`
	// Match selects requests; empty matches every request.
	Match Match `yaml:"match"`
	// RateLimit is the route's token-bucket limits (gateway/ratelimit).
	RateLimit ratelimit.Config `yaml:"rate_limit"`
	// Cache is the route's response caching (gateway/cache, RFC 9111).
	Cache cache.Config `yaml:"cache"`
	// Compress is the route's response compression and request
	// decompression (gateway/compress).
	Compress compress.Config `yaml:"compress"`
	// Filter is the route's security filtering (gateway/filter): client
	// CIDR lists, size limits, CORS, response header edits. It runs
	// first: a request it refuses takes no rate-limit token and is
	// neither cached nor forwarded.
	Filter filter.Config `yaml:"filter"`
}

// DefaultCacheSize is the shared cache's bound when cache_size is unset.
const DefaultCacheSize = 64 << 20

// Match selects requests by path (as normalized by the authorization
// layer) and method.
type Match struct {
	// PathExact, PathPrefix and PathRegex (RE2, whole path): at most one.
	PathExact  string `yaml:"path_exact"`
	PathPrefix string `yaml:"path_prefix"`
	PathRegex  string `yaml:"path_regex"`
	// Methods, upper case; empty matches every method.
	Methods []string `yaml:"methods"`
}

// Enabled reports whether c configures anything.
func (c *Config) Enabled() bool {
	return c != nil && (len(c.Routes) > 0 || len(c.Aggregate.Endpoints) > 0)
}

// Validate reports every problem, with paths relative to Config.
func (c Config) Validate() error {
	var errs []error
	if _, err := clientip.New(c.TrustedProxies); err != nil {
		errs = append(errs, confval.Prefix("trusted_proxies", confval.Errorf("", "%v", err)))
	}
	names := map[string]int{}
	for i, r := range c.Routes {
		at := fmt.Sprintf("routes[%d]", i)
		if r.Name != "" {
			if j, dup := names[r.Name]; dup {
				errs = append(errs, confval.Errorf(at+".name", "%q is also the name of routes[%d]", r.Name, j))
			}
			names[r.Name] = i
		}
		if _, err := r.Match.compile(); err != nil {
			errs = append(errs, confval.Prefix(at+".match", err))
		}
		if err := r.RateLimit.Validate(); err != nil {
			errs = append(errs, confval.Prefix(at+".rate_limit", err))
		}
		if err := r.Cache.Validate(); err != nil {
			errs = append(errs, confval.Prefix(at+".cache", err))
		}
		if err := r.Compress.Validate(); err != nil {
			errs = append(errs, confval.Prefix(at+".compress", err))
		}
		if err := r.Filter.Validate(); err != nil {
			errs = append(errs, confval.Prefix(at+".filter", err))
		}
		for j, l := range r.RateLimit.Limits {
			if l.Scope == ratelimit.ScopeGlobal && c.Redis == nil {
				errs = append(errs, confval.Errorf(fmt.Sprintf("%s.rate_limit.limits[%d].scope", at, j), "global needs the gateway's redis section"))
			}
		}
	}
	if c.CacheSize < 0 {
		errs = append(errs, confval.Errorf("cache_size", "negative"))
	}
	if err := c.Aggregate.Validate(); err != nil {
		errs = append(errs, confval.Prefix("aggregate", err))
	}
	if c.Redis != nil {
		if err := c.Redis.Validate(); err != nil {
			errs = append(errs, confval.Prefix("redis", err))
		}
	}
	return errors.Join(errs...)
}

// compiled is a Match ready to test requests.
type compiled struct {
	path    httpmatch.Path
	methods []string
}

func (m Match) compile() (compiled, error) {
	p, err := httpmatch.CompilePath(httpmatch.PathSpec{Exact: m.PathExact, Prefix: m.PathPrefix, Regex: m.PathRegex})
	if err != nil {
		var pe *httpmatch.PathError
		field := ""
		if errors.As(err, &pe) {
			field = map[string]string{"PathExact": "path_exact", "PathPrefix": "path_prefix", "PathRegex": "path_regex"}[pe.Field]
		}
		return compiled{}, confval.Errorf(field, "%v", err)
	}
	var errs []error
	for i, meth := range m.Methods {
		if meth == "" || strings.ToUpper(meth) != meth || strings.ContainsAny(meth, " \t/") {
			errs = append(errs, confval.Errorf(fmt.Sprintf("methods[%d]", i), "%q is not an upper-case HTTP method", meth))
		}
	}
	return compiled{path: p, methods: m.Methods}, errors.Join(errs...)
}

func (m *compiled) matches(r *http.Request) bool { return m.fits(r.Method, r.URL.Path) }

func (m *compiled) fits(method, path string) bool {
	return m.path.Matches(path) && (len(m.methods) == 0 || slices.Contains(m.methods, method))
}

// Gateway is a listener's compiled gateway: immutable, safe for
// concurrent use. A new configuration builds a new Gateway, which the
// listener swaps in; Close releases the old one's shared state.
type Gateway struct {
	routes []route
	next   http.Handler
	log    *slog.Logger
	redis  *ratelimit.Redis
	agg    *aggregate.Aggregator // nil: no composite endpoints
}

type route struct {
	name    string
	match   compiled
	handler http.Handler
	cors    bool // its filter answers CORS preflights
}

// Option configures New.
type Option func(*options)

type options struct {
	name     string
	log      *slog.Logger
	metrics  *Metrics
	resolve  func(string) (http.Handler, bool)
	tracer   trace.Tracer
	upstream []string
}

// WithUpstreams gives the handlers composite endpoints call: resolve
// returns the handler of a named upstream; names are the known ones,
// checked when the gateway is built.
func WithUpstreams(resolve func(name string) (http.Handler, bool), names []string) Option {
	return func(o *options) { o.resolve, o.upstream = resolve, names }
}

// WithTracer gives composite endpoints a tracer for their spans.
func WithTracer(t trace.Tracer) Option { return func(o *options) { o.tracer = t } }

// WithName names the listener in the shared cache's metrics.
func WithName(name string) Option { return func(o *options) { o.name = name } }

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithMetrics records the features' metrics, labelled by route name.
func WithMetrics(m *Metrics) Option { return func(o *options) { o.metrics = m } }

// Metrics are the gateway features' collectors, registered once per
// process.
type Metrics struct {
	rateLimit *ratelimit.Metrics
	compress  *compress.Metrics
	aggregate *aggregate.Metrics
	cache     *cache.Metrics
	filter    *filter.Metrics
}

// NewMetrics registers every feature's collectors with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	return &Metrics{rateLimit: ratelimit.NewMetrics(reg), compress: compress.NewMetrics(reg),
		aggregate: aggregate.NewMetrics(reg), cache: cache.NewMetrics(reg), filter: filter.NewMetrics(reg)}
}

// New compiles cfg in front of next, the listener's proxy handler.
func New(cfg Config, next http.Handler, opts ...Option) (*Gateway, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	o := options{log: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		opt(&o)
	}
	g := &Gateway{next: next, log: o.log}
	resolver, _ := clientip.New(cfg.TrustedProxies)
	if cfg.Redis != nil {
		r, err := ratelimit.NewRedis(*cfg.Redis)
		if err != nil {
			return nil, confval.Prefix("redis", err)
		}
		g.redis = r
	}
	if len(cfg.Aggregate.Endpoints) > 0 {
		if o.resolve == nil {
			g.Close()
			return nil, confval.Errorf("aggregate", "composite endpoints need upstreams to call")
		}
		aOpts := []aggregate.Option{aggregate.WithResolver(o.resolve), aggregate.WithUpstreams(o.upstream),
			aggregate.WithLogger(o.log.With("feature", "aggregate"))}
		if o.tracer != nil {
			aOpts = append(aOpts, aggregate.WithTracer(o.tracer))
		}
		if o.metrics != nil {
			aOpts = append(aOpts, aggregate.WithMetrics(o.metrics.aggregate, "aggregate"))
		}
		agg, err := aggregate.New(cfg.Aggregate, aOpts...)
		if err != nil {
			g.Close()
			return nil, confval.Prefix("aggregate", err)
		}
		// Composite endpoints sit innermost: routes apply their features
		// to them as to any request.
		next = agg.Wrap(next)
		g.next, g.agg = next, agg
	}
	var store *cache.Store
	for _, rc := range cfg.Routes {
		if rc.Cache.Enabled && store == nil {
			size := cmp.Or(cfg.CacheSize, DefaultCacheSize)
			var sOpts []cache.StoreOption
			if o.metrics != nil {
				sOpts = append(sOpts, cache.WithStoreMetrics(o.metrics.cache, o.name))
			}
			store = cache.NewStore(size, sOpts...)
		}
	}
	for i, rc := range cfg.Routes {
		m, _ := rc.Match.compile()
		name := rc.Name
		if name == "" {
			name = fmt.Sprintf("route%d", i)
		}
		// Built inside out: the filter is outermost (what it refuses costs
		// nothing further: no token, no cache lookup), then the rate limit
		// (it refuses before anything is read or fetched), compression
		// innermost (nearest the upstream, so a cache above it stores
		// encoded variants by Vary).
		h := next
		cOpts := []compress.Option{compress.WithLogger(o.log.With("route", name))}
		if o.metrics != nil {
			cOpts = append(cOpts, compress.WithMetrics(o.metrics.compress, name))
		}
		cz, err := compress.New(rc.Compress, cOpts...)
		if err != nil {
			g.Close()
			return nil, confval.Prefix(fmt.Sprintf("routes[%d].compress", i), err)
		}
		h = cz.Wrap(h)
		chOpts := []cache.Option{cache.WithStore(store), cache.WithLogger(o.log.With("route", name))}
		if o.metrics != nil {
			chOpts = append(chOpts, cache.WithMetrics(o.metrics.cache, name))
		}
		ch, err := cache.New(rc.Cache, chOpts...)
		if err != nil {
			g.Close()
			return nil, confval.Prefix(fmt.Sprintf("routes[%d].cache", i), err)
		}
		h = ch.Wrap(h)
		rlOpts := []ratelimit.Option{ratelimit.WithLogger(o.log.With("route", name)), ratelimit.WithClientIP(resolver)}
		if g.redis != nil {
			rlOpts = append(rlOpts, ratelimit.WithRedis(g.redis))
		}
		if o.metrics != nil {
			rlOpts = append(rlOpts, ratelimit.WithMetrics(o.metrics.rateLimit, name))
		}
		rl, err := ratelimit.New(rc.RateLimit, rlOpts...)
		if err != nil {
			g.Close()
			return nil, confval.Prefix(fmt.Sprintf("routes[%d].rate_limit", i), err)
		}
		h = rl.Wrap(h)
		fOpts := []filter.Option{filter.WithLogger(o.log.With("route", name)), filter.WithClientIP(resolver)}
		if o.metrics != nil {
			fOpts = append(fOpts, filter.WithMetrics(o.metrics.filter, name))
		}
		fl, err := filter.New(rc.Filter, fOpts...)
		if err != nil {
			g.Close()
			return nil, confval.Prefix(fmt.Sprintf("routes[%d].filter", i), err)
		}
		h = fl.Wrap(h)
		g.routes = append(g.routes, route{name: name, match: m, handler: h, cors: fl.AnswersPreflights()})
	}
	return g, nil
}

// ServeHTTP applies the first matching route's features and proxies
// through next. The sidecar has attached a reqinfo.Info to the request's
// context; the route's name is recorded in it.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	for i := range g.routes {
		rt := &g.routes[i]
		if rt.match.matches(r) {
			if info := reqinfo.From(r.Context()); info != nil {
				named := *info
				named.Route = rt.name
				r = r.WithContext(reqinfo.With(r.Context(), &named))
			}
			rt.handler.ServeHTTP(w, r)
			return
		}
	}
	g.next.ServeHTTP(w, r)
}

// Handles reports whether a request with method and (normalized) path
// gets any of the gateway's features: a route matches it or it is a
// composite endpoint's. Others ServeHTTP only passes to next, so a
// listener may proxy them without the gateway.
func (g *Gateway) Handles(method, path string) bool {
	if g.agg != nil && g.agg.Serves(path) {
		return true
	}
	for i := range g.routes {
		if g.routes[i].match.fits(method, path) {
			return true
		}
	}
	return false
}

// AnswersPreflight reports whether the gateway answers a CORS preflight
// for path itself, never passing it on: the first route that matches
// OPTIONS on path has CORS configured. A listener may serve such a
// preflight without authorizing it (a browser sends no credentials with
// one, as Envoy's jwt_authn bypass_cors_preflight assumes); it must then
// serve it with this Gateway, not one swapped in since.
func (g *Gateway) AnswersPreflight(path string) bool {
	for i := range g.routes {
		if rt := &g.routes[i]; rt.match.fits(http.MethodOptions, path) {
			return rt.cors
		}
	}
	return false
}

// Close releases shared state (Redis connections); it is safe to call
// while requests still run on g, and more than once.
func (g *Gateway) Close() error {
	if g.redis != nil {
		return g.redis.Close()
	}
	return nil
}

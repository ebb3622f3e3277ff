package cache

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outrider-mesh/outrider/gateway/reqinfo"
)

// passTTL is how long a key whose response could not be stored is
// fetched without coalescing (Varnish's hit-for-miss), so concurrent
// requests for an uncacheable resource do not queue behind each other.
const passTTL = 30 * time.Second

// Cache is one route's caching middleware over a shared Store. It is
// immutable and safe for concurrent use.
type Cache struct {
	cfg       Config
	store     *Store
	keyer     keyer
	maxObject int64
	unkeyed   []string
	xcache    string
	now       func() time.Time
	log       *slog.Logger
	lookups   [numResults]prometheus.Counter
	flights   flights
}

// Option configures New.
type Option func(*Cache)

// WithStore sets the store the route's responses go to, shared with the
// other routes of the listener. Required when the route is enabled.
func WithStore(s *Store) Option { return func(c *Cache) { c.store = s } }

// WithLogger sets the logger for background revalidation failures.
func WithLogger(l *slog.Logger) Option {
	return func(c *Cache) {
		if l != nil {
			c.log = l
		}
	}
}

// WithMetrics counts lookups in m under the label route. A nil m is no
// metrics.
func WithMetrics(m *Metrics, route string) Option {
	return func(c *Cache) {
		if m == nil {
			return
		}
		for i, name := range resultNames {
			c.lookups[i] = m.lookups.WithLabelValues(route, name)
		}
	}
}

// WithClock replaces time.Now for freshness and age (tests).
func WithClock(now func() time.Time) Option {
	return func(c *Cache) {
		if now != nil {
			c.now = now
		}
	}
}

// result is what the cache did with one request.
type result int

const (
	hit result = iota
	miss
	stale
	revalidated
	bypass
	uncacheable
	numResults
)

var (
	resultNames  = [numResults]string{resultHit, resultMiss, resultStale, resultRevalidated, resultBypass, resultUncacheable}
	xcacheValues = [numResults][]string{{"HIT"}, {"MISS"}, {"STALE"}, {"REVALIDATED"}, {"BYPASS"}, {"MISS"}}
)

// New validates cfg and builds the route's cache.
func New(cfg Config, opts ...Option) (*Cache, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Cache{
		cfg:       cfg,
		keyer:     newKeyer(cfg.Key),
		maxObject: int64(cfg.MaxObjectSize),
		unkeyed:   cfg.unkeyedList(),
		xcache:    http.CanonicalHeaderKey(cfg.XCacheHeader),
		now:       time.Now,
		log:       slog.New(slog.DiscardHandler),
		flights:   flights{m: map[string]chan struct{}{}},
	}
	if c.maxObject == 0 {
		c.maxObject = defaultMaxObjectSize
	}
	for _, o := range opts {
		o(c)
	}
	if cfg.Enabled && c.store == nil {
		return nil, errors.New("cache: enabled without a store (pass WithStore)")
	}
	return c, nil
}

// Wrap returns the caching middleware in front of next, or next itself
// when the route's caching is off.
func (c *Cache) Wrap(next http.Handler) http.Handler {
	if !c.cfg.Enabled {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { c.serve(w, r, next) })
}

func (c *Cache) count(res result) {
	if m := c.lookups[res]; m != nil {
		m.Inc()
	}
}

func (c *Cache) setX(h http.Header, res result) {
	if c.xcache != "" {
		h[c.xcache] = xcacheValues[res]
	}
}

func (c *Cache) serve(w http.ResponseWriter, r *http.Request, next http.Handler) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		switch r.Method {
		case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
			sw := &statusWriter{ResponseWriter: w}
			next.ServeHTTP(sw, r)
			if sw.status < 400 {
				key, _, _ := c.keyer.key(r)
				c.store.invalidate(key)
			}
		default:
			next.ServeHTTP(w, r)
		}
		return
	}
	rcc := requestDirectives(r.Header)
	if rcc.noStore || r.Header["Range"] != nil || r.Header["Upgrade"] != nil {
		c.setX(w.Header(), bypass)
		c.count(bypass)
		next.ServeHTTP(w, r)
		return
	}
	key, fwdQuery, changed := c.keyer.key(r)
	now := c.now()
	e, pass := c.store.lookup(key, r.Header, now)
	if e != nil && c.usable(e, rcc, now) {
		c.write(w, r, e, now, hit)
		c.count(hit)
		return
	}
	if rcc.onlyIfCache {
		c.count(miss)
		c.setX(w.Header(), miss)
		http.Error(w, "not in cache (only-if-cached)", http.StatusGatewayTimeout)
		return
	}
	f := &fetch{r: r, key: key, query: fwdQuery, changed: changed, stale: e, rcc: rcc}
	if e != nil && c.staleWhileRevalidate(e, rcc, now) {
		c.refreshInBackground(next, f)
		c.write(w, r, e, now, stale)
		c.count(stale)
		return
	}
	if pass || c.hasUnkeyed(r.Header) {
		c.count(c.fetch(w, next, f))
		return
	}
	done, leader := c.flights.acquire(key)
	if leader {
		res := func() result {
			defer c.flights.release(key, done)
			return c.fetch(w, next, f)
		}()
		c.count(res)
		return
	}
	select {
	case <-done:
	case <-r.Context().Done():
		return
	}
	// The leader's response is there if it was storable and this request
	// selects it; otherwise fetch alone.
	now = c.now()
	if e2, _ := c.store.lookup(key, r.Header, now); e2 != nil && c.usable(e2, rcc, now) {
		c.write(w, r, e2, now, hit)
		c.count(hit)
		return
	} else if e2 != nil {
		f.stale = e2
	}
	c.count(c.fetch(w, next, f))
}

// usable reports whether e may be served without contacting the origin:
// fresh for the response and the request's max-age, min-fresh and
// no-cache (RFC 9111 §4.2, §5.2.1).
func (c *Cache) usable(e *entry, rcc directives, now time.Time) bool {
	if e.cc.noCache || rcc.noCache {
		return false
	}
	age := e.age(now)
	if age >= e.lifetime {
		return false
	}
	if rcc.maxAge >= 0 && age > seconds(rcc.maxAge) {
		return false
	}
	if rcc.minFresh >= 0 && e.lifetime-age < seconds(rcc.minFresh) {
		return false
	}
	return true
}

// staleAllowed reports whether the origin's directives let e be served
// stale at all: not when it said no-cache, must-revalidate or
// proxy-revalidate.
func staleAllowed(e *entry) bool {
	return !e.cc.noCache && !e.cc.mustRevalidate && !e.cc.proxyRevalidate
}

func capWindow(n int, limit time.Duration) time.Duration {
	d := seconds(n)
	if limit > 0 && d > limit {
		return limit
	}
	return d
}

// staleWhileRevalidate reports whether a stale e may be served now while
// it is refreshed in the background: within the origin's
// stale-while-revalidate window, and the request did not ask for a fresh
// or revalidated response.
func (c *Cache) staleWhileRevalidate(e *entry, rcc directives, now time.Time) bool {
	if e.cc.staleWhileRevalidate <= 0 || !staleAllowed(e) || rcc.noCache || rcc.maxAge >= 0 || rcc.minFresh >= 0 {
		return false
	}
	return e.age(now) < e.lifetime+capWindow(e.cc.staleWhileRevalidate, c.cfg.MaxStaleWhileRevalidate)
}

// staleIfError reports whether a stale e may replace an error response.
func (c *Cache) staleIfError(e *entry, now time.Time) bool {
	if e.cc.staleIfError <= 0 || !staleAllowed(e) {
		return false
	}
	return e.age(now) < e.lifetime+capWindow(e.cc.staleIfError, c.cfg.MaxStaleIfError)
}

func (c *Cache) hasUnkeyed(h http.Header) bool {
	for _, name := range c.unkeyed {
		if h[name] != nil {
			return true
		}
	}
	return false
}

func authorized(r *http.Request) bool {
	return r.Header["Authorization"] != nil || reqinfo.From(r.Context()).Claims != nil
}

// write serves a stored response: its headers, Age, the X-Cache header,
// and its body, or 304 Not Modified when the client's conditional
// request matches it (RFC 9110 §13.2.2).
func (c *Cache) write(w http.ResponseWriter, r *http.Request, e *entry, now time.Time, res result) {
	h := w.Header()
	if e.status == http.StatusOK && clientNotModified(r.Header, e.header) {
		copyNotModifiedHeaders(h, e.header)
	} else {
		for k, v := range e.header {
			h[k] = v
		}
	}
	h["Age"] = []string{strconv.FormatInt(int64(e.age(now)/time.Second), 10)}
	c.setX(h, res)
	if e.status == http.StatusOK && clientNotModified(r.Header, e.header) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.WriteHeader(e.status)
	if r.Method != http.MethodHead && len(e.body) > 0 {
		_, _ = w.Write(e.body)
	}
}

// clientNotModified evaluates the client's If-None-Match, or without it
// If-Modified-Since, against a response's validators.
func clientNotModified(req, resp http.Header) bool {
	if inm := req["If-None-Match"]; inm != nil {
		return etagMatch(inm, resp.Get("Etag"))
	}
	ims, ok := headerTime(req, "If-Modified-Since")
	if !ok {
		return false
	}
	lm, ok := headerTime(resp, "Last-Modified")
	return ok && !lm.After(ims)
}

// notModifiedHeaders are the fields a 304 carries (RFC 9110 §15.4.5).
var notModifiedHeaders = []string{"Cache-Control", "Content-Location", "Date", "Etag", "Expires", "Last-Modified", "Vary"}

func copyNotModifiedHeaders(dst, src http.Header) {
	for _, k := range notModifiedHeaders {
		if v, ok := src[k]; ok {
			dst[k] = v
		}
	}
}

// fetch is one request that goes to the origin.
type fetch struct {
	r       *http.Request
	key     string
	query   string // raw query to forward
	changed bool   // query differs from r's
	stale   *entry // the stored response to revalidate, or nil
	rcc     directives
}

// upstream is the request sent to next: GET (a HEAD is filled with a
// GET), the key's query, the client's conditional headers replaced by
// the stored response's validators.
func (f *fetch) upstream(ctx context.Context) *http.Request {
	r := f.r
	h := r.Header
	hasCond := h["If-None-Match"] != nil || h["If-Modified-Since"] != nil || h["If-Match"] != nil ||
		h["If-Unmodified-Since"] != nil || h["If-Range"] != nil
	if !hasCond && f.stale == nil && !f.changed && r.Method == http.MethodGet && ctx == r.Context() {
		return r
	}
	r2 := r.WithContext(ctx)
	r2.Method = http.MethodGet
	if f.changed {
		u := *r.URL
		u.RawQuery = f.query
		r2.URL = &u
		r2.RequestURI = ""
	}
	if hasCond || f.stale != nil {
		r2.Header = h.Clone()
		for _, k := range [...]string{"If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since", "If-Range"} {
			delete(r2.Header, k)
		}
		if f.stale != nil {
			if f.stale.etag != "" {
				r2.Header.Set("If-None-Match", f.stale.etag)
			}
			if f.stale.lastMod != "" {
				r2.Header.Set("If-Modified-Since", f.stale.lastMod)
			}
		}
	}
	return r2
}

// fetch sends f to next with w as the client, storing a storable
// response; a 304 refreshes f.stale and an error the stale-if-error
// window covers serves it instead.
func (c *Cache) fetch(w http.ResponseWriter, next http.Handler, f *fetch) result {
	t := c.newTee(w, f)
	next.ServeHTTP(t, f.upstream(f.r.Context()))
	return c.finish(w, t)
}

func (c *Cache) finish(w http.ResponseWriter, t *tee) result {
	if !t.wroteHeader {
		t.WriteHeader(http.StatusOK)
	}
	f := t.f
	switch {
	case t.notModified:
		e := c.refreshed(f.stale, t)
		if e != nil {
			c.store.replace(f.stale, e)
		} else {
			c.store.invalidate(f.key)
			e = f.stale
		}
		if w != nil {
			c.write(w, f.r, e, c.now(), revalidated)
		}
		return revalidated
	case t.failed:
		if w != nil {
			c.write(w, f.r, f.stale, c.now(), stale)
		}
		return stale
	}
	if e := t.entry(); e != nil && c.store.put(e) {
		return miss
	}
	if t.passable {
		c.store.put(&entry{key: f.key, pass: true, passUntil: c.now().Add(passTTL)})
	}
	return uncacheable
}

// refreshInBackground revalidates f.stale on its own goroutine, unless a
// fetch for the key is already running. The goroutine ends when next
// returns; it is detached from the client's cancellation.
func (c *Cache) refreshInBackground(next http.Handler, f *fetch) {
	done, leader := c.flights.acquire(f.key)
	if !leader {
		return
	}
	ctx := context.WithoutCancel(f.r.Context())
	go func() {
		defer c.flights.release(f.key, done)
		defer func() {
			if p := recover(); p != nil && p != http.ErrAbortHandler {
				c.log.Error("cache: background revalidation panicked", "panic", p)
			}
		}()
		t := c.newTee(nil, f)
		next.ServeHTTP(t, f.upstream(ctx))
		c.finish(nil, t)
	}()
}

// flights coalesces fetches per key: one leader, the others wait for it.
type flights struct {
	mu sync.Mutex
	m  map[string]chan struct{}
}

// acquire returns the key's flight: leader is true when the caller
// starts it and must release it.
func (f *flights) acquire(key string) (done chan struct{}, leader bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if d, ok := f.m[key]; ok {
		return d, false
	}
	d := make(chan struct{})
	f.m[key] = d
	return d, true
}

func (f *flights) release(key string, done chan struct{}) {
	f.mu.Lock()
	delete(f.m, key)
	f.mu.Unlock()
	close(done)
}

// statusWriter records the status of an unsafe request's response.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 && code >= 200 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(p []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(p)
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s *statusWriter) Flush() { _ = http.NewResponseController(s.ResponseWriter).Flush() }

package ratelimit

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash/maphash"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/outrider-mesh/outrider/gateway/clientip"
	"github.com/outrider-mesh/outrider/gateway/reqinfo"
)

// logEvery spaces the warnings about a failing Redis.
const logEvery = 10 * time.Second

// Limiter is a route's compiled limits. It is immutable and safe for
// concurrent use.
type Limiter struct {
	local, global []*limit
	all           []*limit
	redis         *Redis
	resolver      clientip.Resolver
	clock         func() time.Time // nil: time.Since(epoch), the monotonic clock alone
	epoch         time.Time
	log           *slog.Logger
	m             *routeMetrics
	headers       bool
	policy        string // the RateLimit-Policy value

	lastLog    atomic.Int64 // clock nanoseconds of the last Redis warning, +1
	suppressed atomic.Int64
}

type keyKind uint8

const (
	keyNone keyKind = iota
	keyPeer
	keyClientIP
	keyHeader
	keyClaim
)

type limit struct {
	name     string
	g        gcra
	kind     keyKind
	header   string   // canonical, keyHeader
	claim    []string // keyClaim
	reject   bool     // MissingKey reject
	requests int
	period   time.Duration
	seed     maphash.Seed

	single  bucket // keyNone
	missing bucket // requests without the key (MissingKey shared)
	table   *table // per key; for a global limit, the local fallback

	// global only: key prefix and the script's arguments (microseconds).
	redisPrefix             string
	usInterval, usTolerance int64
	policyItem              string
}

// Option configures New.
type Option func(*Limiter)

// WithLogger sets where Redis failures are reported (at most one warning
// per 10 s per route, with the count of those suppressed). Default
// slog.Default().
func WithLogger(l *slog.Logger) Option { return func(t *Limiter) { t.log = l } }

// WithMetrics counts decisions in m under route. nil m: no metrics.
func WithMetrics(m *Metrics, route string) Option {
	return func(t *Limiter) { t.m = m.route(route) }
}

// WithRedis is the listener's Redis, required when a limit is global.
func WithRedis(r *Redis) Option { return func(t *Limiter) { t.redis = r } }

// WithClientIP is the listener's trusted-proxy list, used by client_ip
// keys. Default: the zero Resolver, under which the client is the TCP
// peer and X-Forwarded-For is ignored.
func WithClientIP(r clientip.Resolver) Option { return func(t *Limiter) { t.resolver = r } }

// WithClock replaces time.Now for local limits (tests). Global limits use
// the Redis server's clock.
func WithClock(now func() time.Time) Option { return func(t *Limiter) { t.clock = now } }

// New validates cfg and compiles it.
func New(cfg Config, opts ...Option) (*Limiter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	t := &Limiter{headers: cfg.Headers}
	for _, o := range opts {
		o(t)
	}
	if t.log == nil {
		t.log = slog.Default()
	}
	t.epoch = time.Now()
	if t.clock != nil {
		t.epoch = t.clock()
	}
	var items []string
	for i, c := range cfg.Limits {
		l := compile(c, i)
		if c.Scope == ScopeGlobal {
			if t.redis == nil {
				return nil, errors.New("ratelimit: limits[" + strconv.Itoa(i) + "] is global but the listener has no redis configuration")
			}
			l.redisPrefix = t.redis.prefix + l.name + ":"
			t.global = append(t.global, l)
		} else {
			t.local = append(t.local, l)
		}
		items = append(items, l.policyItem)
	}
	t.all = append(append([]*limit{}, t.local...), t.global...)
	t.policy = strings.Join(items, ", ")
	return t, nil
}

func compile(c Limit, i int) *limit {
	burst := c.Burst
	if burst == 0 {
		burst = c.Requests
	}
	maxKeys := c.MaxKeys
	if maxKeys == 0 {
		maxKeys = DefaultMaxKeys
	}
	interval := int64(c.Period) / int64(c.Requests)
	g := gcra{interval: interval, tolerance: int64(burst) * interval}
	l := &limit{
		name:     c.name(i),
		g:        g,
		reject:   c.MissingKey == MissingDeny,
		requests: c.Requests,
		period:   c.Period,
		seed:     maphash.MakeSeed(),
		table:    newTable(g, maxKeys),
	}
	us := interval / 1000
	l.usInterval, l.usTolerance = us, int64(burst)*us
	switch k := c.Key; {
	case k.Peer:
		l.kind = keyPeer
	case k.ClientIP:
		l.kind = keyClientIP
	case k.Header != "":
		l.kind, l.header = keyHeader, canonicalHeader(k.Header)
	case k.JWTClaim != "":
		l.kind, l.claim = keyClaim, strings.Split(k.JWTClaim, ".")
	}
	// Quota q per window w whole seconds, as RateLimit-Policy wants.
	w := (c.Period + time.Second - 1) / time.Second
	q := int64(c.Requests) * int64(w*time.Second) / int64(c.Period)
	l.policyItem = `"` + l.name + `";q=` + strconv.FormatInt(q, 10) + ";w=" + strconv.FormatInt(int64(w), 10)
	return l
}

// key finds the request's key for l. For a client address, text is
// empty and addr holds it. ok is false when the request lacks the key.
func (l *limit) key(r *http.Request, info *reqinfo.Info, res clientip.Resolver) (text string, addr netip.Addr, ok bool) {
	switch l.kind {
	case keyPeer:
		return info.Peer, netip.Addr{}, info.Peer != ""
	case keyClientIP:
		if !info.Remote.IsValid() {
			return "", netip.Addr{}, false
		}
		return "", res.Client(info.Remote, r.Header), true
	case keyHeader:
		if v := r.Header[l.header]; len(v) > 0 && v[0] != "" {
			return v[0], netip.Addr{}, true
		}
		return "", netip.Addr{}, false
	case keyClaim:
		if info.Claims == nil {
			return "", netip.Addr{}, false
		}
		s, ok := info.Claims.Text(l.claim)
		return s, netip.Addr{}, ok && s != ""
	}
	return "", netip.Addr{}, true
}

// outcome of one limit's key lookup.
type found uint8

const (
	foundKey found = iota
	foundNone
	foundReject
)

func (l *limit) takeLocal(r *http.Request, info *reqinfo.Info, res clientip.Resolver, now int64) (verdict, found) {
	if l.kind == keyNone {
		return l.single.take(l.g, now), foundKey
	}
	text, addr, ok := l.key(r, info, res)
	switch {
	case !ok && l.reject:
		return verdict{}, foundReject
	case !ok:
		return l.missing.take(l.g, now), foundNone
	}
	var h uint64
	if addr.IsValid() {
		b := addr.As16()
		h = maphash.Bytes(l.seed, b[:])
	} else {
		h = maphash.String(l.seed, text)
	}
	return l.table.take(h, now), foundKey
}

// redisKey names the bucket in Redis: the key is hashed, so header values
// and IDs are neither stored nor unbounded in length.
func (l *limit) redisKey(r *http.Request, info *reqinfo.Info, res clientip.Resolver) (string, found) {
	if l.kind == keyNone {
		return l.redisPrefix + "*", foundKey
	}
	text, addr, ok := l.key(r, info, res)
	switch {
	case !ok && l.reject:
		return "", foundReject
	case !ok:
		return l.redisPrefix + "-", foundNone
	}
	var sum [32]byte
	if addr.IsValid() {
		b := addr.As16()
		sum = sha256.Sum256(b[:])
	} else {
		sum = sha256.Sum256([]byte(text))
	}
	return l.redisPrefix + hex.EncodeToString(sum[:16]), foundKey
}

// Wrap returns the middleware: a request every limit admits goes to next;
// any other is answered 429 here and never reaches next.
func (t *Limiter) Wrap(next http.Handler) http.Handler {
	if len(t.all) == 0 {
		return next
	}
	return &handler{t: t, next: next}
}

type handler struct {
	t    *Limiter
	next http.Handler
}

// tightest is the admitting limit with the fewest requests left, for the
// RateLimit header of an admitted response.
type tightest struct {
	l *limit
	v verdict
}

func (x *tightest) note(l *limit, v verdict) {
	if x.l == nil || v.remaining < x.v.remaining {
		x.l, x.v = l, v
	}
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	t := h.t
	info := reqinfo.From(r.Context())
	now := t.now()
	var tight tightest
	for _, l := range t.local {
		v, f := l.takeLocal(r, info, t.resolver, now)
		if f == foundReject {
			t.m.inc(outLimited)
			t.missingKey(w, l)
			return
		}
		if v.overflow {
			t.m.overflow()
		}
		if !v.ok {
			t.m.inc(outLimited)
			t.limited(w, l, v.wait)
			return
		}
		tight.note(l, v)
	}
	out := outAdmitted
	if len(t.global) > 0 {
		var stop bool
		if out, stop = t.decideGlobal(w, r, info, now, &tight); stop {
			return
		}
	}
	t.m.inc(out)
	if t.headers && tight.l != nil {
		hd := w.Header()
		hd["Ratelimit-Policy"] = []string{t.policy}
		hd["Ratelimit"] = []string{item(tight.l, 0, tight.v.remaining, tight.v.full)}
	}
	h.next.ServeHTTP(w, r)
}

// now is the clock in nanoseconds since New. Reading the monotonic clock
// alone (time.Since) costs half as much as time.Now.
func (t *Limiter) now() int64 {
	if t.clock == nil {
		return int64(time.Since(t.epoch))
	}
	return int64(t.clock().Sub(t.epoch))
}

// decideGlobal asks Redis about every global limit at once and applies
// the failure mode when it cannot answer. stop means the response was
// written.
func (t *Limiter) decideGlobal(w http.ResponseWriter, r *http.Request, info *reqinfo.Info, now int64, tight *tightest) (int, bool) {
	keys := make([]string, 0, len(t.global))
	args := make([]any, 0, 2*len(t.global))
	for _, l := range t.global {
		k, f := l.redisKey(r, info, t.resolver)
		if f == foundReject {
			t.m.inc(outLimited)
			t.missingKey(w, l)
			return 0, true
		}
		keys = append(keys, k)
		args = append(args, l.usInterval, l.usTolerance)
	}
	res, err := t.redis.take(keys, args)
	if err == nil {
		for i, l := range t.global {
			diff := res[i]
			if diff > l.usTolerance {
				t.m.inc(outLimited)
				t.limited(w, l, (diff-l.usTolerance)*1000)
				return 0, true
			}
			tight.note(l, verdict{ok: true, remaining: (l.usTolerance - diff) / l.usInterval, full: diff * 1000})
		}
		return outAdmitted, false
	}
	t.redisFailed(err, now)
	switch t.redis.failure {
	case FailOpen:
		return outFallbackOpen, false
	case FailClosed:
		t.m.inc(outFallbackClosed)
		t.limited(w, nil, int64(time.Second))
		return 0, true
	}
	for _, l := range t.global {
		v, f := l.takeLocal(r, info, t.resolver, now)
		if v.overflow {
			t.m.overflow()
		}
		if f == foundReject {
			t.m.inc(outFallbackLocalLimited)
			t.missingKey(w, l)
			return 0, true
		}
		if !v.ok {
			t.m.inc(outFallbackLocalLimited)
			t.limited(w, l, v.wait)
			return 0, true
		}
		tight.note(l, v)
	}
	return outFallbackLocalAdmitted, false
}

// redisFailed counts a failure and logs it, at most once per logEvery.
func (t *Limiter) redisFailed(err error, now int64) {
	kind := errKind(err)
	t.m.redisError(kind)
	last := t.lastLog.Load()
	if last != 0 && now-(last-1) < int64(logEvery) || !t.lastLog.CompareAndSwap(last, now+1) {
		t.suppressed.Add(1)
		return
	}
	t.log.Warn("ratelimit: redis failed, applying failure mode",
		"failure_mode", t.redis.failure, "kind", kind, "error", err,
		"suppressed", t.suppressed.Swap(0))
}

// limited answers 429. l is the limit that refused (nil when Redis did
// and the failure mode is closed); wait is in nanoseconds.
func (t *Limiter) limited(w http.ResponseWriter, l *limit, wait int64) {
	secs := (wait + int64(time.Second) - 1) / int64(time.Second)
	if secs < 1 {
		secs = 1
	}
	hd := w.Header()
	hd["Retry-After"] = []string{strconv.FormatInt(secs, 10)}
	hd["Ratelimit-Policy"] = []string{t.policy}
	if l != nil {
		hd["Ratelimit"] = []string{item(l, secs, 0, 0)}
	}
	text(w, "rate limit exceeded\n")
}

// missingKey answers 429 to a request lacking the key of a limit whose
// MissingKey is reject. No Retry-After: waiting will not help.
func (t *Limiter) missingKey(w http.ResponseWriter, l *limit) {
	hd := w.Header()
	hd["Ratelimit-Policy"] = []string{t.policy}
	hd["Ratelimit"] = []string{`"` + l.name + `";r=0`}
	text(w, "rate limit key missing\n")
}

func text(w http.ResponseWriter, body string) {
	hd := w.Header()
	hd["Content-Type"] = []string{"text/plain; charset=utf-8"}
	hd["X-Content-Type-Options"] = []string{"nosniff"}
	hd["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(http.StatusTooManyRequests)
	_, _ = w.Write([]byte(body))
}

// item is a RateLimit list member: r requests left, t seconds until the
// quota is back (limited: secs; admitted: until the bucket is full).
func item(l *limit, secs, remaining, fullNanos int64) string {
	if secs == 0 {
		secs = (fullNanos + int64(time.Second) - 1) / int64(time.Second)
	}
	b := make([]byte, 0, len(l.name)+32)
	b = append(b, '"')
	b = append(b, l.name...)
	b = append(b, `";r=`...)
	b = strconv.AppendInt(b, remaining, 10)
	b = append(b, ";t="...)
	b = strconv.AppendInt(b, secs, 10)
	return string(b)
}

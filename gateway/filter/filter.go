package filter

import (
	"log/slog"
	"net/http"
	"net/netip"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/outrider-mesh/outrider/gateway/clientip"
	"github.com/outrider-mesh/outrider/gateway/reqinfo"
)

// Filter is one route's compiled filter, built by New. It is immutable
// and safe for concurrent use.
type Filter struct {
	enabled bool

	allow, deny []netip.Prefix
	cidrs       bool

	maxBody        int64
	maxHeaders     int
	maxHeaderBytes int64

	cors         bool
	anyOrigin    bool     // allow_origins ["*"]
	origins      []origin // otherwise
	credentials  bool
	anyMethod    bool
	methods      []string // allowed besides the safelisted ones
	allowMethods []string // the Access-Control-Allow-Methods value
	anyHeader    bool
	headers      []string // allowed request headers
	allowHeaders []string // the Access-Control-Allow-Headers value; nil: none
	expose       []string // the Access-Control-Expose-Headers value; nil: none
	maxAge       []string // the Access-Control-Max-Age value; nil: none

	security bool
	remove   []string // canonical names
	set      []field  // canonical names, sorted

	edits bool // some response header is edited: every request needs a writer

	resolver clientip.Resolver
	log      *slog.Logger
	m        *routeMetrics
}

// field is a response header to set; value is shared by every response
// (capacity clipped, so an append elsewhere copies it).
type field struct {
	name  string
	value []string
}

// Option configures New.
type Option func(*Filter)

// WithLogger logs refused requests at debug level, with the reason. The
// default discards.
func WithLogger(l *slog.Logger) Option {
	return func(f *Filter) {
		if l != nil {
			f.log = l
		}
	}
}

// WithMetrics counts this route's refusals in m (nil: none) under route.
func WithMetrics(m *Metrics, route string) Option {
	return func(f *Filter) { f.m = m.route(route) }
}

// WithClientIP is the listener's trusted-proxy list, used to find the
// client's address for allow_cidrs and deny_cidrs. Default: the zero
// Resolver, under which the client is the TCP peer and X-Forwarded-For
// is ignored.
func WithClientIP(r clientip.Resolver) Option { return func(f *Filter) { f.resolver = r } }

// Values shared by every response that gets them.
var (
	valTrue          = clip("true")
	valNosniff       = clip("nosniff")
	valDeny          = clip("DENY")
	valNoReferrer    = clip("no-referrer")
	valCSP           = clip("default-src 'none'; frame-ancestors 'none'")
	valAnyOrigin     = clip("*")
	valVaryOrigin    = clip("Origin")
	valVaryPreflight = clip("Origin, Access-Control-Request-Method, Access-Control-Request-Headers")
)

func clip(v string) []string { return []string{v}[:1:1] }

// New validates cfg and compiles it.
func New(cfg Config, opts ...Option) (*Filter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	f := &Filter{
		enabled:        cfg.Enabled(),
		maxBody:        int64(cfg.MaxBodyBytes),
		maxHeaders:     cfg.MaxHeaders,
		maxHeaderBytes: int64(cfg.MaxHeaderBytes),
		security:       cfg.SecurityHeaders,
		log:            slog.New(slog.DiscardHandler),
	}
	for _, s := range cfg.AllowCIDRs {
		p, _ := clientip.ParsePrefix(s) // checked by Validate
		f.allow = append(f.allow, p)
	}
	for _, s := range cfg.DenyCIDRs {
		p, _ := clientip.ParsePrefix(s)
		f.deny = append(f.deny, p)
	}
	f.cidrs = len(f.allow) > 0 || len(f.deny) > 0
	if c := cfg.CORS; c.enabled() {
		f.cors = true
		f.credentials = c.AllowCredentials
		for _, s := range c.AllowOrigins {
			if s == "*" {
				f.anyOrigin = true
				continue
			}
			o, _ := parseOrigin(s)
			f.origins = append(f.origins, o)
		}
		methods := c.AllowMethods
		if len(methods) == 0 {
			methods = []string{http.MethodGet, http.MethodHead, http.MethodPost}
		}
		f.anyMethod = slices.Contains(methods, "*")
		f.methods = methods
		f.allowMethods = clip(strings.Join(methods, ", "))
		f.anyHeader = slices.Contains(c.AllowHeaders, "*")
		f.headers = c.AllowHeaders
		if len(c.AllowHeaders) > 0 && !f.anyHeader {
			f.allowHeaders = clip(strings.Join(c.AllowHeaders, ", "))
		}
		if len(c.ExposeHeaders) > 0 {
			f.expose = clip(strings.Join(c.ExposeHeaders, ", "))
		}
		if c.MaxAge > 0 {
			f.maxAge = clip(strconv.FormatInt(int64(c.MaxAge/time.Second), 10))
		}
	}
	for _, name := range cfg.ResponseHeaders.Remove {
		f.remove = append(f.remove, textproto.CanonicalMIMEHeaderKey(name))
	}
	for name, v := range cfg.ResponseHeaders.Set {
		f.set = append(f.set, field{name: textproto.CanonicalMIMEHeaderKey(name), value: clip(v)})
	}
	slices.SortFunc(f.set, func(a, b field) int { return strings.Compare(a.name, b.name) })
	f.edits = f.cors || f.security || len(f.remove) > 0 || len(f.set) > 0
	for _, o := range opts {
		o(f)
	}
	return f, nil
}

// Wrap returns the middleware in front of next. A request it refuses is
// answered here and never reaches next; one it admits reaches next with
// its body bounded (max_body_bytes) and next's response edited (CORS
// headers, security_headers, response_headers) as it is written. With
// nothing configured it returns next.
func (f *Filter) Wrap(next http.Handler) http.Handler {
	if !f.enabled {
		return next
	}
	return &handler{f: f, next: next}
}

type handler struct {
	f    *Filter
	next http.Handler
}

// AnswersPreflights reports whether the filter answers CORS preflights
// itself (CORS is configured): they never reach what it wraps.
func (f *Filter) AnswersPreflights() bool { return f.cors }

// IsPreflight reports whether a request with method and header h is a
// CORS preflight as the filter sees one: OPTIONS with Origin and
// Access-Control-Request-Method.
func IsPreflight(method string, has func(name string) bool) bool {
	return method == http.MethodOptions && has("Origin") && has("Access-Control-Request-Method")
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f := h.f
	stream := f.maxBody > 0 && r.ContentLength < 0 && r.Body != nil && r.Body != http.NoBody
	var fw *writer
	if f.edits || stream {
		fw = getWriter(f, w, r)
		defer fw.release()
		w = fw
	}
	if f.cidrs {
		if a, ok := f.admitted(r); !ok {
			f.refuse(w, r, ipDenied, a)
			return
		}
	}
	if f.maxHeaders > 0 || f.maxHeaderBytes > 0 {
		if why, ok := f.headersFit(r); !ok {
			f.refuse(w, r, why, netip.Addr{})
			return
		}
	}
	if f.maxBody > 0 && r.ContentLength > f.maxBody {
		f.refuse(w, r, bodyTooLarge, netip.Addr{})
		return
	}
	if f.cors && IsPreflight(r.Method, func(name string) bool { return len(r.Header[name]) > 0 }) {
		f.preflight(fw, r)
		return
	}
	if stream {
		b := &body{src: r.Body, limit: f.maxBody, f: f, r: r}
		r = r.WithContext(r.Context())
		r.Body = b
		fw.body = b
	}
	h.next.ServeHTTP(w, r)
	if fw != nil {
		fw.finish()
	}
}

// admitted applies the CIDR lists to the request's client address. An
// unknown address (the sidecar gave none) is refused: a security decision
// fails closed.
func (f *Filter) admitted(r *http.Request) (netip.Addr, bool) {
	info := reqinfo.From(r.Context())
	if !info.Remote.IsValid() {
		return netip.Addr{}, false
	}
	// A zone would make Contains false for every prefix, and so dodge
	// the deny list.
	a := f.resolver.Client(info.Remote, r.Header).WithZone("")
	for _, p := range f.deny {
		if p.Contains(a) {
			return a, false
		}
	}
	if len(f.allow) == 0 {
		return a, true
	}
	for _, p := range f.allow {
		if p.Contains(a) {
			return a, true
		}
	}
	return a, false
}

// headersFit applies max_headers and max_header_bytes, counting as the
// listener does: every field line, Host (HTTP/2's :authority) as one.
func (f *Filter) headersFit(r *http.Request) (reason, bool) {
	n, size := 0, int64(0)
	if r.Host != "" {
		n, size = 1, int64(len("Host")+len(r.Host))
	}
	for k, vv := range r.Header {
		n += len(vv)
		for _, v := range vv {
			size += int64(len(k) + len(v))
		}
	}
	switch {
	case f.maxHeaders > 0 && n > f.maxHeaders:
		return tooManyHeaders, false
	case f.maxHeaderBytes > 0 && size > f.maxHeaderBytes:
		return headersTooLarge, false
	}
	return 0, true
}

// refusals are the status and body of each refusal.
var refusals = [numReasons]struct {
	status int
	body   string
}{
	ipDenied:        {http.StatusForbidden, "client address not allowed\n"},
	bodyTooLarge:    {http.StatusRequestEntityTooLarge, "request body too large\n"},
	tooManyHeaders:  {http.StatusRequestHeaderFieldsTooLarge, "too many request header fields\n"},
	headersTooLarge: {http.StatusRequestHeaderFieldsTooLarge, "request header fields too large\n"},
	preflightDenied: {http.StatusForbidden, "CORS preflight denied\n"},
}

// refuse counts, logs and answers a refused request. client is the
// address the CIDR lists judged, when they did.
func (f *Filter) refuse(w http.ResponseWriter, r *http.Request, why reason, client netip.Addr) {
	f.refused(r, why, client)
	text(w, why)
}

func (f *Filter) refused(r *http.Request, why reason, client netip.Addr) {
	f.m.inc(why)
	if f.log.Enabled(r.Context(), slog.LevelDebug) {
		attrs := []any{"reason", why.String(), "method", r.Method, "path", r.URL.Path}
		if client.IsValid() {
			attrs = append(attrs, "client", client)
		}
		f.log.Debug("filter: request refused", attrs...)
	}
}

func text(w http.ResponseWriter, why reason) {
	ans := refusals[why]
	h := w.Header()
	h["Content-Type"] = []string{"text/plain; charset=utf-8"}
	h["X-Content-Type-Options"] = valNosniff
	h["Content-Length"] = []string{strconv.Itoa(len(ans.body))}
	w.WriteHeader(ans.status)
	_, _ = w.Write([]byte(ans.body))
}

// Header names written by the CORS code.
const (
	hACAO = "Access-Control-Allow-Origin"
	hACAC = "Access-Control-Allow-Credentials"
	hACAM = "Access-Control-Allow-Methods"
	hACAH = "Access-Control-Allow-Headers"
	hACEH = "Access-Control-Expose-Headers"
	hACMA = "Access-Control-Max-Age"
)

// corsResponse are the fields the filter owns on a CORS route: an
// upstream's own are removed, so that a disallowed origin never gets an
// answer the browser would accept.
var corsResponse = []string{hACAO, hACAC, hACAM, hACAH, hACEH, hACMA, "Access-Control-Allow-Private-Network"}

// allowedOrigin matches the request's Origin against allow_origins and
// returns the Access-Control-Allow-Origin value, nil when not allowed. A
// request with several Origin fields is not allowed.
func (f *Filter) allowedOrigin(r *http.Request) []string {
	if f.anyOrigin {
		return valAnyOrigin
	}
	vv := r.Header["Origin"]
	if len(vv) != 1 {
		return nil
	}
	for i := range f.origins {
		if echo, ok := f.origins[i].match(vv[0]); ok {
			return echo
		}
	}
	return nil
}

// preflight answers a CORS preflight: 204 with the Access-Control-Allow-*
// fields when the origin, the method and every requested header are
// allowed, 403 otherwise. Either way next never sees it.
func (f *Filter) preflight(w *writer, r *http.Request) {
	w.preflight = true
	h := w.Header()
	h["Vary"] = valVaryPreflight
	method := r.Header["Access-Control-Request-Method"]
	if w.echo == nil || len(method) != 1 || !f.methodAllowed(method[0]) {
		f.refuse(w, r, preflightDenied, netip.Addr{})
		return
	}
	requested, ok := f.headersAllowed(r.Header["Access-Control-Request-Headers"])
	if !ok {
		f.refuse(w, r, preflightDenied, netip.Addr{})
		return
	}
	h[hACAO] = w.echo
	if f.credentials {
		h[hACAC] = valTrue
	}
	if f.anyMethod {
		h[hACAM] = []string{method[0]}
	} else {
		h[hACAM] = f.allowMethods
	}
	switch {
	case f.anyHeader && requested != "":
		h[hACAH] = []string{requested}
	case f.allowHeaders != nil:
		h[hACAH] = f.allowHeaders
	}
	if f.maxAge != nil {
		h[hACMA] = f.maxAge
	}
	w.WriteHeader(http.StatusNoContent)
}

func (f *Filter) methodAllowed(m string) bool {
	if !validToken(m) {
		return false
	}
	return f.anyMethod || safelistedMethod(m) || slices.Contains(f.methods, m)
}

// headersAllowed checks every name of the preflight's
// Access-Control-Request-Headers lines; requested is them rejoined, for
// an allow_headers "*" to echo.
func (f *Filter) headersAllowed(lines []string) (requested string, ok bool) {
	var names []string
	for _, line := range lines {
		for name := range strings.SplitSeq(line, ",") {
			name = strings.TrimSpace(name)
			if name == "" {
				continue
			}
			if !validToken(name) {
				return "", false
			}
			if !f.anyHeader && !slices.ContainsFunc(f.headers, func(a string) bool { return strings.EqualFold(a, name) }) {
				return "", false
			}
			names = append(names, name)
		}
	}
	return strings.Join(names, ", "), true
}

// edit applies the response header edits to h, a response about to be
// sent: CORS (unless the filter answered a preflight itself), the
// security preset, then remove and set.
func (f *Filter) edit(h http.Header, echo []string, preflight bool) {
	if f.cors && !preflight {
		for _, k := range corsResponse {
			delete(h, k)
		}
		if echo != nil {
			h[hACAO] = echo
			if f.credentials {
				h[hACAC] = valTrue
			}
			if f.expose != nil {
				h[hACEH] = f.expose
			}
		}
		if !f.anyOrigin {
			addVary(h)
		}
	}
	if f.security {
		h["X-Content-Type-Options"] = valNosniff
		h["X-Frame-Options"] = valDeny
		h["Referrer-Policy"] = valNoReferrer
		_, own := h["Content-Security-Policy"]
		_, report := h["Content-Security-Policy-Report-Only"]
		if !own && !report {
			h["Content-Security-Policy"] = valCSP
		}
	}
	for _, k := range f.remove {
		delete(h, k)
	}
	for _, s := range f.set {
		h[s.name] = s.value
	}
}

// addVary adds Origin to h's Vary unless it (or "*") is there.
func addVary(h http.Header) {
	vv := h["Vary"]
	if len(vv) == 0 {
		h["Vary"] = valVaryOrigin
		return
	}
	for _, line := range vv {
		for tok := range strings.SplitSeq(line, ",") {
			tok = strings.TrimSpace(tok)
			if tok == "*" || strings.EqualFold(tok, "Origin") {
				return
			}
		}
	}
	h["Vary"] = append(slices.Clip(vv), "Origin")
}

package cache

import (
	"net/http"
	"strings"
	"time"
)

// tee is the ResponseWriter next writes to on a fetch. It streams the
// response to the client (unless the response is a 304 for the cache's
// own revalidation, or an error a stale response replaces) and records
// it for the store while it stays storable and within max_object_size.
type tee struct {
	c *Cache
	f *fetch
	w http.ResponseWriter // the client; nil for a background refresh

	h           http.Header
	status      int
	wroteHeader bool
	requestTime time.Time
	respTime    time.Time

	notModified bool  // 304 to the cache's conditional request: nothing sent yet
	failed      bool  // error replaced by the stale response: nothing sent yet
	clientBody  bool  // body bytes go to the client
	clientErr   error // the client went away; recording goes on while it can

	record   bool // still recording
	passable bool // not storable because of the response itself
	buf      []byte
	limit    int64 // body bytes that still fit
	cc       directives
	lifetime time.Duration
	vary     []string
}

func (c *Cache) newTee(w http.ResponseWriter, f *fetch) *tee {
	return &tee{c: c, f: f, w: w, h: make(http.Header), requestTime: c.now()}
}

func (t *tee) Header() http.Header { return t.h }

func (t *tee) WriteHeader(code int) {
	if t.wroteHeader {
		return
	}
	if code < 200 {
		if t.w != nil && t.f.stale == nil && code != http.StatusSwitchingProtocols {
			t.copyHeader()
			t.w.WriteHeader(code)
		}
		return
	}
	t.wroteHeader = true
	t.status = code
	t.respTime = t.c.now()
	if st := t.f.stale; st != nil {
		if code == http.StatusNotModified {
			t.notModified = true
			return
		}
		if code >= 500 && code <= 504 && t.c.staleIfError(st, t.respTime) {
			t.failed = true
			return
		}
	}
	t.decide()
	if t.w == nil {
		return
	}
	t.copyHeader()
	t.c.setX(t.w.Header(), t.result())
	if code == http.StatusOK && clientNotModified(t.f.r.Header, t.h) {
		h := t.w.Header()
		for _, k := range [...]string{"Content-Length", "Content-Type", "Content-Encoding", "Content-Range", "Transfer-Encoding"} {
			delete(h, k)
		}
		t.w.WriteHeader(http.StatusNotModified)
		return
	}
	t.clientBody = t.f.r.Method != http.MethodHead
	t.w.WriteHeader(code)
}

func (t *tee) result() result {
	if t.record {
		return miss
	}
	return uncacheable
}

func (t *tee) copyHeader() {
	dst := t.w.Header()
	for k, v := range t.h {
		dst[k] = v
	}
}

func (t *tee) Write(p []byte) (int, error) {
	if !t.wroteHeader {
		t.WriteHeader(http.StatusOK)
	}
	if t.notModified || t.failed {
		return len(p), nil
	}
	if t.record {
		if int64(len(p)) > t.limit {
			t.record, t.buf = false, nil
		} else {
			t.buf = append(t.buf, p...)
			t.limit -= int64(len(p))
		}
	}
	if t.clientErr != nil {
		if !t.record {
			return 0, t.clientErr
		}
		return len(p), nil
	}
	if !t.clientBody {
		return len(p), nil
	}
	n, err := t.w.Write(p)
	if err != nil && t.record {
		// Finish the recording for the requests waiting on this fetch.
		t.clientErr = err
		return len(p), nil
	}
	return n, err
}

// Flush sends what is buffered to the client (ReverseProxy flushes
// streamed responses).
func (t *tee) Flush() {
	if !t.wroteHeader {
		t.WriteHeader(http.StatusOK)
	}
	if t.clientBody && t.clientErr == nil {
		_ = http.NewResponseController(t.w).Flush()
	}
}

// storableStatus are the final statuses the cache stores; heuristic are
// those RFC 9110 §15.1 calls heuristically cacheable.
var (
	storableStatus  = map[int]bool{200: true, 203: true, 204: true, 300: true, 301: true, 302: true, 307: true, 308: true, 404: true, 405: true, 410: true, 414: true, 501: true}
	heuristicStatus = map[int]bool{200: true, 203: true, 204: true, 300: true, 301: true, 308: true, 404: true, 405: true, 410: true, 414: true, 501: true}
)

// decide works out from the status and header fields whether the
// response may be stored (RFC 9111 §3, §3.5) and its freshness, and
// starts recording if so.
func (t *tee) decide() {
	r, h, c := t.f.r, t.h, t.c
	t.cc = parseCacheControl(h["Cache-Control"])
	personal := authorized(r)
	switch {
	case !storableStatus[t.status], t.cc.noStore, t.cc.private, h["Set-Cookie"] != nil, hasTrailers(h):
		t.passable = !personal
		return
	}
	vary, star := varyNames(h)
	if star {
		t.passable = true
		return
	}
	for _, name := range c.unkeyed {
		if r.Header[name] != nil && !containsFold(vary, name) {
			return
		}
	}
	if personal && (!c.cfg.CacheAuthorizedPublic || !(t.cc.public || t.cc.sMaxAge >= 0 || t.cc.mustRevalidate)) {
		return
	}
	lifetime, explicit := freshness(t.cc, h, t.respTime)
	if !explicit {
		switch {
		case r.Header["Cookie"] != nil || personal:
			// A personalized request needs the origin's explicit word.
			return
		case c.cfg.DefaultTTL > 0 && (heuristicStatus[t.status] || t.cc.public):
			lifetime = c.cfg.DefaultTTL
		case h["Etag"] == nil && h["Last-Modified"] == nil:
			t.passable = true
			return
		}
	}
	if lifetime <= 0 && h["Etag"] == nil && h["Last-Modified"] == nil {
		t.passable = true
		return
	}
	t.limit = c.maxObject - headerSize(h) - int64(len(t.f.key))
	if cl := h.Get("Content-Length"); cl != "" {
		if n := parseDelta(cl); int64(n) > t.limit {
			t.passable = true
			return
		} else if n > 0 {
			t.buf = make([]byte, 0, n)
		}
	}
	if t.limit < 0 {
		t.passable = true
		return
	}
	t.record, t.lifetime, t.vary = true, lifetime, vary
}

// freshness is the freshness lifetime the response states (RFC 9111
// §4.2.1): s-maxage, else max-age, else Expires minus Date; explicit is
// false when it states none.
func freshness(cc directives, h http.Header, respTime time.Time) (time.Duration, bool) {
	switch {
	case cc.sMaxAge >= 0:
		return seconds(cc.sMaxAge), true
	case cc.maxAge >= 0:
		return seconds(cc.maxAge), true
	case h["Expires"] != nil:
		exp, ok := headerTime(h, "Expires")
		if !ok {
			return 0, true // an invalid Expires means already expired
		}
		date, ok := headerTime(h, "Date")
		if !ok {
			date = respTime
		}
		return max(0, exp.Sub(date)), true
	}
	return 0, false
}

func hasTrailers(h http.Header) bool {
	if h["Trailer"] != nil {
		return true
	}
	for k := range h {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			return true
		}
	}
	return false
}

func containsFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}

// hopHeaders are not stored (RFC 9111 §3.1), nor is the cache's own
// X-Cache header or Age (recomputed when served).
var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Transfer-Encoding", "Upgrade", "Proxy-Authenticate", "Proxy-Authorization", "Age"}

func (c *Cache) storedHeader(h http.Header) http.Header {
	out := h.Clone()
	for _, v := range h["Connection"] {
		for _, f := range strings.Split(v, ",") {
			delete(out, http.CanonicalHeaderKey(strings.TrimSpace(f)))
		}
	}
	for _, k := range hopHeaders {
		delete(out, k)
	}
	if c.xcache != "" {
		delete(out, c.xcache)
	}
	return out
}

// entry builds the stored response from a complete recording, or nil.
func (t *tee) entry() *entry {
	if !t.record {
		return nil
	}
	if cl := t.h.Get("Content-Length"); cl != "" && parseDelta(cl) != len(t.buf) {
		return nil // truncated
	}
	h := t.c.storedHeader(t.h)
	if t.status != http.StatusNoContent {
		h["Content-Length"] = []string{itoa(len(t.buf))}
	}
	e := &entry{
		key:          t.f.key,
		vary:         t.vary,
		status:       t.status,
		header:       h,
		body:         t.buf,
		etag:         h.Get("Etag"),
		lastMod:      h.Get("Last-Modified"),
		cc:           t.cc,
		responseTime: t.respTime,
		initialAge:   initialAge(t.h, t.requestTime, t.respTime),
		lifetime:     t.lifetime,
	}
	for _, name := range t.vary {
		e.varyVals = append(e.varyVals, varyValue(t.f.r.Header, name))
	}
	return e
}

// initialAge is corrected_initial_age (RFC 9111 §4.2.3).
func initialAge(h http.Header, reqTime, respTime time.Time) time.Duration {
	apparent := time.Duration(0)
	if date, ok := headerTime(h, "Date"); ok {
		apparent = max(0, respTime.Sub(date))
	}
	corrected := parseAge(h) + max(0, respTime.Sub(reqTime))
	return max(apparent, corrected)
}

// refreshed is old updated with a 304's header fields (RFC 9111 §4.3.4),
// or nil when the updated response may no longer be stored.
func (c *Cache) refreshed(old *entry, t *tee) *entry {
	h := old.header.Clone()
	for k, v := range c.storedHeader(t.h) {
		if k == "Content-Length" {
			continue
		}
		h[k] = v
	}
	cc := parseCacheControl(h["Cache-Control"])
	if cc.noStore || cc.private || h["Set-Cookie"] != nil {
		return nil
	}
	lifetime, explicit := freshness(cc, h, t.respTime)
	if !explicit && c.cfg.DefaultTTL > 0 && old.lifetime > 0 {
		lifetime = c.cfg.DefaultTTL
	}
	e := *old
	e.header, e.cc, e.lifetime, e.elem = h, cc, lifetime, nil
	e.etag, e.lastMod = h.Get("Etag"), h.Get("Last-Modified")
	e.responseTime = t.respTime
	e.initialAge = initialAge(t.h, t.requestTime, t.respTime)
	return &e
}

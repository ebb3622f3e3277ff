package cache

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// clock is an injected time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// env is a client -> cache -> ReverseProxy -> backend chain over real
// loopback servers.
type env struct {
	t       *testing.T
	front   *httptest.Server
	origin  atomic.Int64 // requests the backend saw
	clock   *clock
	store   *Store
	metrics *Metrics
	reg     *prometheus.Registry
}

func newEnv(t *testing.T, cfg Config, backend http.HandlerFunc) *env {
	t.Helper()
	e := &env{t: t, clock: newClock(), reg: prometheus.NewRegistry()}
	e.metrics = NewMetrics(e.reg)
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.origin.Add(1)
		backend(w, r)
	}))
	t.Cleanup(be.Close)
	u, _ := url.Parse(be.URL)
	proxy := httputil.NewSingleHostReverseProxy(u)
	proxy.ErrorLog = nil
	cfg.Enabled = true
	if cfg.XCacheHeader == "" {
		cfg.XCacheHeader = "X-Cache"
	}
	e.store = NewStore(64<<20, WithStoreMetrics(e.metrics, "test"))
	c, err := New(cfg, WithStore(e.store), WithClock(e.clock.now), WithMetrics(e.metrics, "r1"))
	if err != nil {
		t.Fatal(err)
	}
	e.front = httptest.NewServer(c.Wrap(proxy))
	t.Cleanup(e.front.Close)
	return e
}

type resp struct {
	status int
	header http.Header
	body   string
}

func (e *env) do(method, path string, hdr ...string) resp {
	e.t.Helper()
	req, err := http.NewRequest(method, e.front.URL+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	res, err := e.front.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp{res.StatusCode, res.Header, string(b)}
}

func (e *env) get(path string, hdr ...string) resp { return e.do(http.MethodGet, path, hdr...) }

func (e *env) wantOrigin(n int64) {
	e.t.Helper()
	if got := e.origin.Load(); got != n {
		e.t.Fatalf("backend saw %d requests, want %d", got, n)
	}
}

func wantX(t *testing.T, r resp, x string) {
	t.Helper()
	if got := r.header.Get("X-Cache"); got != x {
		t.Fatalf("X-Cache = %q, want %q (status %d, body %q)", got, x, r.status, r.body)
	}
}

// fixed answers with the given header pairs, status 200 and body "v".
func fixed(hdr ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(hdr); i += 2 {
			w.Header().Add(hdr[i], hdr[i+1])
		}
		_, _ = io.WriteString(w, "v")
	}
}

func TestHitAfterMiss(t *testing.T) {
	e := newEnv(t, Config{}, fixed("Cache-Control", "max-age=60"))
	r := e.get("/a")
	wantX(t, r, "MISS")
	e.clock.advance(10 * time.Second)
	r = e.get("/a")
	wantX(t, r, "HIT")
	if r.body != "v" || r.header.Get("Age") != "10" || r.header.Get("Content-Length") != "1" {
		t.Fatalf("hit: body %q Age %q Content-Length %q", r.body, r.header.Get("Age"), r.header.Get("Content-Length"))
	}
	e.wantOrigin(1)
	e.clock.advance(51 * time.Second) // age 61 > 60, no validator
	wantX(t, e.get("/a"), "MISS")
	e.wantOrigin(2)
	if got := metricValue(e.metrics.lookups.WithLabelValues("r1", "hit")); got != 1 {
		t.Fatalf("hit counter %v, want 1", got)
	}
	if got := metricValue(e.metrics.lookups.WithLabelValues("r1", "miss")); got != 2 {
		t.Fatalf("miss counter %v, want 2", got)
	}
	if got := metricValue(e.metrics.storedObjects.WithLabelValues("test")); got != 1 {
		t.Fatalf("stored objects %v, want 1", got)
	}
}

func TestAgeFromOrigin(t *testing.T) {
	// An upstream cache already held it 50 s: 10 s of freshness left.
	e := newEnv(t, Config{}, fixed("Cache-Control", "max-age=60", "Age", "50"))
	e.get("/a")
	e.clock.advance(5 * time.Second)
	r := e.get("/a")
	wantX(t, r, "HIT")
	if r.header.Get("Age") != "55" {
		t.Fatalf("Age %q, want 55", r.header.Get("Age"))
	}
	e.clock.advance(6 * time.Second)
	wantX(t, e.get("/a"), "MISS")
}

// TestStorability: conflicting and forbidding response headers; stored
// means the second request did not reach the backend.
func TestStorability(t *testing.T) {
	past := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).Format(http.TimeFormat)
	future := time.Now().Add(time.Hour).Format(http.TimeFormat)
	now := time.Now().Format(http.TimeFormat)
	for _, tc := range []struct {
		name   string
		cfg    Config
		hdr    []string
		req    []string
		stored bool
	}{
		{"max-age beats past Expires", Config{}, []string{"Cache-Control", "max-age=60", "Expires", past}, nil, true},
		{"max-age=0 beats future Expires", Config{}, []string{"Cache-Control", "max-age=0", "Expires", future}, nil, false},
		{"Expires alone", Config{}, []string{"Date", now, "Expires", future}, nil, true},
		{"invalid Expires is expired", Config{}, []string{"Expires", "0"}, nil, false},
		{"s-maxage beats max-age=0", Config{}, []string{"Cache-Control", "max-age=0, s-maxage=60"}, nil, true},
		{"no-store with max-age", Config{}, []string{"Cache-Control", "no-store, max-age=60"}, nil, false},
		{"private", Config{}, []string{"Cache-Control", "private, max-age=60"}, nil, false},
		{"private qualified", Config{}, []string{"Cache-Control", `max-age=60, private="Set-Cookie"`}, nil, false},
		{"Set-Cookie even public", Config{}, []string{"Cache-Control", "public, max-age=60", "Set-Cookie", "s=1"}, nil, false},
		{"Vary star", Config{}, []string{"Cache-Control", "max-age=60", "Vary", "*"}, nil, false},
		{"no freshness, heuristics off", Config{}, nil, nil, false},
		{"no freshness, heuristic ttl", Config{DefaultTTL: time.Minute}, nil, nil, true},
		{"heuristic ttl not for cookie request", Config{DefaultTTL: time.Minute}, nil, []string{"Cookie", "sid=1"}, false},
		{"explicit freshness with cookie request", Config{}, []string{"Cache-Control", "max-age=60"}, []string{"Cookie", "sid=1"}, true},
		{"Authorization, not allowed", Config{}, []string{"Cache-Control", "public, max-age=60"}, []string{"Authorization", "Bearer x"}, false},
		{"Authorization, allowed, public", Config{CacheAuthorizedPublic: true}, []string{"Cache-Control", "public, max-age=60"}, []string{"Authorization", "Bearer x"}, true},
		{"Authorization, allowed, s-maxage", Config{CacheAuthorizedPublic: true}, []string{"Cache-Control", "s-maxage=60"}, []string{"Authorization", "Bearer x"}, true},
		{"Authorization, allowed, max-age only", Config{CacheAuthorizedPublic: true}, []string{"Cache-Control", "max-age=60"}, []string{"Authorization", "Bearer x"}, false},
		{"duplicate max-age first wins", Config{}, []string{"Cache-Control", "max-age=0", "Cache-Control", "max-age=60"}, nil, false},
		{"malformed max-age is stale", Config{}, []string{"Cache-Control", "max-age=abc"}, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.cfg, fixed(tc.hdr...))
			e.get("/a", tc.req...)
			r := e.get("/a", tc.req...)
			if tc.stored {
				wantX(t, r, "HIT")
				e.wantOrigin(1)
			} else {
				wantX(t, r, "MISS")
				e.wantOrigin(2)
			}
		})
	}
}

func TestStatuses(t *testing.T) {
	for _, tc := range []struct {
		status int
		stored bool
	}{{404, true}, {301, true}, {500, false}, {206, false}, {201, false}} {
		e := newEnv(t, Config{}, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "max-age=60")
			w.WriteHeader(tc.status)
		})
		e.get("/a")
		e.get("/a")
		if want := map[bool]int64{true: 1, false: 2}[tc.stored]; e.origin.Load() != want {
			t.Errorf("status %d: backend saw %d, want %d", tc.status, e.origin.Load(), want)
		}
	}
}

func etagBackend(seen *[]string, mu *sync.Mutex, body *atomic.Value) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		*seen = append(*seen, r.Header.Get("If-None-Match"))
		mu.Unlock()
		w.Header().Set("Cache-Control", "max-age=10")
		w.Header().Set("ETag", `"v1"`)
		if r.Header.Get("If-None-Match") == `"v1"` {
			w.Header().Set("X-Refreshed", "yes")
			w.WriteHeader(http.StatusNotModified)
			return
		}
		_, _ = io.WriteString(w, body.Load().(string))
	}
}

func TestRevalidation(t *testing.T) {
	var seen []string
	var mu sync.Mutex
	var body atomic.Value
	body.Store("one")
	e := newEnv(t, Config{}, etagBackend(&seen, &mu, &body))
	wantX(t, e.get("/a"), "MISS")
	e.clock.advance(11 * time.Second)
	r := e.get("/a")
	wantX(t, r, "REVALIDATED")
	if r.status != 200 || r.body != "one" || r.header.Get("X-Refreshed") != "yes" || r.header.Get("Age") != "0" {
		t.Fatalf("revalidated: %d %q X-Refreshed=%q Age=%q", r.status, r.body, r.header.Get("X-Refreshed"), r.header.Get("Age"))
	}
	// The 304 refreshed freshness: fresh again.
	e.clock.advance(5 * time.Second)
	wantX(t, e.get("/a"), "HIT")
	e.wantOrigin(2)
	mu.Lock()
	defer mu.Unlock()
	if seen[0] != "" || seen[1] != `"v1"` {
		t.Fatalf("backend If-None-Match %q, want [\"\" \"v1\"]", seen)
	}
}

func TestClientConditional(t *testing.T) {
	var seen []string
	var mu sync.Mutex
	var body atomic.Value
	body.Store("one")
	e := newEnv(t, Config{}, etagBackend(&seen, &mu, &body))
	// A conditional miss: the cache fetches the full response (the
	// client's validator is not forwarded), stores it, answers 304.
	r := e.get("/a", "If-None-Match", `"v1"`)
	if r.status != 304 || r.body != "" {
		t.Fatalf("conditional miss: %d %q", r.status, r.body)
	}
	mu.Lock()
	if seen[0] != "" {
		t.Fatalf("client's If-None-Match reached the backend: %q", seen[0])
	}
	mu.Unlock()
	r = e.get("/a")
	wantX(t, r, "HIT")
	if r.status != 200 || r.body != "one" {
		t.Fatalf("after conditional miss: %d %q", r.status, r.body)
	}
	r = e.get("/a", "If-None-Match", `W/"v1"`)
	if r.status != 304 || r.header.Get("Etag") != `"v1"` {
		t.Fatalf("conditional hit: %d etag %q", r.status, r.header.Get("Etag"))
	}
	r = e.get("/a", "If-None-Match", `"other"`)
	if r.status != 200 || r.body != "one" {
		t.Fatalf("non-matching conditional hit: %d %q", r.status, r.body)
	}
	e.wantOrigin(1)
}

func TestRequestDirectives(t *testing.T) {
	var seen []string
	var mu sync.Mutex
	var body atomic.Value
	body.Store("one")
	e := newEnv(t, Config{}, etagBackend(&seen, &mu, &body))
	r := e.get("/cold", "Cache-Control", "only-if-cached")
	if r.status != http.StatusGatewayTimeout {
		t.Fatalf("only-if-cached on a miss: %d", r.status)
	}
	e.wantOrigin(0)
	e.get("/a")
	wantX(t, e.get("/a", "Cache-Control", "only-if-cached"), "HIT")
	wantX(t, e.get("/a", "Cache-Control", "no-cache"), "REVALIDATED")
	wantX(t, e.get("/a", "Pragma", "no-cache"), "REVALIDATED")
	e.clock.advance(3 * time.Second)
	wantX(t, e.get("/a", "Cache-Control", "max-age=1"), "REVALIDATED")
	wantX(t, e.get("/a", "Cache-Control", "min-fresh=20"), "REVALIDATED")
	e.wantOrigin(5)
	wantX(t, e.get("/b", "Cache-Control", "no-store"), "BYPASS")
	wantX(t, e.get("/b"), "MISS")
	wantX(t, e.get("/a", "Range", "bytes=0-1"), "BYPASS")
}

func TestHeadServedFromGet(t *testing.T) {
	var methods []string
	var mu sync.Mutex
	e := newEnv(t, Config{}, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		methods = append(methods, r.Method)
		mu.Unlock()
		w.Header().Set("Cache-Control", "max-age=60")
		_, _ = io.WriteString(w, "body")
	})
	r := e.do(http.MethodHead, "/h")
	if r.status != 200 || r.body != "" {
		t.Fatalf("HEAD miss %d %q", r.status, r.body)
	}
	r = e.get("/h")
	wantX(t, r, "HIT")
	if r.body != "body" {
		t.Fatalf("GET after HEAD fill: %q", r.body)
	}
	r = e.do(http.MethodHead, "/h")
	wantX(t, r, "HIT")
	if r.header.Get("Content-Length") != "4" {
		t.Fatalf("HEAD hit Content-Length %q", r.header.Get("Content-Length"))
	}
	mu.Lock()
	defer mu.Unlock()
	if len(methods) != 1 || methods[0] != http.MethodGet {
		t.Fatalf("backend saw %v, want one GET", methods)
	}
}

func TestUnsafeMethodInvalidates(t *testing.T) {
	e := newEnv(t, Config{}, func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPatch {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Cache-Control", "max-age=60")
		_, _ = io.WriteString(w, "v")
	})
	e.get("/x?b=2&a=1")
	wantX(t, e.get("/x?a=1&b=2"), "HIT") // normalized query
	e.do(http.MethodPatch, "/x?a=1&b=2") // 405: not invalidated
	wantX(t, e.get("/x?b=2&a=1"), "HIT")
	e.do(http.MethodPost, "/x?a=1&b=2")
	wantX(t, e.get("/x?b=2&a=1"), "MISS")
	e.do(http.MethodDelete, "/x?b=2&a=1")
	wantX(t, e.get("/x?b=2&a=1"), "MISS")
}

func TestStaleWhileRevalidate(t *testing.T) {
	var n atomic.Int64
	refreshed := make(chan struct{}, 1)
	e := newEnv(t, Config{}, func(w http.ResponseWriter, r *http.Request) {
		v := n.Add(1)
		w.Header().Set("Cache-Control", "max-age=1, stale-while-revalidate=60")
		fmt.Fprintf(w, "v%d", v)
		if v == 2 {
			refreshed <- struct{}{}
		}
	})
	e.get("/s")
	e.clock.advance(5 * time.Second)
	r := e.get("/s")
	wantX(t, r, "STALE")
	if r.body != "v1" {
		t.Fatalf("stale body %q", r.body)
	}
	<-refreshed
	deadline := time.Now().Add(5 * time.Second)
	for {
		r = e.get("/s")
		if r.header.Get("X-Cache") == "HIT" && r.body == "v2" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("background refresh never stored: %q %q", r.header.Get("X-Cache"), r.body)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Past the window: a synchronous fetch.
	e.clock.advance(2 * time.Minute)
	r = e.get("/s")
	wantX(t, r, "MISS")
	if r.body != "v3" {
		t.Fatalf("past the window: %q", r.body)
	}
}

func TestStaleIfError(t *testing.T) {
	var fail atomic.Bool
	e := newEnv(t, Config{MaxStaleIfError: 30 * time.Second}, func(w http.ResponseWriter, r *http.Request) {
		if fail.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Cache-Control", "max-age=1, stale-if-error=600")
		_, _ = io.WriteString(w, "good")
	})
	e.get("/e")
	fail.Store(true)
	e.clock.advance(10 * time.Second)
	r := e.get("/e")
	wantX(t, r, "STALE")
	if r.status != 200 || r.body != "good" {
		t.Fatalf("stale-if-error: %d %q", r.status, r.body)
	}
	// The config caps the origin's 600 s at 30 s.
	e.clock.advance(30 * time.Second)
	if r = e.get("/e"); r.status != http.StatusServiceUnavailable {
		t.Fatalf("past the capped window: %d %q", r.status, r.body)
	}
}

func TestMustRevalidateForbidsStale(t *testing.T) {
	var fail atomic.Bool
	e := newEnv(t, Config{}, func(w http.ResponseWriter, r *http.Request) {
		if fail.Load() {
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		w.Header().Set("Cache-Control", "max-age=1, must-revalidate, stale-if-error=600, stale-while-revalidate=600")
		_, _ = io.WriteString(w, "good")
	})
	e.get("/e")
	fail.Store(true)
	e.clock.advance(10 * time.Second)
	if r := e.get("/e"); r.status != http.StatusBadGateway {
		t.Fatalf("must-revalidate served stale: %d %q", r.status, r.body)
	}
}

func TestCoalescing(t *testing.T) {
	const n = 20
	for _, cacheable := range []bool{true, false} {
		t.Run(fmt.Sprint("cacheable=", cacheable), func(t *testing.T) {
			release := make(chan struct{})
			e := newEnv(t, Config{}, func(w http.ResponseWriter, r *http.Request) {
				<-release
				if cacheable {
					w.Header().Set("Cache-Control", "max-age=60")
				} else {
					w.Header().Set("Cache-Control", "no-store")
				}
				_, _ = io.WriteString(w, "v")
			})
			var entered atomic.Int64
			inner := e.front.Config.Handler
			e.front.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				entered.Add(1)
				inner.ServeHTTP(w, r)
			})
			var wg sync.WaitGroup
			bodies := make([]string, n)
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					bodies[i] = e.get("/cold").body
				}()
			}
			for entered.Load() < n {
				time.Sleep(time.Millisecond)
			}
			time.Sleep(20 * time.Millisecond) // let them reach the flight
			close(release)
			wg.Wait()
			for i, b := range bodies {
				if b != "v" {
					t.Fatalf("request %d got %q", i, b)
				}
			}
			if cacheable {
				e.wantOrigin(1)
				return
			}
			// Uncacheable: every waiter went to the backend itself, and
			// the key now skips coalescing.
			e.wantOrigin(n)
			if _, pass := e.store.lookup("http://"+e.front.Listener.Addr().String()+"/cold", nil, e.clock.now()); !pass {
				t.Fatal("no pass marker after an uncacheable response")
			}
		})
	}
}

func TestLargeResponseStreamedNotStored(t *testing.T) {
	const size = 4 << 20
	chunk := bytes.Repeat([]byte("x"), 32<<10)
	e := newEnv(t, Config{MaxObjectSize: 64 << 10}, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		for written := 0; written < size; written += len(chunk) {
			_, _ = w.Write(chunk) // no Content-Length: streamed
		}
	})
	r := e.get("/big")
	if len(r.body) != size {
		t.Fatalf("client got %d bytes, want %d", len(r.body), size)
	}
	wantX(t, r, "MISS")
	if r = e.get("/big"); len(r.body) != size {
		t.Fatalf("second client got %d bytes", len(r.body))
	}
	e.wantOrigin(2)
	if e.store.Len() != 0 {
		t.Fatalf("store holds %d entries (%d bytes)", e.store.Len(), e.store.Size())
	}
}

func TestVary(t *testing.T) {
	e := newEnv(t, Config{}, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Vary", "Accept-Language")
		_, _ = io.WriteString(w, "lang="+r.Header.Get("Accept-Language"))
	})
	e.get("/v", "Accept-Language", "de")
	e.get("/v", "Accept-Language", "fr")
	for _, l := range []string{"de", "fr"} {
		r := e.get("/v", "Accept-Language", l)
		wantX(t, r, "HIT")
		if r.body != "lang="+l {
			t.Fatalf("%s got %q", l, r.body)
		}
	}
	wantX(t, e.get("/v"), "MISS")
	e.wantOrigin(3)
}

// TestPoisoningUnkeyedHeader: the backend builds links from
// X-Forwarded-Host, which is not in the key. What a shared cache can
// guarantee: a response generated under such a header is stored only if
// the origin declared the dependency with Vary, so other clients never
// get it.
func TestPoisoningUnkeyedHeader(t *testing.T) {
	reflect := func(vary bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "public, max-age=600")
			if vary {
				w.Header().Set("Vary", "X-Forwarded-Host")
			}
			host := r.Header.Get("X-Forwarded-Host")
			if host == "" {
				host = "good.example"
			}
			_, _ = io.WriteString(w, `<script src="https://`+host+`/app.js">`)
		}
	}
	for _, vary := range []bool{false, true} {
		t.Run(fmt.Sprint("vary=", vary), func(t *testing.T) {
			e := newEnv(t, Config{}, reflect(vary))
			r := e.get("/", "X-Forwarded-Host", "evil.example")
			if !strings.Contains(r.body, "evil.example") {
				t.Fatalf("attacker's own response %q", r.body)
			}
			r = e.get("/")
			if strings.Contains(r.body, "evil") {
				t.Fatalf("poisoned: clean client got %q", r.body)
			}
			wantX(t, r, "MISS")
			wantX(t, e.get("/"), "HIT")
			// The attacker's header does not fetch a new one for others.
			e.get("/", "X-Forwarded-Host", "evil2.example")
			if r = e.get("/"); strings.Contains(r.body, "evil") {
				t.Fatalf("poisoned later: %q", r.body)
			}
		})
	}
	// Allowed (a trusted proxy overwrites it): stored as usual.
	e := newEnv(t, Config{AllowUnkeyedHeaders: []string{"x-forwarded-proto"}}, fixed("Cache-Control", "max-age=60"))
	e.get("/", "X-Forwarded-Proto", "https")
	wantX(t, e.get("/", "X-Forwarded-Proto", "https"), "HIT")
}

func TestIgnoredQueryParamsNotForwarded(t *testing.T) {
	e := newEnv(t, Config{Key: KeyConfig{IgnoreQueryParams: []string{"utm_source"}}}, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		_, _ = io.WriteString(w, "q="+r.URL.RawQuery)
	})
	r := e.get("/p?utm_source=evil&id=1")
	if r.body != "q=id=1" {
		t.Fatalf("origin saw %q, want id=1 only", r.body)
	}
	r = e.get("/p?id=1&utm_source=other")
	wantX(t, r, "HIT")
	wantX(t, e.get("/p?id=2"), "MISS")
}

// TestCacheDeception: /account/x.css where the origin ignores the suffix
// and returns the user's private page. The extension never makes a
// response cacheable; only the origin's headers do.
func TestCacheDeception(t *testing.T) {
	for _, tc := range []struct {
		name string
		hdr  []string
		req  string // credential header
	}{
		{"no freshness, cookie, heuristic on", nil, "Cookie"},
		{"no freshness, authorization", nil, "Authorization"},
		{"set-cookie refresh", []string{"Set-Cookie", "sid=new"}, "Cookie"},
		{"private", []string{"Cache-Control", "private, max-age=600"}, "Cookie"},
		{"max-age without public, authorization", []string{"Cache-Control", "max-age=600"}, "Authorization"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Config{DefaultTTL: time.Hour, CacheAuthorizedPublic: true}, func(w http.ResponseWriter, r *http.Request) {
				for i := 0; i+1 < len(tc.hdr); i += 2 {
					w.Header().Set(tc.hdr[i], tc.hdr[i+1])
				}
				w.Header().Set("Content-Type", "text/html")
				user := r.Header.Get(tc.req)
				_, _ = io.WriteString(w, "account of "+user)
			})
			e.get("/account/x.css", tc.req, "alice")
			r := e.get("/account/x.css", tc.req, "bob")
			if strings.Contains(r.body, "alice") {
				t.Fatalf("bob got alice's page: %q", r.body)
			}
			r = e.get("/account/x.css")
			if strings.Contains(r.body, "alice") || strings.Contains(r.body, "bob") {
				t.Fatalf("anonymous got a private page: %q", r.body)
			}
			e.wantOrigin(3)
		})
	}
}

func TestDisabledAndNew(t *testing.T) {
	c, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	h := http.NotFoundHandler()
	if fmt.Sprint(c.Wrap(h)) != fmt.Sprint(h) {
		t.Fatal("disabled Wrap is not next")
	}
	if _, err := New(Config{Enabled: true}); err == nil {
		t.Fatal("enabled without a store: no error")
	}
	if _, err := New(Config{DefaultTTL: -1}); err == nil {
		t.Fatal("New did not validate")
	}
}

func TestTruncatedNotStored(t *testing.T) {
	// The backend promises 10 bytes and dies after 5: nothing truncated
	// is ever stored.
	started := make(chan struct{})
	e := newEnv(t, Config{}, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Content-Length", "10")
		_, _ = io.WriteString(w, "12345")
		w.(http.Flusher).Flush()
		close(started)
		// Then the backend dies: a truncated body.
	})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.front.URL+"/t", nil)
	res, err := e.front.Client().Do(req)
	if err == nil {
		<-started
		_, _ = io.ReadAll(res.Body)
		res.Body.Close()
	}
	cancel()
	if e.store.Len() != 0 {
		t.Fatal("a truncated response was stored")
	}
}

func metricValue(c prometheus.Metric) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

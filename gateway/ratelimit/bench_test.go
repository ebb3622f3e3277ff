package ratelimit

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/outrider-mesh/outrider/gateway/clientip"
	"github.com/outrider-mesh/outrider/gateway/reqinfo"
	"github.com/prometheus/client_golang/prometheus"
)

// fast admits every benchmark iteration: a billion per second, and a
// burst large enough that the real clock never runs it dry.
var fast = Limit{Requests: 1_000_000_000, Period: time.Second, Burst: 1 << 30, Key: Key{Header: "X-Api-Key"}}

// The decision for a per-key limit whose key already has a bucket.
func BenchmarkLocalDecision(b *testing.B) {
	lim := mustNew(b, Config{Limits: []Limit{fast}})
	l := lim.local[0]
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("X-Api-Key", "key-123456")
	info := &reqinfo.Info{}
	var res clientip.Resolver
	l.takeLocal(req, info, res, 0)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if v, _ := l.takeLocal(req, info, res, int64(i)); !v.ok {
			b.Fatal("limited")
		}
	}
}

// The same behind a client address: X-Forwarded-For walked through a
// trusted proxy.
func BenchmarkLocalDecisionClientIP(b *testing.B) {
	c := fast
	c.Key = Key{ClientIP: true}
	res, _ := clientip.New([]string{"10.0.0.0/8"})
	lim := mustNew(b, Config{Limits: []Limit{c}}, WithClientIP(res))
	l := lim.local[0]
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("X-Forwarded-For", "203.0.113.9, 10.1.2.3")
	info := &reqinfo.Info{Remote: netip.MustParseAddr("10.0.0.1")}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if v, _ := l.takeLocal(req, info, lim.resolver, int64(i)); !v.ok {
			b.Fatal("limited")
		}
	}
}

// nopWriter is a ResponseWriter that costs nothing, so the benchmark
// measures the middleware.
type nopWriter struct{ h http.Header }

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *nopWriter) WriteHeader(int)             {}

// The Wrap'd middleware on an admitted request: reqinfo lookup, the real
// clock, the decision, metrics, next.
func BenchmarkWrap(b *testing.B) {
	for _, headers := range []bool{false, true} {
		name := "headers=off"
		if headers {
			name = "headers=on"
		}
		b.Run(name, func(b *testing.B) {
			lim := mustNew(b, Config{Headers: headers, Limits: []Limit{fast}}, WithMetrics(NewMetrics(prometheus.NewRegistry()), "r"))
			h := lim.Wrap(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
			req := httptest.NewRequest("GET", "/", nil)
			req.Header.Set("X-Api-Key", "key-123456")
			req = req.WithContext(reqinfo.With(req.Context(), &reqinfo.Info{Remote: netip.MustParseAddr("10.0.0.1")}))
			w := &nopWriter{h: http.Header{}}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				h.ServeHTTP(w, req)
			}
		})
	}
}

// A global decision against the local redis-server (Unix socket): one
// EVALSHA per request.
func BenchmarkGlobalDecision(b *testing.B) {
	sock := startRedis(b)
	c := fast
	c.Name, c.Scope, c.Requests = "bench", ScopeGlobal, 1_000_000
	lim := mustNew(b, Config{Limits: []Limit{c}}, WithRedis(newRedis(b, RedisConfig{Address: sock, Timeout: time.Second})))
	var st int
	h := lim.Wrap(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { st = 200 }))
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("X-Api-Key", "key-123456")
	w := &nopWriter{h: http.Header{}}
	h.ServeHTTP(w, req)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		st = 0
		h.ServeHTTP(w, req)
		if st != 200 {
			b.Fatal("not admitted")
		}
	}
}

// FuzzConfig: whatever names, header names and claim paths a
// configuration holds, Validate either rejects them or New compiles them
// into response headers that stay valid structured fields (a quoted
// sf-string the name cannot break out of).
func FuzzConfig(f *testing.F) {
	f.Add("per-key", "X-Api-Key", "org.id", 10, int64(time.Second))
	f.Add(`a"b`, "X Key", "a..b", 0, int64(0))
	f.Add("", "", "", -1, int64(-1))
	f.Add("n\\", "x:y", ".", 1, int64(1))
	f.Fuzz(func(t *testing.T, name, header, claim string, requests int, period int64) {
		cfg := Config{Headers: true, Limits: []Limit{
			{Name: name, Requests: requests, Period: time.Duration(period), Key: Key{Header: header}},
			{Requests: 1, Period: time.Second, Key: Key{JWTClaim: claim}},
		}}
		lim, err := New(cfg, WithLogger(discardLogger()))
		if err != nil {
			if cfg.Validate() == nil {
				t.Fatalf("New failed but Validate passed: %v", err)
			}
			return
		}
		for _, it := range strings.Split(lim.policy, ", ") {
			if strings.Count(it, `"`) != 2 || !strings.HasPrefix(it, `"`) || strings.ContainsAny(it, "\\\r\n") {
				t.Fatalf("policy item %q is not a quoted name with parameters", it)
			}
		}
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/", nil)
		if header != "" {
			req.Header.Set(header, "v")
		}
		lim.Wrap(http.NotFoundHandler()).ServeHTTP(rec, req)
		if rec.Code != 404 && rec.Code != 429 {
			t.Fatalf("status %d", rec.Code)
		}
	})
}

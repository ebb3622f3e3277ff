package gateway

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outrider-mesh/outrider/gateway/cache"
	"github.com/outrider-mesh/outrider/gateway/filter"
	"github.com/outrider-mesh/outrider/gateway/ratelimit"
	"github.com/outrider-mesh/outrider/gateway/reqinfo"
)

// TestRouteFilterOutermost: a request the filter refuses takes no
// rate-limit token, is not answered from the cache nor stored in it, and
// never reaches the upstream; the filter's response edits apply to the
// rate limit's and the cache's answers too.
func TestRouteFilterOutermost(t *testing.T) {
	var hits atomic.Int64
	upstream := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Cache-Control", "public, max-age=60")
		io.WriteString(w, "fresh")
	})
	g, err := New(Config{Routes: []Route{{
		Name:      "api",
		RateLimit: ratelimit.Config{Limits: []ratelimit.Limit{{Requests: 2, Period: time.Hour}}},
		Cache:     cache.Config{Enabled: true},
		Filter:    filter.Config{DenyCIDRs: []string{"198.51.100.0/24"}, SecurityHeaders: true},
	}}}, upstream)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	get := func(remote string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", "http://api.example/items", nil)
		r = r.WithContext(reqinfo.With(r.Context(), &reqinfo.Info{Remote: netip.MustParseAddr(remote)}))
		w := httptest.NewRecorder()
		g.ServeHTTP(w, r)
		return w
	}
	for range 5 {
		if w := get("198.51.100.9"); w.Code != 403 || w.Header().Get("X-Frame-Options") != "DENY" {
			t.Fatalf("denied client: %d %v", w.Code, w.Header())
		}
	}
	if hits.Load() != 0 {
		t.Fatalf("the upstream saw %d refused requests", hits.Load())
	}
	// Both tokens are still there: the refusals took none. The second
	// answer comes from the cache, with the filter's headers.
	w1, w2 := get("10.0.0.1"), get("10.0.0.1")
	if w1.Code != 200 || w2.Code != 200 || hits.Load() != 1 || w2.Header().Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("allowed client: %d then %d, upstream saw %d; %v", w1.Code, w2.Code, hits.Load(), w2.Header())
	}
	if w := get("10.0.0.1"); w.Code != 429 || w.Header().Get("X-Frame-Options") != "DENY" {
		t.Fatalf("third allowed request: %d %v, want the limit's 429 with the filter's headers", w.Code, w.Header())
	}
	// A cached answer is not served to a denied client either.
	if w := get("198.51.100.9"); w.Code != 403 || strings.Contains(w.Body.String(), "fresh") {
		t.Fatalf("denied client after caching: %d %q", w.Code, w.Body)
	}
}

func TestRouteFilterValidate(t *testing.T) {
	cfg := Config{Routes: []Route{{}, {Filter: filter.Config{
		AllowCIDRs: []string{"10.0.0.0/8", "10.0.0.0/99"},
		CORS:       filter.CORS{AllowOrigins: []string{"*"}, AllowCredentials: true},
	}}}}
	_, err := New(cfg, http.NotFoundHandler())
	for _, want := range []string{"routes[1].filter.allow_cidrs[1]: ", "routes[1].filter.cors.allow_origins[0]: "} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in\n%v", want, err)
		}
	}
}

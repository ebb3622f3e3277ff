package cache

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"testing"
)

// BenchmarkCache compares, in one run, a request served from the cache
// (Hit) with one that goes through the cache to a real loopback backend
// behind httputil.ReverseProxy and is stored (Miss, a new key each
// time), one the backend marks no-store (Uncacheable), and the same
// proxy without the cache (Proxy).
func BenchmarkCache(b *testing.B) {
	body := strings.Repeat("x", 2048)
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Has("nostore") {
			w.Header().Set("Cache-Control", "no-store")
		} else {
			w.Header().Set("Cache-Control", "max-age=600")
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("ETag", `"abc"`)
		_, _ = w.Write([]byte(body))
	}))
	defer be.Close()
	u, _ := url.Parse(be.URL)
	proxy := httputil.NewSingleHostReverseProxy(u)
	proxy.Transport = &http.Transport{MaxIdleConnsPerHost: 64}
	c, err := New(Config{Enabled: true, XCacheHeader: "X-Cache"}, WithStore(NewStore(8<<20)))
	if err != nil {
		b.Fatal(err)
	}
	h := c.Wrap(proxy)
	run := func(b *testing.B, h http.Handler, target func(i int) string) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			r := httptest.NewRequest(http.MethodGet, target(i), nil)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != 200 || w.Body.Len() != len(body) {
				b.Fatalf("status %d, %d bytes", w.Code, w.Body.Len())
			}
		}
	}
	b.Run("Hit", func(b *testing.B) { run(b, h, func(int) string { return "http://svc/hot" }) })
	b.Run("Miss", func(b *testing.B) {
		run(b, h, func(i int) string { return "http://svc/cold?i=" + strconv.Itoa(i) })
	})
	b.Run("Uncacheable", func(b *testing.B) { run(b, h, func(int) string { return "http://svc/x?nostore" }) })
	b.Run("Proxy", func(b *testing.B) { run(b, proxy, func(int) string { return "http://svc/hot" }) })
}

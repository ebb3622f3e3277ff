package aggregate

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// BenchmarkAggregate is the aggregator's own cost: three parallel parts
// whose upstream handlers answer from memory, no network.
func BenchmarkAggregate(b *testing.B) {
	for _, mode := range []string{"whole", "partial"} {
		b.Run(mode, func(b *testing.B) {
			h := jsonHandler(`{"id":42,"name":"ada","tags":["a","b","c"]}`)
			a, err := New(homeConfig(mode, one("a", "x", "/a"), one("b", "x", "/b/{query.id}"), one("c", "x", "/c")),
				WithResolver(func(string) (http.Handler, bool) { return h, true }), WithMetrics(NewMetrics(prometheus.NewRegistry()), "bench"))
			if err != nil {
				b.Fatal(err)
			}
			srv := a.Wrap(http.NotFoundHandler())
			req := httptest.NewRequest("GET", "/composite/home?id=7", nil)
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				srv.ServeHTTP(w, req)
				if w.Code != 200 {
					b.Fatal(w.Code, w.Body.String())
				}
			}
		})
	}
}

// BenchmarkAggregateSequential: a part waiting for another's field.
func BenchmarkAggregateSequential(b *testing.B) {
	h := jsonHandler(`{"id":42,"name":"ada"}`)
	a, err := New(homeConfig("", one("a", "x", "/a"), Part{Name: "b", Upstream: "x", Path: "/b/{parts.a.body.id}", After: []string{"a"}}),
		WithResolver(func(string) (http.Handler, bool) { return h, true }))
	if err != nil {
		b.Fatal(err)
	}
	srv := a.Wrap(http.NotFoundHandler())
	req := httptest.NewRequest("GET", "/composite/home", nil)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, req)
		io.Copy(io.Discard, w.Body)
	}
}

// BenchmarkPassThrough: a request for another path.
func BenchmarkPassThrough(b *testing.B) {
	a, _ := New(homeConfig("", one("a", "x", "/a")), WithResolver(func(string) (http.Handler, bool) { return nil, false }))
	srv := a.Wrap(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	req := httptest.NewRequest("GET", "/other", nil)
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		srv.ServeHTTP(w, req)
	}
}

package filter

import (
	"net/http"
	"testing"
	"time"
)

// discardWriter is a minimal downstream ResponseWriter, so that the
// benchmark's allocations are the middleware's own.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) WriteHeader(int)             {}
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }

// BenchmarkAllow is the cost of a request the filter admits (the common
// case): its checks, and its response edits on a small answer.
func BenchmarkAllow(b *testing.B) {
	full := Config{
		AllowCIDRs: []string{"10.0.0.0/8", "192.168.0.0/16", "2001:db8::/32"}, DenyCIDRs: []string{"10.6.6.0/24", "10.7.7.7"},
		MaxBodyBytes: 1 << 20, MaxHeaders: 50, MaxHeaderBytes: 16 << 10,
		CORS: CORS{AllowOrigins: []string{"https://app.example.com", "https://*.example.org"}, AllowCredentials: true,
			ExposeHeaders: []string{"X-Request-Id"}, MaxAge: time.Hour},
		SecurityHeaders: true,
		ResponseHeaders: ResponseHeaders{Set: map[string]string{"Strict-Transport-Security": "max-age=63072000"}, Remove: []string{"Server"}},
	}
	for _, bc := range []struct {
		name   string
		cfg    Config
		origin string
	}{
		{"cidr", Config{AllowCIDRs: full.AllowCIDRs, DenyCIDRs: full.DenyCIDRs}, ""},
		{"limits", Config{MaxBodyBytes: 1 << 20, MaxHeaders: 50, MaxHeaderBytes: 16 << 10}, ""},
		{"security_headers", Config{SecurityHeaders: true}, ""},
		{"full/no_origin", full, ""},
		{"full/exact_origin", full, "https://app.example.com"},
		{"full/wildcard_origin", full, "https://tenant.example.org"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			f, err := New(bc.cfg)
			if err != nil {
				b.Fatal(err)
			}
			ct, payload := []string{"application/json"}, []byte(`{"ok":true}`)
			h := f.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header()["Content-Type"] = ct
				w.WriteHeader(200)
				_, _ = w.Write(payload)
			}))
			lines := []string{"User-Agent: bench/1.0", "Accept: application/json", "Content-Type: application/json", "Authorization: Bearer abc.def.ghi"}
			if bc.origin != "" {
				lines = append(lines, "Origin: "+bc.origin)
			}
			req := request("POST", "/api/items", "10.1.2.3", http.NoBody, lines...)
			req.ContentLength = 512
			dw := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				clear(dw.h)
				h.ServeHTTP(dw, req)
			}
			b.StopTimer()
			if bc.origin != "" && dw.h.Get("Access-Control-Allow-Origin") != bc.origin {
				b.Fatalf("not allowed: %v", dw.h)
			}
		})
	}
}

package compress

import (
	"fmt"
	"math/rand"
	"net/http"
	"strings"
	"testing"
)

// jsonBody is about 10 KiB of realistic JSON: an array of objects with
// repeated keys and varied values, the same on every run.
func jsonBody(size int) []byte {
	rng := rand.New(rand.NewSource(9))
	words := []string{"alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"}
	var b strings.Builder
	b.WriteString("[")
	for i := 0; b.Len() < size-200; i++ {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"id":%d,"uuid":"%08x-%04x-%04x","name":"%s %s","email":"%s%d@example.com","active":%t,"score":%.3f,"tags":["%s","%s"],"created_at":"2026-%02d-%02dT%02d:%02d:%02dZ"}`,
			1000+i, rng.Uint32(), rng.Intn(1<<16), rng.Intn(1<<16),
			words[rng.Intn(10)], words[rng.Intn(10)], words[rng.Intn(10)], rng.Intn(1000),
			rng.Intn(2) == 1, rng.Float64()*100, words[rng.Intn(10)], words[rng.Intn(10)],
			1+rng.Intn(12), 1+rng.Intn(28), rng.Intn(24), rng.Intn(60), rng.Intn(60))
	}
	b.WriteString("]")
	return []byte(b.String())
}

// discardWriter is a minimal downstream ResponseWriter, so that the
// benchmark's allocations are the middleware's own.
type discardWriter struct {
	h http.Header
	n int64
}

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) WriteHeader(int)             {}
func (d *discardWriter) Write(p []byte) (int, error) { d.n += int64(len(p)); return len(p), nil }

func BenchmarkResponse(b *testing.B) {
	body := jsonBody(10 << 10)
	for _, alg := range []string{"zstd", "br", "gzip"} {
		b.Run(alg, func(b *testing.B) {
			c, err := New(Config{Enabled: true})
			if err != nil {
				b.Fatal(err)
			}
			h := c.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header()["Content-Type"] = []string{"application/json"}
				_, _ = w.Write(body)
			}))
			req, _ := http.NewRequest("GET", "/", nil)
			req.Header.Set("Accept-Encoding", alg)
			dw := &discardWriter{h: http.Header{}}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				clear(dw.h)
				h.ServeHTTP(dw, req)
			}
			b.StopTimer()
			if dw.h.Get("Content-Encoding") != alg {
				b.Fatalf("not compressed with %s", alg)
			}
			b.ReportMetric(float64(len(body))*float64(b.N)/float64(dw.n), "ratio")
		})
	}
}

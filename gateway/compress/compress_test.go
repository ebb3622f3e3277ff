package compress

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/prometheus/client_golang/prometheus"
)

// serve runs the middleware built from cfg in front of backend on a real
// server, and returns a client that neither asks for nor decodes gzip on
// its own.
func serve(t *testing.T, cfg Config, backend http.Handler, opts ...Option) (*httptest.Server, *http.Client) {
	t.Helper()
	c, err := New(cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.Wrap(backend))
	t.Cleanup(srv.Close)
	return srv, &http.Client{Transport: &http.Transport{DisableCompression: true}}
}

func do(t *testing.T, client *http.Client, method, url string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// decode undoes the response's Content-Encoding.
func decode(t *testing.T, coding string, b []byte) []byte {
	t.Helper()
	var r io.Reader
	switch coding {
	case "":
		return b
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		r = zr
	case "br":
		r = brotli.NewReader(bytes.NewReader(b))
	case "zstd":
		zr, err := zstd.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		r = zr
	default:
		t.Fatalf("unexpected Content-Encoding %q", coding)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("decoding %s: %v", coding, err)
	}
	return out
}

var page = []byte(strings.Repeat(`{"id":1,"name":"outrider","tags":["mesh","gateway"]},`, 100))

func pageHandler(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Etag", `"v1"`)
	w.Header().Set("Accept-Ranges", "bytes")
	w.Header().Set("Vary", "Origin")
	w.Header().Set("Content-Length", fmt.Sprint(len(page)))
	_, _ = w.Write(page)
}

func TestNegotiation(t *testing.T) {
	srv, client := serve(t, Config{Enabled: true}, http.HandlerFunc(pageHandler))
	tests := []struct {
		accept string
		want   string
	}{
		{"gzip, deflate, br, zstd", "zstd"},
		{"gzip, deflate, br", "gzip"}, // tie: server preference
		{"br", "br"},
		{"gzip", "gzip"},
		{"x-gzip", "gzip"},
		{"br;q=0.5, gzip;q=0.9", "gzip"},
		{"*", "zstd"},
		{"*;q=0.1, zstd;q=0", "gzip"},
		{"gzip;q=0.5, br", "br"},
		{"deflate", ""},
		{"identity", ""},
		{"gzip;q=0.2, identity", ""},
		{"identity;q=0", ""}, // nothing acceptable: identity anyway
		{"", ""},
	}
	for round := 0; round < 2; round++ { // the second round reuses pooled encoders
		for _, tt := range tests {
			resp, body := do(t, client, "GET", srv.URL, map[string]string{"Accept-Encoding": tt.accept})
			ce := resp.Header.Get("Content-Encoding")
			if ce != tt.want {
				t.Errorf("Accept-Encoding %q: Content-Encoding %q, want %q", tt.accept, ce, tt.want)
				continue
			}
			if got := decode(t, ce, body); !bytes.Equal(got, page) {
				t.Errorf("Accept-Encoding %q: body differs after decoding (%d bytes)", tt.accept, len(got))
			}
			if got := resp.Header.Values("Vary"); strings.Join(got, ",") != "Origin,Accept-Encoding" {
				t.Errorf("Accept-Encoding %q: Vary %q, want Origin and Accept-Encoding once", tt.accept, got)
			}
			if ce == "" {
				if resp.Header.Get("Etag") != `"v1"` || resp.ContentLength != int64(len(page)) || resp.Header.Get("Accept-Ranges") != "bytes" {
					t.Errorf("Accept-Encoding %q: identity response changed: %v", tt.accept, resp.Header)
				}
				continue
			}
			if resp.ContentLength != -1 && resp.ContentLength != int64(len(body)) {
				t.Errorf("%s: Content-Length %d for %d bytes", ce, resp.ContentLength, len(body))
			}
			if et := resp.Header.Get("Etag"); et != `W/"v1"` {
				t.Errorf("%s: Etag %q, want W/\"v1\"", ce, et)
			}
			if resp.Header.Get("Accept-Ranges") != "" {
				t.Errorf("%s: Accept-Ranges kept", ce)
			}
			if len(body) >= len(page)/4 {
				t.Errorf("%s: %d bytes from %d: not compressed", ce, len(body), len(page))
			}
		}
	}
}

func TestSkipped(t *testing.T) {
	big := bytes.Repeat([]byte("compressible text "), 200)
	tests := []struct {
		name    string
		method  string
		reqHdr  map[string]string
		handler http.HandlerFunc
		vary    bool
		status  int
	}{
		{name: "small with Content-Length", handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set("Content-Length", "100")
			_, _ = w.Write(big[:100])
		}},
		{name: "small without Content-Length", handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			_, _ = w.Write(big[:500])
			_, _ = w.Write(big[500:1000])
		}},
		{name: "type not allowed", handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "image/png")
			_, _ = w.Write(big)
		}},
		{name: "sniffed type not allowed", handler: func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write(append([]byte("\x89PNG\r\n\x1a\n"), big...))
		}},
		{name: "content type suppressed", handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header()["Content-Type"] = nil
			_, _ = w.Write(big)
		}},
		{name: "grpc response", handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/grpc")
			_, _ = w.Write(big)
		}},
		{name: "grpc request", reqHdr: map[string]string{"Content-Type": "application/grpc+proto"}, handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			_, _ = w.Write(big)
		}},
		{name: "already encoded", handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set("Content-Encoding", "identity")
			_, _ = w.Write(big)
		}},
		{name: "range answer", reqHdr: map[string]string{"Range": "bytes=0-"}, status: 206, handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set("Content-Range", fmt.Sprintf("bytes 0-%d/%d", len(big)-1, len(big)))
			w.WriteHeader(http.StatusPartialContent)
			_, _ = w.Write(big)
		}},
		{name: "response no-transform", handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set("Cache-Control", "public, No-Transform")
			_, _ = w.Write(big)
		}},
		{name: "request no-transform", reqHdr: map[string]string{"Cache-Control": "no-transform"}, handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			_, _ = w.Write(big)
		}},
		{name: "client accepts none", reqHdr: map[string]string{"Accept-Encoding": "deflate"}, vary: true, handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			_, _ = w.Write(big)
		}},
		{name: "no Accept-Encoding", reqHdr: map[string]string{"Accept-Encoding": ""}, vary: true, handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			_, _ = w.Write(big)
		}},
		{name: "HEAD", method: "HEAD", vary: true, handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			_, _ = w.Write(big)
		}},
		{name: "304", status: 304, handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusNotModified)
		}},
		{name: "204", status: 204, handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusNoContent)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, client := serve(t, Config{Enabled: true}, tt.handler)
			hdr := map[string]string{"Accept-Encoding": "gzip, br, zstd"}
			for k, v := range tt.reqHdr {
				hdr[k] = v
			}
			if hdr["Accept-Encoding"] == "" {
				delete(hdr, "Accept-Encoding")
			}
			method := tt.method
			if method == "" {
				method = "GET"
			}
			resp, body := do(t, client, method, srv.URL, hdr)
			want := tt.status
			if want == 0 {
				want = 200
			}
			if resp.StatusCode != want {
				t.Fatalf("status %d, want %d", resp.StatusCode, want)
			}
			if ce := resp.Header.Get("Content-Encoding"); ce != "" && ce != "identity" {
				t.Errorf("Content-Encoding %q, want none", ce)
			}
			if hasVary := hasToken(resp.Header["Vary"], "Accept-Encoding"); hasVary != tt.vary {
				t.Errorf("Vary: Accept-Encoding present %v, want %v", hasVary, tt.vary)
			}
			if method == "GET" && want != 204 && want != 304 && !bytes.Contains(body, []byte("compressible text compressible")) {
				t.Errorf("body changed (%d bytes)", len(body))
			}
		})
	}
}

func TestBufferedAndSniffed(t *testing.T) {
	var chunk = bytes.Repeat([]byte("<p>hello</p>"), 10) // 120 bytes
	srv, client := serve(t, Config{Enabled: true, MinSize: 1000}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// No Content-Type, no Content-Length, many small writes.
		_, _ = w.Write([]byte("<!DOCTYPE html><html>"))
		for i := 0; i < 20; i++ {
			_, _ = w.Write(chunk)
		}
	}))
	resp, body := do(t, client, "GET", srv.URL, map[string]string{"Accept-Encoding": "gzip"})
	if resp.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("Content-Encoding %q, want gzip", resp.Header.Get("Content-Encoding"))
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type %q, want the sniffed text/html", ct)
	}
	want := "<!DOCTYPE html><html>" + strings.Repeat(string(chunk), 20)
	if got := decode(t, "gzip", body); string(got) != want {
		t.Errorf("body differs: %d bytes, want %d", len(got), len(want))
	}
}

// A streamed response is flushed through the encoder: the client reads
// each event before the handler writes the next.
func TestStreamingFlush(t *testing.T) {
	for _, alg := range []string{"gzip", "br", "zstd"} {
		t.Run(alg, func(t *testing.T) {
			next := make(chan struct{})
			srv, client := serve(t, Config{Enabled: true, Algorithms: []string{alg}}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				for i := 0; i < 3; i++ {
					fmt.Fprintf(w, "data: event %d\n\n", i)
					w.(http.Flusher).Flush()
					select {
					case <-next:
					case <-r.Context().Done():
						return
					}
				}
			}))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
			req.Header.Set("Accept-Encoding", alg)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.Header.Get("Content-Encoding") != alg {
				t.Fatalf("Content-Encoding %q, want %s", resp.Header.Get("Content-Encoding"), alg)
			}
			var r io.Reader
			switch alg {
			case "gzip":
				zr, err := gzip.NewReader(resp.Body)
				if err != nil {
					t.Fatal(err)
				}
				r = zr
			case "br":
				r = brotli.NewReader(resp.Body)
			case "zstd":
				zr, err := zstd.NewReader(resp.Body)
				if err != nil {
					t.Fatal(err)
				}
				defer zr.Close()
				r = zr
			}
			br := bufio.NewReader(r)
			for i := 0; i < 3; i++ {
				line, err := br.ReadString('\n')
				if err != nil {
					t.Fatalf("event %d: %v (not flushed through the encoder?)", i, err)
				}
				if want := fmt.Sprintf("data: event %d\n", i); line != want {
					t.Fatalf("read %q, want %q", line, want)
				}
				_, _ = br.ReadString('\n')
				next <- struct{}{}
			}
		})
	}
}

func TestHTTP2(t *testing.T) {
	c, err := New(Config{Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(c.Wrap(http.HandlerFunc(pageHandler)))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	client := srv.Client()
	client.Transport.(*http.Transport).DisableCompression = true
	resp, body := do(t, client, "GET", srv.URL, map[string]string{"Accept-Encoding": "br"})
	if resp.ProtoMajor != 2 {
		t.Fatalf("protocol %s, want HTTP/2", resp.Proto)
	}
	if resp.Header.Get("Content-Encoding") != "br" || !bytes.Equal(decode(t, "br", body), page) {
		t.Errorf("HTTP/2 response not brotli-compressed correctly: %v", resp.Header)
	}
}

func TestConcurrent(t *testing.T) {
	srv, client := serve(t, Config{Enabled: true}, http.HandlerFunc(pageHandler))
	var wg sync.WaitGroup
	for i := 0; i < 12; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			alg := []string{"gzip", "br", "zstd"}[i%3]
			for j := 0; j < 10; j++ {
				req, _ := http.NewRequest("GET", srv.URL, nil)
				req.Header.Set("Accept-Encoding", alg)
				resp, err := client.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.Header.Get("Content-Encoding") != alg || !bytes.Equal(decode(t, alg, b), page) {
					t.Errorf("%s: wrong response", alg)
					return
				}
			}
		}(i)
	}
	wg.Wait()
}

func TestDisabledIsNext(t *testing.T) {
	c, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	h := http.HandlerFunc(pageHandler)
	if fmt.Sprintf("%p", c.Wrap(h)) != fmt.Sprintf("%p", h) {
		t.Error("the zero Config must leave the handler as it is")
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	srv, client := serve(t, Config{Enabled: true, DecompressRequests: Decompress{Enabled: true, MaxBytes: 1000}},
		http.HandlerFunc(pageHandler), WithMetrics(m, "api"))
	_, body := do(t, client, "GET", srv.URL, map[string]string{"Accept-Encoding": "gzip"})
	do(t, client, "GET", srv.URL, map[string]string{"Accept-Encoding": "deflate"})
	s := &sink{}
	srv2, _ := serve(t, Config{DecompressRequests: Decompress{Enabled: true, MaxBytes: 1000}}, s, WithMetrics(m, "upload"))
	post(t, client, srv2.URL, "zstd", encode(t, "zstd", make([]byte, 5000)), false)
	post(t, client, srv2.URL, "zstd", encode(t, "zstd", make([]byte, 500)), false)
	post(t, client, srv2.URL, "lz4", []byte("x"), false)
	want := map[string]float64{
		`outrider_gateway_compress_responses_total{algorithm="gzip",reason="compressed",route="api"}`:      1,
		`outrider_gateway_compress_responses_total{algorithm="none",reason="client",route="api"}`:          1,
		`outrider_gateway_compress_bytes_in_total{algorithm="gzip",route="api"}`:                           float64(len(page)),
		`outrider_gateway_compress_bytes_out_total{algorithm="gzip",route="api"}`:                          float64(len(body)),
		`outrider_gateway_compress_requests_total{algorithm="zstd",outcome="too_large",route="upload"}`:    1,
		`outrider_gateway_compress_requests_total{algorithm="zstd",outcome="decompressed",route="upload"}`: 1,
		`outrider_gateway_compress_requests_total{algorithm="none",outcome="unsupported",route="upload"}`:  1,
	}
	got := gather(t, reg)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}

// gather flattens the registry's counters to "name{labels}" -> value.
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			out[mf.GetName()+"{"+strings.Join(labels, ",")+"}"] = m.GetCounter().GetValue()
		}
	}
	return out
}

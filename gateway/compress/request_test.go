package compress

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

func encode(t testing.TB, coding string, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	var w io.WriteCloser
	switch coding {
	case "gzip":
		w = gzip.NewWriter(&buf)
	case "br":
		w = brotli.NewWriter(&buf)
	case "zstd":
		zw, err := zstd.NewWriter(&buf)
		if err != nil {
			t.Fatal(err)
		}
		w = zw
	}
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// sink is a backend that reads the whole body, remembers how much it got
// and what headers it saw, and answers with its own status.
type sink struct {
	n       atomic.Int64
	calls   atomic.Int64
	header  atomic.Value // http.Header
	body    atomic.Value // []byte, first 1 KiB
	clength atomic.Int64
}

func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.calls.Add(1)
	s.header.Store(r.Header.Clone())
	s.clength.Store(r.ContentLength)
	var buf bytes.Buffer
	n, err := io.Copy(&buf, r.Body)
	s.n.Store(n)
	s.body.Store(buf.Bytes())
	if err != nil {
		// A typical backend: its own error page. The middleware must
		// replace it.
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = io.WriteString(w, `{"error":"`+err.Error()+`"}`)
		return
	}
	_, _ = io.WriteString(w, "ok")
}

// unsized hides a reader's length from the client, which then sends the
// body chunked (HTTP/1.1) with no Content-Length.
type unsized struct{ r io.Reader }

func (u unsized) Read(p []byte) (int, error) { return u.r.Read(p) }

func post(t *testing.T, client *http.Client, url, coding string, body []byte, chunked bool) (*http.Response, string) {
	t.Helper()
	var r io.Reader = bytes.NewReader(body)
	if chunked {
		r = unsized{r}
	}
	req, err := http.NewRequest("POST", url, r)
	if err != nil {
		t.Fatal(err)
	}
	if coding != "" {
		req.Header.Set("Content-Encoding", coding)
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestDecompressionBomb(t *testing.T) {
	const limit = 1 << 20
	zeros := make([]byte, 10<<20)
	for _, coding := range []string{"gzip", "br", "zstd"} {
		bomb := encode(t, coding, zeros)
		if len(bomb) > 64<<10 {
			t.Fatalf("%s bomb is %d bytes", coding, len(bomb))
		}
		for _, chunked := range []bool{false, true} {
			name := coding
			if chunked {
				name += "/chunked"
			}
			t.Run(name, func(t *testing.T) {
				s := &sink{}
				srv, client := serve(t, Config{Enabled: true, DecompressRequests: Decompress{Enabled: true, MaxBytes: limit}}, s)
				resp, body := post(t, client, srv.URL, coding, bomb, chunked)
				if resp.StatusCode != http.StatusRequestEntityTooLarge {
					t.Fatalf("status %d (%q), want 413", resp.StatusCode, body)
				}
				if !strings.Contains(body, "size limit") || resp.Header.Get("Content-Encoding") != "" {
					t.Errorf("413 body %q, headers %v", body, resp.Header)
				}
				if got := s.n.Load(); got > limit {
					t.Errorf("backend read %d bytes, more than the %d limit", got, limit)
				}
				if s.calls.Load() != 1 {
					t.Errorf("backend called %d times", s.calls.Load())
				}
			})
		}
	}
}

func TestDecompressWithinLimit(t *testing.T) {
	const limit = 64 << 10
	exact := bytes.Repeat([]byte("0123456789abcdef"), limit/16)
	for _, coding := range []string{"gzip", "x-gzip", "br", "zstd"} {
		t.Run(coding, func(t *testing.T) {
			s := &sink{}
			srv, client := serve(t, Config{DecompressRequests: Decompress{Enabled: true, MaxBytes: limit}}, s)
			enc := coding
			if enc == "x-gzip" {
				enc = "gzip"
			}
			resp, body := post(t, client, srv.URL, coding, encode(t, enc, exact), false)
			if resp.StatusCode != 200 || body != "ok" {
				t.Fatalf("status %d %q, want 200 ok (a body of exactly max_bytes)", resp.StatusCode, body)
			}
			if !bytes.Equal(s.body.Load().([]byte), exact) {
				t.Error("backend got a different body")
			}
			h := s.header.Load().(http.Header)
			if h.Get("Content-Encoding") != "" || h.Get("Content-Length") != "" || s.clength.Load() != -1 {
				t.Errorf("request passed on with Content-Encoding %q, Content-Length %q/%d", h.Get("Content-Encoding"), h.Get("Content-Length"), s.clength.Load())
			}
			// One byte more is refused.
			resp, _ = post(t, client, srv.URL, enc, encode(t, enc, append(exact, 'x')), false)
			if resp.StatusCode != http.StatusRequestEntityTooLarge {
				t.Errorf("max_bytes+1: status %d, want 413", resp.StatusCode)
			}
		})
	}
}

func TestRequestCodings(t *testing.T) {
	gz := encode(t, "gzip", []byte("hello"))
	tests := []struct {
		name      string
		cfg       Decompress
		coding    string
		body      []byte
		status    int
		called    bool
		wantBody  string // what the backend read
		wantCE    string // Content-Encoding the backend saw
		wantAccep string // Accept-Encoding of a 415
	}{
		{name: "unknown coding", cfg: Decompress{Enabled: true}, coding: "compress", body: []byte("x"), status: 415, wantAccep: "zstd, gzip, br"},
		{name: "not enabled coding", cfg: Decompress{Enabled: true, Algorithms: []string{"gzip"}}, coding: "br", body: []byte("x"), status: 415, wantAccep: "gzip"},
		{name: "stacked codings", cfg: Decompress{Enabled: true}, coding: "gzip, gzip", body: gz, status: 415, wantAccep: "zstd, gzip, br"},
		{name: "corrupt gzip", cfg: Decompress{Enabled: true}, coding: "gzip", body: []byte("definitely not gzip"), status: 400, called: true},
		{name: "truncated gzip", cfg: Decompress{Enabled: true}, coding: "gzip", body: gz[:len(gz)-6], status: 400, called: true},
		{name: "corrupt zstd", cfg: Decompress{Enabled: true}, coding: "zstd", body: []byte("\x28\xb5\x2f\xfd garbage garbage"), status: 400, called: true},
		{name: "identity", cfg: Decompress{Enabled: true}, coding: "identity", body: []byte("plain"), status: 200, called: true, wantBody: "plain"},
		{name: "empty gzip body", cfg: Decompress{Enabled: true}, coding: "gzip", body: nil, status: 200, called: true, wantBody: ""},
		{name: "disabled: unknown passes", cfg: Decompress{}, coding: "compress", body: []byte("raw"), status: 200, called: true, wantBody: "raw", wantCE: "compress"},
		{name: "disabled: gzip passes encoded", cfg: Decompress{}, coding: "gzip", body: gz, status: 200, called: true, wantBody: string(gz), wantCE: "gzip"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &sink{}
			srv, client := serve(t, Config{Enabled: true, DecompressRequests: tt.cfg}, s)
			resp, body := post(t, client, srv.URL, tt.coding, tt.body, false)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d (%q), want %d", resp.StatusCode, body, tt.status)
			}
			if called := s.calls.Load() > 0; called != tt.called {
				t.Fatalf("backend called %v, want %v", called, tt.called)
			}
			if resp.Header.Get("Accept-Encoding") != tt.wantAccep {
				t.Errorf("Accept-Encoding %q, want %q", resp.Header.Get("Accept-Encoding"), tt.wantAccep)
			}
			if tt.status == 400 && strings.Contains(body, "error") {
				t.Errorf("backend's error page leaked: %q", body)
			}
			if tt.status == 200 {
				if got := string(s.body.Load().([]byte)); got != tt.wantBody {
					t.Errorf("backend read %q, want %q", got, tt.wantBody)
				}
				if ce := s.header.Load().(http.Header).Get("Content-Encoding"); ce != tt.wantCE {
					t.Errorf("backend saw Content-Encoding %q, want %q", ce, tt.wantCE)
				}
			}
		})
	}
}

// A handler that has already answered keeps its answer; it still sees
// the limit as a *http.MaxBytesError.
func TestBombAfterResponseStarted(t *testing.T) {
	readErr := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := http.NewResponseController(w).EnableFullDuplex(); err != nil {
			t.Error(err) // reached through Unwrap
		}
		w.WriteHeader(http.StatusAccepted)
		w.(http.Flusher).Flush()
		_, err := io.Copy(io.Discard, r.Body)
		readErr <- err
	})
	srv, client := serve(t, Config{DecompressRequests: Decompress{Enabled: true, MaxBytes: 1000}}, h)
	resp, _ := post(t, client, srv.URL, "gzip", encode(t, "gzip", make([]byte, 1<<20)), false)
	if resp.StatusCode != http.StatusAccepted {
		t.Errorf("status %d, want the handler's 202", resp.StatusCode)
	}
	var mbe *http.MaxBytesError
	if err := <-readErr; !errors.As(err, &mbe) || mbe.Limit != 1000 {
		t.Errorf("handler's read error %v, want *http.MaxBytesError{1000}", err)
	}
}

// The bounded body never hands on more than the limit, whatever the input.
func FuzzBoundedBody(f *testing.F) {
	f.Add(uint8(0), encode(f, "gzip", make([]byte, 5000)), uint16(100))
	f.Add(uint8(1), encode(f, "br", make([]byte, 5000)), uint16(4999))
	f.Add(uint8(2), encode(f, "zstd", make([]byte, 5000)), uint16(5000))
	f.Add(uint8(0), []byte("\x1f\x8b\x08\x00junk"), uint16(10))
	c, err := New(Config{DecompressRequests: Decompress{Enabled: true}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, which uint8, data []byte, limit uint16) {
		alg := []algorithm{gzipAlg, brAlg, zstdAlg}[int(which)%3]
		b := &boundedBody{c: c, alg: alg, src: io.NopCloser(bytes.NewReader(data)), limit: int64(limit)}
		defer b.release()
		n, err := io.Copy(io.Discard, io.LimitReader(b, 1<<22))
		if n > int64(limit) {
			t.Fatalf("read %d bytes past the %d limit", n, limit)
		}
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) != (b.tripped() == http.StatusRequestEntityTooLarge) {
			t.Fatalf("err %v but tripped %d", err, b.tripped())
		}
	})
}

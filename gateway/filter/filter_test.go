package filter

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestRefusals: every reason answers its status with a short text body,
// is counted, and never reaches next; the request just inside each bound
// does reach next.
func TestRefusals(t *testing.T) {
	many := func(n int) []string {
		var l []string
		for i := range n {
			l = append(l, "X-H"+itoa(i)+": v")
		}
		return l
	}
	tests := []struct {
		name   string
		cfg    Config
		req    func() *http.Request
		status int    // 0: admitted
		why    reason // when refused
	}{
		{"deny v4", Config{DenyCIDRs: []string{"198.51.100.0/24"}},
			func() *http.Request { return request("GET", "/", "198.51.100.7", nil) }, 403, ipDenied},
		{"deny wins over allow", Config{AllowCIDRs: []string{"198.51.100.0/24"}, DenyCIDRs: []string{"198.51.100.7"}},
			func() *http.Request { return request("GET", "/", "198.51.100.7", nil) }, 403, ipDenied},
		{"outside allow", Config{AllowCIDRs: []string{"10.0.0.0/8", "192.0.2.1"}},
			func() *http.Request { return request("GET", "/", "192.0.2.2", nil) }, 403, ipDenied},
		{"inside allow", Config{AllowCIDRs: []string{"10.0.0.0/8", "192.0.2.1"}},
			func() *http.Request { return request("GET", "/", "192.0.2.1", nil) }, 0, 0},
		{"deny v6", Config{DenyCIDRs: []string{"2001:db8::/32"}},
			func() *http.Request { return request("GET", "/", "2001:db8:1::5", nil) }, 403, ipDenied},
		{"v6 outside deny", Config{DenyCIDRs: []string{"2001:db8::/32"}},
			func() *http.Request { return request("GET", "/", "2001:db9::5", nil) }, 0, 0},
		{"v4 client against v6 allow", Config{AllowCIDRs: []string{"2001:db8::/32"}},
			func() *http.Request { return request("GET", "/", "10.0.0.1", nil) }, 403, ipDenied},
		{"mapped peer matches a v4 deny", Config{DenyCIDRs: []string{"10.0.0.0/8"}},
			func() *http.Request { return request("GET", "/", "::ffff:10.1.2.3", nil) }, 403, ipDenied},
		{"mapped prefix allows a v4 peer", Config{AllowCIDRs: []string{"::ffff:10.0.0.0/104"}},
			func() *http.Request { return request("GET", "/", "10.1.2.3", nil) }, 0, 0},
		{"zoned peer cannot dodge a deny", Config{DenyCIDRs: []string{"fe80::/10"}},
			func() *http.Request { return request("GET", "/", "fe80::1%eth0", nil) }, 403, ipDenied},
		{"unknown peer fails closed", Config{DenyCIDRs: []string{"198.51.100.0/24"}},
			func() *http.Request { return request("GET", "/", "", nil) }, 403, ipDenied},
		{"content-length over", Config{MaxBodyBytes: 10},
			func() *http.Request { return request("POST", "/", "10.0.0.1", strings.NewReader("12345678901")) }, 413, bodyTooLarge},
		{"content-length at the limit", Config{MaxBodyBytes: 10},
			func() *http.Request { return request("POST", "/", "10.0.0.1", strings.NewReader("1234567890")) }, 0, 0},
		{"too many fields", Config{MaxHeaders: 5},
			func() *http.Request { return request("GET", "/", "10.0.0.1", nil, many(5)...) }, 431, tooManyHeaders}, // + Host
		{"fields at the limit", Config{MaxHeaders: 5},
			func() *http.Request { return request("GET", "/", "10.0.0.1", nil, many(4)...) }, 0, 0},
		{"repeated field lines count", Config{MaxHeaders: 3},
			func() *http.Request { return request("GET", "/", "10.0.0.1", nil, "X-A: 1", "X-A: 2", "X-A: 3") }, 431, tooManyHeaders},
		{"header bytes over", Config{MaxHeaderBytes: 64},
			func() *http.Request {
				return request("GET", "/", "10.0.0.1", nil, "X-Big: "+strings.Repeat("a", 64-len("X-Big")-len("Host")-len("example.com")+1))
			}, 431, headersTooLarge},
		{"header bytes at the limit", Config{MaxHeaderBytes: 64},
			func() *http.Request {
				return request("GET", "/", "10.0.0.1", nil, "X-Big: "+strings.Repeat("a", 64-len("X-Big")-len("Host")-len("example.com")))
			}, 0, 0},
		{"preflight from a disallowed origin", Config{CORS: CORS{AllowOrigins: []string{"https://app.example.com"}}},
			func() *http.Request {
				return request("OPTIONS", "/", "10.0.0.1", nil, "Origin: https://evil.example", "Access-Control-Request-Method: GET")
			}, 403, preflightDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := build(t, tt.cfg)
			w := serve(b.h, tt.req())
			if tt.status == 0 {
				if w.Code != 200 || b.rec.hits.Load() != 1 {
					t.Fatalf("admitted request: %d %q, next saw %d", w.Code, w.Body, b.rec.hits.Load())
				}
				for why := range numReasons {
					if n := b.refused(why); n != 0 {
						t.Errorf("%s counted %v", why, n)
					}
				}
				return
			}
			if w.Code != tt.status || b.rec.hits.Load() != 0 {
				t.Fatalf("got %d %q, next saw %d; want %d and nothing forwarded", w.Code, w.Body, b.rec.hits.Load(), tt.status)
			}
			if ct := w.Header().Get("Content-Type"); ct != "text/plain; charset=utf-8" || w.Body.Len() == 0 || w.Body.Len() > 40 {
				t.Errorf("body %q (%s): want a short plain text", w.Body, ct)
			}
			if n := b.refused(tt.why); n != 1 {
				t.Errorf("%s counted %v, want 1", tt.why, n)
			}
		})
	}
}

// TestForwardedFor: the client address comes from the listener's
// trusted proxies: a forged X-Forwarded-For from an untrusted peer is
// ignored, a trusted proxy's entry is believed, and a forged entry to
// the left of the first untrusted hop does not count.
func TestForwardedFor(t *testing.T) {
	res := resolver(t, "10.0.0.1", "2001:db8:ffff::/48")
	tests := []struct {
		name   string
		cfg    Config
		remote string
		xff    []string
		status int
	}{
		{"untrusted peer forges an allowed address", Config{AllowCIDRs: []string{"192.0.2.0/24"}}, "198.51.100.9", []string{"192.0.2.1"}, 403},
		{"untrusted peer forges to dodge a deny", Config{DenyCIDRs: []string{"198.51.100.0/24"}}, "198.51.100.9", []string{"1.1.1.1"}, 403},
		{"trusted proxy reports a denied client", Config{DenyCIDRs: []string{"203.0.113.0/24"}}, "10.0.0.1", []string{"203.0.113.7"}, 403},
		{"trusted proxy reports an allowed client", Config{AllowCIDRs: []string{"192.0.2.0/24"}}, "10.0.0.1", []string{"192.0.2.1"}, 200},
		{"forged entry left of the real client", Config{DenyCIDRs: []string{"203.0.113.0/24"}}, "10.0.0.1", []string{"192.0.2.1, 203.0.113.7"}, 403},
		{"forged allowed entry left of the real client", Config{AllowCIDRs: []string{"192.0.2.0/24"}}, "10.0.0.1", []string{"192.0.2.1", "203.0.113.7"}, 403},
		{"v6 trusted proxy, v6 client denied", Config{DenyCIDRs: []string{"2001:db8:1::/48"}}, "2001:db8:ffff::2", []string{"2001:db8:1::9"}, 403},
		{"v6 trusted proxy, mapped client denied", Config{DenyCIDRs: []string{"203.0.113.0/24"}}, "2001:db8:ffff::2", []string{"[::ffff:203.0.113.7]:443"}, 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := build(t, tt.cfg, WithClientIP(res))
			var lines []string
			for _, v := range tt.xff {
				lines = append(lines, "X-Forwarded-For: "+v)
			}
			w := serve(b.h, request("GET", "/", tt.remote, nil, lines...))
			if w.Code != tt.status {
				t.Fatalf("got %d, want %d", w.Code, tt.status)
			}
			if want := int64(0); tt.status == 200 {
				want = 1
				if b.rec.hits.Load() != want {
					t.Errorf("next saw %d", b.rec.hits.Load())
				}
			} else if b.rec.hits.Load() != want {
				t.Errorf("refused request reached next")
			}
		})
	}
}

// chunked is a body of unknown length (no Content-Length, so the
// client sends it chunked), counting what was taken from it.
type chunked struct {
	left int64
	read int64
}

func (c *chunked) Read(p []byte) (int, error) {
	if c.left == 0 {
		return 0, io.EOF
	}
	n := min(int64(len(p)), c.left, 4096)
	for i := range p[:n] {
		p[i] = 'x'
	}
	c.left -= n
	c.read += n
	return int(n), nil
}

// TestBodyLimitStreaming sends chunked bodies over a real connection:
// next never reads more than the limit; a response not yet sent becomes
// 413; one already sent stays, and next's read fails.
func TestBodyLimitStreaming(t *testing.T) {
	const limit = 64 << 10
	tests := []struct {
		name    string
		size    int64
		early   bool
		status  int
		readErr bool
	}{
		{"under", limit - 1, false, 200, false},
		{"exactly", limit, false, 200, false},
		{"one byte over", limit + 1, false, 413, true},
		{"far over", 4 << 20, false, 413, true},
		{"over after the answer was sent", 4 << 20, true, 202, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := build(t, Config{MaxBodyBytes: limit, SecurityHeaders: true})
			b.rec.early = tt.early
			srv := httptest.NewServer(b.h)
			defer srv.Close()
			req, _ := http.NewRequest("POST", srv.URL+"/upload", &chunked{left: tt.size})
			req.ContentLength = -1
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d %q, want %d", resp.StatusCode, body, tt.status)
			}
			if !b.rec.wasChunked() {
				t.Fatal("the request was not sent chunked")
			}
			n, rerr := b.rec.body()
			if n > limit {
				t.Errorf("next read %d bytes, more than the limit %d", n, limit)
			}
			var mbe *http.MaxBytesError
			if got := errors.As(rerr, &mbe); got != tt.readErr {
				t.Errorf("next's read error %v, want a MaxBytesError: %v", rerr, tt.readErr)
			}
			if tt.readErr && n != limit {
				t.Errorf("next read %d bytes before the error, want exactly the limit %d", n, limit)
			}
			if !tt.readErr && n != tt.size {
				t.Errorf("next read %d of %d bytes", n, tt.size)
			}
			if tt.status == 413 {
				if !strings.Contains(string(body), "too large") || resp.Header.Get("X-Frame-Options") != "DENY" {
					t.Errorf("413 answer %q %v: want our text with the route's headers", body, resp.Header)
				}
				if b.refused(bodyTooLarge) != 1 {
					t.Errorf("body_too_large counted %v", b.refused(bodyTooLarge))
				}
			}
		})
	}
}

// TestBodyLimitDirect: the bound holds whatever buffer sizes next reads
// with, and a handler that returns without answering still gets 413.
func TestBodyLimitDirect(t *testing.T) {
	for _, bufSize := range []int{1, 7, 10, 11, 4096} {
		b := build(t, Config{MaxBodyBytes: 10})
		var got bytes.Buffer
		h := b.f.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			buf := make([]byte, bufSize)
			for {
				n, err := r.Body.Read(buf)
				got.Write(buf[:n])
				if err != nil {
					return // returns without writing: the filter answers
				}
			}
		}))
		req := request("POST", "/", "10.0.0.1", io.MultiReader(strings.NewReader("0123456789"), strings.NewReader("abc")))
		req.ContentLength = -1
		w := serve(h, req)
		if w.Code != 413 || got.String() != "0123456789" {
			t.Errorf("buffer %d: %d, next read %q; want 413 and exactly the first 10 bytes", bufSize, w.Code, got.String())
		}
	}
}

func TestPreflight(t *testing.T) {
	cfg := Config{CORS: CORS{
		AllowOrigins: []string{"https://app.example.com", "https://*.example.org"},
		AllowMethods: []string{"PUT", "DELETE"}, AllowHeaders: []string{"Content-Type", "X-Api-Key"},
		AllowCredentials: true, MaxAge: 10 * time.Minute,
	}}
	pre := func(origin, method, headers string) *http.Request {
		lines := []string{"Origin: " + origin, "Access-Control-Request-Method: " + method}
		if headers != "" {
			lines = append(lines, "Access-Control-Request-Headers: "+headers)
		}
		return request("OPTIONS", "/api", "10.0.0.1", nil, lines...)
	}
	tests := []struct {
		name string
		req  *http.Request
		ok   bool
	}{
		{"allowed", pre("https://app.example.com", "PUT", "content-type,x-api-key"), true},
		{"wildcard origin", pre("https://tenant.example.org", "DELETE", ""), true},
		{"safelisted method not listed", pre("https://app.example.com", "GET", "x-api-key"), true},
		{"origin not allowed", pre("https://evil.example", "PUT", ""), false},
		{"origin two labels deep", pre("https://a.b.example.org", "PUT", ""), false},
		{"method not allowed", pre("https://app.example.com", "PATCH", ""), false},
		{"header not allowed", pre("https://app.example.com", "PUT", "content-type, authorization"), false},
		{"null origin", pre("null", "PUT", ""), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := build(t, cfg)
			w := serve(b.h, tt.req)
			if b.rec.hits.Load() != 0 {
				t.Fatal("a preflight reached next")
			}
			h := w.Header()
			if !tt.ok {
				if w.Code != 403 || h.Get("Access-Control-Allow-Origin") != "" || h.Get("Access-Control-Allow-Methods") != "" {
					t.Fatalf("denied preflight: %d %v", w.Code, h)
				}
				if b.refused(preflightDenied) != 1 {
					t.Errorf("cors_preflight_denied counted %v", b.refused(preflightDenied))
				}
				return
			}
			if w.Code != 204 {
				t.Fatalf("allowed preflight: %d %q", w.Code, w.Body)
			}
			want := map[string]string{
				"Access-Control-Allow-Origin":      tt.req.Header.Get("Origin"),
				"Access-Control-Allow-Credentials": "true",
				"Access-Control-Allow-Methods":     "PUT, DELETE",
				"Access-Control-Allow-Headers":     "Content-Type, X-Api-Key",
				"Access-Control-Max-Age":           "600",
				"Vary":                             "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
			}
			for k, v := range want {
				if got := h.Get(k); got != v {
					t.Errorf("%s: %q, want %q", k, got, v)
				}
			}
		})
	}
}

// TestPreflightWildcards: "*" methods and headers echo what was asked,
// "*" origins answer "*".
func TestPreflightWildcards(t *testing.T) {
	b := build(t, Config{CORS: CORS{AllowOrigins: []string{"*"}, AllowMethods: []string{"*"}, AllowHeaders: []string{"*"}}})
	w := serve(b.h, request("OPTIONS", "/", "10.0.0.1", nil, "Origin: https://x.example", "Access-Control-Request-Method: PATCH",
		"Access-Control-Request-Headers: x-a, x-b", "Access-Control-Request-Headers: x-c"))
	h := w.Header()
	if w.Code != 204 || h.Get("Access-Control-Allow-Origin") != "*" || h.Get("Access-Control-Allow-Methods") != "PATCH" ||
		h.Get("Access-Control-Allow-Headers") != "x-a, x-b, x-c" || h.Get("Access-Control-Allow-Credentials") != "" {
		t.Fatalf("%d %v", w.Code, h)
	}
	// A header name that is not a token is not echoed.
	w = serve(b.h, request("OPTIONS", "/", "10.0.0.1", nil, "Origin: https://x.example", "Access-Control-Request-Method: PATCH",
		"Access-Control-Request-Headers: x-a, bad name"))
	if w.Code != 403 {
		t.Fatalf("non-token header name: %d", w.Code)
	}
	// OPTIONS without Access-Control-Request-Method is not a preflight.
	w = serve(b.h, request("OPTIONS", "/", "10.0.0.1", nil, "Origin: https://x.example"))
	if w.Code != 200 || b.rec.hits.Load() != 1 {
		t.Fatalf("plain OPTIONS: %d, next saw %d", w.Code, b.rec.hits.Load())
	}
}

// TestCORSActual: an allowed origin's request gets the CORS fields (the
// upstream's replaced) and Vary: Origin merged; a disallowed one is
// forwarded and answered without any.
func TestCORSActual(t *testing.T) {
	b := build(t, Config{CORS: CORS{AllowOrigins: []string{"https://app.example.com", "https://*.example.org"},
		ExposeHeaders: []string{"X-Request-Id"}, AllowCredentials: true}})
	b.rec.respond = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "*") // an upstream that answers CORS itself
		w.Header().Set("Access-Control-Allow-Credentials", "true")
		w.Header().Set("Vary", "Accept-Encoding")
		_, _ = io.WriteString(w, "data")
	}
	for _, tt := range []struct {
		origin string
		acao   string
	}{
		{"https://app.example.com", "https://app.example.com"},
		{"https://t1.example.org", "https://t1.example.org"},
		{"https://evil.example", ""},
		{"", ""},
	} {
		var lines []string
		if tt.origin != "" {
			lines = append(lines, "Origin: "+tt.origin)
		}
		w := serve(b.h, request("GET", "/", "10.0.0.1", nil, lines...))
		h := w.Header()
		if w.Code != 200 || w.Body.String() != "data" {
			t.Fatalf("%q: %d %q", tt.origin, w.Code, w.Body)
		}
		if got := h.Get("Access-Control-Allow-Origin"); got != tt.acao {
			t.Errorf("%q: Access-Control-Allow-Origin %q, want %q", tt.origin, got, tt.acao)
		}
		creds, expose := "", ""
		if tt.acao != "" {
			creds, expose = "true", "X-Request-Id"
		}
		if h.Get("Access-Control-Allow-Credentials") != creds || h.Get("Access-Control-Expose-Headers") != expose {
			t.Errorf("%q: %v", tt.origin, h)
		}
		if got := h.Values("Vary"); strings.Join(got, ", ") != "Accept-Encoding, Origin" {
			t.Errorf("%q: Vary %q", tt.origin, got)
		}
	}
	// Several Origin fields: none is trusted.
	w := serve(b.h, request("GET", "/", "10.0.0.1", nil, "Origin: https://app.example.com", "Origin: https://evil.example"))
	if w.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("two Origin fields: %v", w.Header())
	}
	if int(b.rec.hits.Load()) != 5 {
		t.Errorf("next saw %d of 5 requests: actual requests are always forwarded", b.rec.hits.Load())
	}
}

func TestCORSAnyOrigin(t *testing.T) {
	b := build(t, Config{CORS: CORS{AllowOrigins: []string{"*"}}})
	for _, lines := range [][]string{{"Origin: https://x.example"}, nil} {
		w := serve(b.h, request("GET", "/", "10.0.0.1", nil, lines...))
		if w.Header().Get("Access-Control-Allow-Origin") != "*" || w.Header().Get("Vary") != "" {
			t.Errorf("%v: %v", lines, w.Header())
		}
	}
}

// TestResponseHeaders: the preset, then remove, then set, on next's
// answers, on the filter's refusals and on an answer next never wrote.
func TestResponseHeaders(t *testing.T) {
	cfg := Config{
		SecurityHeaders: true,
		DenyCIDRs:       []string{"198.51.100.0/24"},
		ResponseHeaders: ResponseHeaders{
			Set:    map[string]string{"x-frame-options": "SAMEORIGIN", "Strict-Transport-Security": "max-age=63072000"},
			Remove: []string{"Server", "referrer-policy"},
		},
	}
	preset := func(t *testing.T, h http.Header, csp string) {
		t.Helper()
		want := map[string]string{
			"X-Content-Type-Options":    "nosniff",
			"X-Frame-Options":           "SAMEORIGIN", // set overrides the preset
			"Referrer-Policy":           "",           // remove too
			"Content-Security-Policy":   csp,
			"Strict-Transport-Security": "max-age=63072000",
			"Server":                    "",
		}
		for k, v := range want {
			if got := h.Get(k); got != v {
				t.Errorf("%s: %q, want %q", k, got, v)
			}
		}
		if len(h.Values("X-Frame-Options")) != 1 {
			t.Errorf("X-Frame-Options: %q", h.Values("X-Frame-Options"))
		}
	}
	const defCSP = "default-src 'none'; frame-ancestors 'none'"
	t.Run("next's answer", func(t *testing.T) {
		b := build(t, cfg)
		b.rec.respond = func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Server", "app/1.0")
			w.Header().Set("X-Frame-Options", "ALLOW-FROM x")
			_, _ = io.WriteString(w, "hi")
		}
		preset(t, serve(b.h, request("GET", "/", "10.0.0.1", nil)).Header(), defCSP)
	})
	t.Run("own CSP kept", func(t *testing.T) {
		for _, k := range []string{"Content-Security-Policy", "Content-Security-Policy-Report-Only"} {
			b := build(t, cfg)
			b.rec.respond = func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set(k, "default-src 'self'")
				w.WriteHeader(201)
			}
			h := serve(b.h, request("GET", "/", "10.0.0.1", nil)).Header()
			if h.Get(k) != "default-src 'self'" || k != "Content-Security-Policy" && h.Get("Content-Security-Policy") != "" {
				t.Errorf("%s of its own: %v", k, h)
			}
		}
	})
	t.Run("refusal", func(t *testing.T) {
		b := build(t, cfg)
		w := serve(b.h, request("GET", "/", "198.51.100.1", nil))
		if w.Code != 403 {
			t.Fatal(w.Code)
		}
		preset(t, w.Header(), defCSP)
	})
	t.Run("nothing written", func(t *testing.T) {
		b := build(t, cfg)
		b.rec.respond = func(http.ResponseWriter, *http.Request) {}
		w := serve(b.h, request("GET", "/", "10.0.0.1", nil))
		if w.Code != 200 {
			t.Fatal(w.Code)
		}
		preset(t, w.Header(), defCSP)
	})
	t.Run("flushed stream", func(t *testing.T) {
		b := build(t, cfg)
		b.rec.respond = func(w http.ResponseWriter, r *http.Request) {
			if err := http.NewResponseController(w).Flush(); err != nil {
				t.Error(err)
			}
			_, _ = io.WriteString(w, "event")
		}
		w := serve(b.h, request("GET", "/", "10.0.0.1", nil))
		if !w.Flushed || w.Body.String() != "event" {
			t.Fatalf("flushed %v body %q", w.Flushed, w.Body)
		}
		preset(t, w.Header(), defCSP)
	})
	t.Run("informational not edited", func(t *testing.T) {
		b := build(t, cfg)
		var at103 http.Header
		b.rec.respond = func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Link", "</a.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			at103 = w.Header().Clone()
			w.Header().Del("Link")
			w.WriteHeader(200)
		}
		w := serve(b.h, request("GET", "/", "10.0.0.1", nil))
		if at103.Get("X-Frame-Options") != "" || w.Header().Get("X-Frame-Options") != "SAMEORIGIN" {
			t.Errorf("103 had %v, final %v", at103, w.Header())
		}
	})
}

// TestZeroConfig: an empty Config costs nothing: Wrap returns next.
func TestZeroConfig(t *testing.T) {
	f, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	next := &recorder{}
	if h, ok := f.Wrap(next).(*recorder); !ok || h != next || (Config{}).Enabled() {
		t.Fatal("zero config: Wrap did not return next")
	}
}

// TestRefusalLogged: a refusal is logged at debug level with its reason
// (and the client address the lists judged); nothing is logged above it.
func TestRefusalLogged(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b := build(t, Config{DenyCIDRs: []string{"198.51.100.0/24"}}, WithLogger(log))
	serve(b.h, request("GET", "/x", "198.51.100.4", nil))
	if out := buf.String(); !strings.Contains(out, "level=DEBUG") || !strings.Contains(out, "reason=ip_denied") || !strings.Contains(out, "client=198.51.100.4") {
		t.Errorf("log: %q", out)
	}
	buf.Reset()
	quiet := build(t, Config{DenyCIDRs: []string{"198.51.100.0/24"}}, WithLogger(slog.New(slog.NewTextHandler(&buf, nil))))
	serve(quiet.h, request("GET", "/x", "198.51.100.4", nil))
	if buf.Len() != 0 {
		t.Errorf("logged above debug: %q", buf.String())
	}
}

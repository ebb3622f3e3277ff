package certs

import (
	"bufio"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestRedirectHandler(t *testing.T) {
	for _, tc := range []struct {
		name, host, target, port string
		status                   int
		wantStatus               int
		wantLoc                  string
	}{
		{"host only", "example.com", "/", "", 0, 308, "https://example.com/"},
		{"port dropped", "example.com:80", "/a/b?x=1&y=2", "", 0, 308, "https://example.com/a/b?x=1&y=2"},
		{"443 omitted", "example.com:8080", "/p", "443", 301, 301, "https://example.com/p"},
		{"https port added", "Example.COM.:80", "/p?q", "8443", 308, 308, "https://example.com:8443/p?q"},
		{"IPv4", "10.0.0.1:80", "/", "", 0, 308, "https://10.0.0.1/"},
		{"IPv6", "[2001:DB8::1]:80", "/x", "8443", 0, 308, "https://[2001:db8::1]:8443/x"},
		{"escaped path kept", "example.com", "/a%20b/%2F?q=%0d%0a", "", 0, 308, "https://example.com/a%20b/%2F?q=%0d%0a"},
		{"double slash stays on host", "example.com", "//evil.org/x", "", 0, 308, "https://example.com//evil.org/x"},
		{"CRLF in Host", "example.com\r\nSet-Cookie: a=b", "/", "", 0, 400, ""},
		{"LF in Host", "example.com\nx", "/", "", 0, 400, ""},
		{"bad port", "example.com:abc", "/", "", 0, 400, ""},
		{"port out of range", "example.com:65536", "/", "", 0, 400, ""},
		{"empty Host", "", "/", "", 0, 400, ""},
		{"userinfo", "user@example.com", "/", "", 0, 400, ""},
		{"space", "exa mple.com", "/", "", 0, 400, ""},
		{"empty label", "a..b", "/", "", 0, 400, ""},
		{"IPv6 zone", "[fe80::1%25eth0]", "/", "", 0, 400, ""},
		{"unclosed bracket", "[2001:db8::1", "/", "", 0, 400, ""},
		{"IPv4 in brackets", "[10.0.0.1]", "/", "", 0, 400, ""},
		{"label too long", strings.Repeat("a", 64) + ".com", "/", "", 0, 400, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "http://placeholder"+tc.target, nil)
			r.Host = tc.host
			w := httptest.NewRecorder()
			RedirectHandler(tc.status, tc.port).ServeHTTP(w, r)
			if w.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d", w.Code, tc.wantStatus)
			}
			if got := w.Header().Get("Location"); got != tc.wantLoc {
				t.Errorf("Location %q, want %q", got, tc.wantLoc)
			}
			if strings.ContainsAny(w.Body.String(), "\r") || strings.Contains(w.Body.String(), "Set-Cookie") {
				t.Errorf("body reflects the request: %q", w.Body.String())
			}
		})
	}
}

func TestRedirectHandlerPanicsOnBadArguments(t *testing.T) {
	for _, tc := range []struct {
		status int
		port   string
	}{{302, ""}, {308, "https"}, {308, "0"}, {308, "70000"}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("RedirectHandler(%d, %q) did not panic", tc.status, tc.port)
				}
			}()
			RedirectHandler(tc.status, tc.port)
		}()
	}
}

// TestRedirectOverHTTP runs the handler on a real server: a client's
// POST is redirected with 308 and the path and query kept, and a raw
// request with a bad Host gets 400 (from net/http or from us).
func TestRedirectOverHTTP(t *testing.T) {
	srv := httptest.NewServer(RedirectHandler(308, "8443"))
	defer srv.Close()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Post(srv.URL+"/orders/1?expand=items", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	u, _ := url.Parse(srv.URL)
	want := "https://" + u.Hostname() + ":8443/orders/1?expand=items"
	if resp.StatusCode != 308 || resp.Header.Get("Location") != want {
		t.Errorf("%d %q, want 308 %q", resp.StatusCode, resp.Header.Get("Location"), want)
	}

	for _, host := range []string{"example.com:x", "exa_mple.com:99999", "a\x7fb", ""} {
		c, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = c.Write([]byte("GET / HTTP/1.1\r\nHost: " + host + "\r\n\r\n"))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		c.Close()
		if err != nil {
			t.Fatalf("Host %q: %v", host, err)
		}
		if resp.StatusCode != 400 || resp.Header.Get("Location") != "" {
			t.Errorf("Host %q: %d Location %q, want 400 without Location", host, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
}

func FuzzRedirect(f *testing.F) {
	for _, s := range [][2]string{
		{"example.com:80", "/a?b"}, {"[::1]:8080", "//x"}, {"a\r\nb", "/"}, {"1.2.3.4", "/%0d%0a"},
		{"", "*"}, {"xn--bcher-kva.example", "/ü"}, {"[fe80::1%eth0]", "/"},
	} {
		f.Add(s[0], s[1])
	}
	h := RedirectHandler(308, "8443")
	f.Fuzz(func(t *testing.T, host, path string) {
		r := httptest.NewRequest("GET", "http://placeholder/", nil)
		r.Host = host
		r.URL = &url.URL{Path: path}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code == 400 {
			return
		}
		if w.Code != 308 {
			t.Fatalf("status %d", w.Code)
		}
		loc := w.Header().Get("Location")
		if !printable(loc) {
			t.Fatalf("Location %q has a control or non-ASCII byte", loc)
		}
		u, err := url.Parse(loc)
		if err != nil {
			t.Fatalf("Location %q does not parse: %v", loc, err)
		}
		want, _ := redirectHost(host)
		if u.Scheme != "https" || u.Host != want+":8443" {
			t.Fatalf("Location %q for Host %q: scheme %q host %q", loc, host, u.Scheme, u.Host)
		}
	})
}

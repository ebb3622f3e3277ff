package sidecar

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/consul/api"

	"github.com/outrider-mesh/outrider/policy/pathnorm"
	"github.com/outrider-mesh/outrider/sidecar/http1"
)

// The path the rules and routes see is the target's path in every form
// http1 accepts: an absolute-form scheme in any case (http1 accepts
// "HTTP://", as net/http does) and an absolute-form target without a path,
// which is "/".
func TestSplitTarget(t *testing.T) {
	for _, tt := range []struct {
		target      string
		path, query string
		ok          bool
	}{
		{"/admin?x=1", "/admin", "?x=1", true},
		{"/", "/", "", true},
		{"http://web/admin", "/admin", "", true},
		{"HTTP://web/admin", "/admin", "", true},
		{"HtTpS://web/x/../admin?q", "/x/../admin", "?q", true},
		{"http://web", "", "", true},
		{"http://web?q=1", "", "?q=1", true},
		{"httpx://web/admin", "", "", false},
		{"*", "", "", false},
		{"web:443", "", "", false},
	} {
		start, end, ok := splitTarget([]byte(tt.target))
		if path, query := tt.target[start:end], tt.target[end:]; path != tt.path || query != tt.query || ok != tt.ok {
			t.Errorf("splitTarget(%q) = %q %q %v, want %q %q %v", tt.target, path, query, ok, tt.path, tt.query, tt.ok)
		}
	}
}

// normalizeH1 gives the rules the normalized path of every accepted form,
// and the application the target rebuilt with it ("/" for an absolute-form
// target without a path).
func TestNormalizeH1Forms(t *testing.T) {
	for _, tt := range []struct{ target, path, forwarded string }{
		{"/x/../admin", "/admin", "/admin"},
		{"HTTP://web/x/../admin", "/admin", "HTTP://web/admin"},
		{"Https://web//admin?a", "/admin", "Https://web/admin?a"},
		{"http://web", "/", "http://web/"},
		{"http://web?q", "/", "http://web/?q"},
		{"*", "*", "*"},
	} {
		hc := headConn(t, "OPTIONS", tt.target)
		if hc == nil {
			t.Fatalf("%s: not accepted by http1", tt.target)
		}
		path, err := hc.normalizeH1(pathnorm.Options{})
		if err != nil || path != tt.path || string(hc.req.Target) != tt.forwarded {
			t.Errorf("normalizeH1(%q) = %q, %v, target %q; want %q, %q", tt.target, path, err, hc.req.Target, tt.path, tt.forwarded)
		}
	}
}

// headConn reads "<method> <target> HTTP/1.0" (no Host: http1 takes an
// absolute-form target's authority) into a connection's request, or
// returns nil when http1 refuses it.
func headConn(t *testing.T, method, target string) *h1Conn {
	t.Helper()
	hc := &h1Conn{}
	br := bufio.NewReader(strings.NewReader(method + " " + target + " HTTP/1.0\r\n\r\n"))
	if err := hc.req.Read(br, http1.DefaultMaxHeaderBytes); err != nil {
		return nil
	}
	return hc
}

// FuzzRequestTarget checks the sidecar's reading of every request target
// http1 accepts against net/url's: the path the rules and routes see is
// the one the application will serve (decoded, it is url.URL.Path; "" only
// for an absolute-form target without a path, which stands for "/"), the
// query is left as sent, and the normalized target says the same path,
// normalized and stable.
func FuzzRequestTarget(f *testing.F) {
	for _, s := range []string{
		"/admin", "/a?b=c", "/x/../admin", "//admin", "/%61dmin", "/a%2Fb", "*",
		"http://web/admin", "HTTP://web/admin", "hTTpS://web/x/../admin?q", "http://web", "http://web?x",
		"http://web#f", "http://user@web/admin", "http://web:8080/a", "http://[::1]/a", "web:443",
		"ftp://web/admin", "http:/web/admin", "http:web", "/a?b?c", "/a#b?c", "http://web/a%zz",
	} {
		f.Add(s, false)
	}
	f.Add("web:443", true)
	f.Fuzz(func(t *testing.T, target string, connect bool) {
		method := "GET"
		if connect {
			method = "CONNECT"
		}
		hc := headConn(t, method, target)
		if hc == nil {
			return
		}
		if connect {
			return // refused with 405 before anything reads the target (forwardAttempts)
		}
		start, end, ok := splitTarget(hc.req.Target)
		if target == "*" {
			if ok || start != len(target) || end != len(target) {
				t.Fatalf("%q: splitTarget = %d, %d, %v; want no path", target, start, end, ok)
			}
			return
		}
		if !ok {
			t.Fatalf("%q accepted by http1 but splitTarget finds no path", target)
		}
		u, err := url.ParseRequestURI(target)
		if err != nil {
			t.Fatalf("%q accepted by http1 but not by net/url: %v", target, err)
		}
		path, query := target[start:end], target[end:]
		if dec, err := url.PathUnescape(path); err != nil || dec != u.Path {
			t.Fatalf("%q: path %q (decoded %q, %v), net/url's %q", target, path, dec, err, u.Path)
		}
		if path != "" && path[0] != '/' {
			t.Fatalf("%q: path %q does not start with /", target, path)
		}
		if wantQ := "?" + u.RawQuery; query != wantQ && (query != "" || u.RawQuery != "" || u.ForceQuery) {
			t.Fatalf("%q: query %q, net/url's %q", target, query, u.RawQuery)
		}

		np, err := hc.normalizeH1(pathnorm.Options{})
		if err != nil {
			return // refused with 400
		}
		if !strings.HasPrefix(np, "/") || strings.Contains(np+"/", "/../") || strings.Contains(np+"/", "/./") ||
			strings.Contains(np, "//") {
			t.Fatalf("%q: normalized path %q is not normal", target, np)
		}
		if again, err := pathnorm.String(np, pathnorm.Options{}); err != nil || again != np {
			t.Fatalf("%q: normalized path %q normalizes again to %q, %v", target, np, again, err)
		}
		fwd := hc.req.Target
		s2, e2, ok2 := splitTarget(fwd)
		p2 := string(fwd[s2:e2])
		if !ok2 || p2 != np || string(fwd[e2:]) != query ||
			!bytes.Equal(fwd[:s2], []byte(target[:start])) {
			t.Fatalf("%q: forwarded as %q (path %q), rules saw %q", target, fwd, p2, np)
		}
	})
}

// FuzzFromRegistration decodes an /v1/agent/service answer as consul/api
// does (into api.AgentService, Proxy.Config and each upstream's Config as
// the opaque maps JSON gives) and derives the sidecar's Config from it,
// gateway, ingress, limits, passive health and health-check sections
// included. An accepted registration has listener addresses that split
// into a host and a port in 1-65535, positive timeouts, header limits in
// their documented ranges, and upstreams on distinct bind addresses; an
// error names the registration.
func FuzzFromRegistration(f *testing.F) {
	for _, s := range []string{
		`{"Kind":"connect-proxy","ID":"web-sidecar-proxy","Service":"web-sidecar-proxy","Port":21000,"Proxy":{"DestinationServiceName":"web","DestinationServiceID":"web","LocalServicePort":8080}}`,
		`{"Kind":"connect-proxy","ID":"p","Port":21000,"Proxy":{"DestinationServiceName":"web","LocalServicePort":8080,"Config":{"protocol":"http","bind_address":"127.0.0.1","bind_port":"21001","local_connect_timeout_ms":250,"handshake_timeout_ms":"1000","max_header_bytes":4096,"max_headers":50,"otlp_endpoint":"http://jaeger:4317","trace_sampling":0.5}}}`,
		`{"Kind":"connect-proxy","ID":"p","Port":21000,"Proxy":{"DestinationServiceName":"web","LocalServicePort":8080,"Config":{"protocol":"HTTP","gateway":{"cors":{"allow_origins":["*"]}}}}}`,
		`{"Kind":"connect-proxy","ID":"p","Port":21000,"Proxy":{"DestinationServiceName":"web","LocalServicePort":8080,"Config":{"gateway":{}}}}`,
		`{"Kind":"connect-proxy","ID":"p","Port":21000,"Proxy":{"DestinationServiceName":"web","LocalServicePort":8080,"Upstreams":[{"DestinationName":"db","LocalBindPort":5432,"Config":{"protocol":"tcp","connect_timeout_ms":1000,"limits":{"max_connections":10,"max_pending_requests":5,"max_concurrent_requests":3},"passive_health_check":{"interval":"10s","max_failures":5},"health_check":{"interval":"5s"}}}]}}`,
		`{"Kind":"connect-proxy","ID":"p","Port":21000,"Proxy":{"DestinationServiceName":"web","LocalServicePort":8080,"Upstreams":[{"DestinationName":"db","LocalBindPort":5432},{"DestinationName":"cache","LocalBindPort":5432}]}}`,
		`{"Kind":"connect-proxy","ID":"p","Port":21000,"Proxy":{"DestinationServiceName":"web","LocalServicePort":8080,"Upstreams":[{"DestinationName":"api","LocalBindPort":9000,"Config":{"protocol":"http","retry_budget":{"percent":0.5,"min_retry_concurrency":1}}}],"Config":{"protocol":"http","ingress":[{"port":8443,"routes":[{"path_prefix":"/","upstream":"api"}]}]}}}`,
		`{"Kind":"connect-proxy","ID":"p","Port":0,"Proxy":{"DestinationServiceName":"web","LocalServicePort":8080,"Config":{"bind_port":1e30}}}`,
		`{"Kind":"connect-proxy","ID":"p","Port":1,"Proxy":{"DestinationServiceName":"web","LocalServicePort":8080,"Config":{"local_request_timeout_ms":1.5,"max_header_bytes":"x"}}}`,
		`{"Kind":"connect-proxy","ID":"p","Port":1,"Proxy":{"DestinationServiceName":"web","LocalServicePort":8080,"Config":{"bind_address":""}}}`,
		`{"Kind":"connect-proxy","ID":"p","Port":1,"Proxy":{"DestinationServiceName":"web","LocalServicePort":8080,"Config":{"connect_timeout_ms":9223372036854775807}}}`,
		`{"Kind":"connect-proxy","ID":"p","Port":1,"Proxy":{"DestinationServiceName":"web","LocalServicePort":8080,"Upstreams":[{"DestinationType":"prepared_query","DestinationName":"q","LocalBindPort":1}]}}`,
		`{"Kind":"connect-proxy","ID":"p","Port":1,"Proxy":{"DestinationServiceName":"web","LocalServicePort":8080,"Config":{"local_connect_timeout_ms":10000000000000}}}`,
		`{"Kind":"","ID":"p","Port":1}`, `null`, `{"Kind":"connect-proxy","Proxy":null}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var svc *api.AgentService
		if json.Unmarshal(body, &svc) != nil {
			return
		}
		c, err := FromRegistration(svc)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "sidecar: ") && !strings.HasPrefix(err.Error(), "config: ") {
				t.Fatalf("error %q has no package prefix", err)
			}
			if svc != nil && svc.Proxy != nil && svc.Kind == api.ServiceKindConnectProxy && svc.Proxy.DestinationServiceName != "" &&
				!strings.Contains(err.Error(), "registration "+svc.ID) {
				t.Fatalf("error %q does not name registration %q", err, svc.ID)
			}
			return
		}
		p := c.Public
		checkHostPort(t, "public listener", p.BindAddress)
		checkHostPort(t, "local service", p.LocalService)
		if p.LocalConnectTimeout <= 0 || p.HandshakeTimeout <= 0 || p.LocalRequestTimeout <= 0 {
			t.Fatalf("timeouts %v %v %v", p.LocalConnectTimeout, p.HandshakeTimeout, p.LocalRequestTimeout)
		}
		if p.MaxHeaderBytes < 1024 || p.MaxHeaderBytes > 1<<20 || p.MaxHeaders < 1 || p.MaxHeaders > 10000 {
			t.Fatalf("header limits %d bytes, %d fields", p.MaxHeaderBytes, p.MaxHeaders)
		}
		if p.Gateway.Enabled() && !p.Protocol.L7() {
			t.Fatalf("gateway on a %s listener", p.Protocol)
		}
		seen := map[string]bool{}
		for _, u := range c.Upstreams {
			checkHostPort(t, "upstream "+u.DestinationName, u.BindAddress)
			if u.DestinationName == "" || u.ConnectTimeout <= 0 || seen[u.BindAddress] {
				t.Fatalf("upstream %+v", u)
			}
			seen[u.BindAddress] = true
		}
		if err := c.checkIngressUpstreams(); err != nil {
			t.Fatalf("accepted with ingress routes to unknown upstreams: %v", err)
		}
	})
}

// checkHostPort fails unless addr is host:port with a port in 1-65535.
func checkHostPort(t *testing.T, what, addr string) {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if n, _ := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		t.Fatalf("%s %q: port %q, %v", what, addr, port, err)
	}
}

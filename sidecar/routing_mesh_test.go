package sidecar_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// versionedMesh is web-1 and web-2 at version v1 and web-3 at v2, with the
// API-versioning recipe's config entries (examples/api-versioning, which
// also sets the protocol to http as startL7Mesh does): a
// resolver with subsets by Service.Meta.version (v1 by default), a router
// sending /v2/ and X-API-Version: 2 to v2 and /v1/ to v1 (prefixes
// rewritten), retries and a timeout on some routes, and a 90/10 canary
// split for everything else, the canary marked with a request header.
func versionedMesh(t *testing.T) *l7Mesh {
	t.Helper()
	m := startL7MeshMeta(t, []map[string]string{{"version": "v1"}, {"version": "v1"}, {"version": "v2"}})
	// The example's files, written with the consul CLI as users do.
	for _, f := range []string{"service-defaults.hcl", "service-resolver.hcl", "service-splitter.hcl", "service-router.hcl"} {
		out, err := m.agent.Command(context.Background(), t, "config", "write", filepath.Join("..", "examples", "api-versioning", f)).CombinedOutput()
		if err != nil {
			t.Fatalf("consul config write %s: %v\n%s", f, err, out)
		}
	}
	eventually(t, 20*time.Second, func() error {
		for _, u := range m.client.Dump().Upstreams {
			if u.DestinationName != "web" {
				continue
			}
			if len(u.Routes) != 6 {
				return fmt.Errorf("the client sees %d routes of web, want 6", len(u.Routes))
			}
			for _, c := range u.Clusters {
				if want := map[string]int{"v1": 2, "v2": 1}[strings.Split(c.Name, ".")[0]]; want > 0 && c.Endpoints != want {
					return fmt.Errorf("cluster %s has %d endpoints, want %d", c.Name, c.Endpoints, want)
				}
			}
			if len(u.Clusters) != 3 {
				return fmt.Errorf("the client has clusters %+v, want web, v1 and v2", u.Clusters)
			}
			return nil
		}
		return fmt.Errorf("no upstream web")
	})
	return m
}

// TestMeshAPIVersioning: service-router, service-splitter and
// service-resolver entries (real Consul, compiled discovery chain) route
// by path prefix and header to subsets by Service.Meta.version, rewrite
// prefixes, modify request and response headers, split canary traffic by
// weight, retry failed answers on another instance, and bound a route's
// request time; over HTTP/1.1 and HTTP/2.
func TestMeshAPIVersioning(t *testing.T) {
	t.Parallel()
	m := versionedMesh(t)
	v1 := map[string]bool{"web-1": true, "web-2": true}
	c := oneConnClient()
	get := func(t *testing.T, c *http.Client, path string, header ...string) (seen, *http.Response) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+m.upstream+path, nil)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		return getSeen(t, c, req)
	}
	for _, proto := range []string{"HTTP/1.1", "HTTP/2.0"} {
		t.Run(proto, func(t *testing.T) {
			c := c
			if proto == "HTTP/2.0" {
				c = h2cClient()
			}
			s, resp := get(t, c, "/v2/echo?q=1")
			if s.Instance != "web-3" || s.Path != "/echo?q=1" || s.Header.Get("X-Api-Route") != "v2-path" ||
				resp.Header.Get("X-Served-Version") != "v2" {
				t.Errorf("/v2/echo reached %s as %q (X-Api-Route %q), answer X-Served-Version %q; want web-3, /echo?q=1, v2-path, v2",
					s.Instance, s.Path, s.Header.Get("X-Api-Route"), resp.Header.Get("X-Served-Version"))
			}
			if s, _ := get(t, c, "/echo", "X-API-Version", "2"); s.Instance != "web-3" || s.Path != "/echo" {
				t.Errorf("X-API-Version: 2 reached %s as %q, want web-3 /echo", s.Instance, s.Path)
			}
			for range 4 {
				if s, _ := get(t, c, "/v1/echo"); !v1[s.Instance] || s.Path != "/echo" {
					t.Errorf("/v1/echo reached %s as %q, want a v1 instance and /echo", s.Instance, s.Path)
				}
			}
			if s.Proto != proto && proto == "HTTP/1.1" {
				t.Errorf("the application saw %s", s.Proto)
			}
		})
	}

	t.Run("CONNECT refused over HTTP/2", func(t *testing.T) {
		before := m.apps[0].count() + m.apps[1].count() + m.apps[2].count()
		req, _ := http.NewRequest("CONNECT", "http://"+m.upstream, nil)
		req.Host = "internal.example:22"
		resp, err := h2cClient().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 405 || resp.ProtoMajor != 2 {
			t.Errorf("CONNECT over %s: %d, want 405 over HTTP/2", resp.Proto, resp.StatusCode)
		}
		if after := m.apps[0].count() + m.apps[1].count() + m.apps[2].count(); after != before {
			t.Errorf("a CONNECT reached an application")
		}
	})

	t.Run("canary split", func(t *testing.T) {
		const n = 300
		canary := 0
		for range n {
			s, _ := get(t, c, "/echo")
			isCanary := s.Header.Get("X-Canary") == "true"
			switch {
			case s.Instance == "web-3" && isCanary:
				canary++
			case v1[s.Instance] && !isCanary:
			default:
				t.Fatalf("split sent a request to %s with X-Canary %q", s.Instance, s.Header.Get("X-Canary"))
			}
		}
		// 10% of 300: 30 expected, standard deviation 5.2; these bounds
		// are more than 3.8 deviations away.
		if canary < 10 || canary > 50 {
			t.Errorf("the 10%% canary got %d of %d requests", canary, n)
		}
	})

	t.Run("retry on 5xx", func(t *testing.T) {
		m.apps[0].failing.Store(true)
		defer m.apps[0].failing.Store(false)
		before := m.apps[0].count()
		for i := range 20 {
			s, resp := get(t, c, "/retried/echo")
			if resp.StatusCode != 200 || s.Instance != "web-2" {
				t.Fatalf("request %d: %d from %q, want 200 from web-2 (web-1 failing, retried)", i, resp.StatusCode, s.Instance)
			}
		}
		if m.apps[0].count() == before {
			t.Errorf("web-1 got none of 20 requests: the retry path was not exercised")
		}
	})

	// A body is kept for the retry: over HTTP/1.1 a Content-Length body
	// read whole first, over HTTP/2 a streamed one (no length) replayed
	// from what was read.
	t.Run("retry with a body", func(t *testing.T) {
		m.apps[0].failing.Store(true)
		defer m.apps[0].failing.Store(false)
		body := bytes.Repeat([]byte("0123456789abcdef"), 1024) // 16 KiB
		sum := sha256.Sum256(body)
		for _, proto := range []string{"HTTP/1.1", "HTTP/2.0"} {
			c := c
			if proto == "HTTP/2.0" {
				c = h2cClient()
			}
			before := m.apps[0].count()
			for i := range 10 {
				var rd io.Reader = bytes.NewReader(body)
				if proto == "HTTP/2.0" {
					rd = io.MultiReader(rd) // no length: streamed
				}
				req, _ := http.NewRequest("PUT", "http://"+m.upstream+"/retried/echo", rd)
				s, _ := getSeen(t, c, req)
				if s.Instance != "web-2" || s.BodyLen != int64(len(body)) || s.BodySHA != hex.EncodeToString(sum[:]) {
					t.Fatalf("%s PUT %d reached %s with %d bytes (sha %s), want web-2 and the whole body", proto, i, s.Instance, s.BodyLen, s.BodySHA)
				}
			}
			if m.apps[0].count() == before {
				t.Errorf("%s: web-1 got none of 10 PUTs: the retry path was not exercised", proto)
			}
		}
	})

	t.Run("no retry without a policy", func(t *testing.T) {
		m.apps[0].failing.Store(true)
		defer m.apps[0].failing.Store(false)
		failed := 0
		for range 20 {
			resp, err := c.Get("http://" + m.upstream + "/v1/echo")
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 503 {
				failed++
			}
		}
		if failed == 0 {
			t.Errorf("no request to web-1's 503 reached the client on a route without retries")
		}
	})

	t.Run("request timeout", func(t *testing.T) {
		// 700ms is within the web sidecar's own 1s timeout, not within the
		// route's 300ms.
		for _, path := range []string{"/sleep?d=700ms", "/v1/sleep?d=700ms"} {
			req, _ := http.NewRequest("GET", "http://"+m.upstream+path, nil)
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			want := 200
			if path == "/sleep?d=700ms" {
				want = 504
			}
			if resp.StatusCode != want {
				t.Errorf("%s: %d, want %d (RequestTimeout 300ms only on the /sleep route)", path, resp.StatusCode, want)
			}
		}
	})

	t.Run("clusters", func(t *testing.T) {
		names := map[string]int{}
		for _, cd := range getClusters(t, m.client.admin) {
			if cd.Upstream == "web" {
				names[strings.Split(cd.Cluster, ".")[0]] = len(cd.Endpoints)
			}
		}
		if names["v1"] != 2 || names["v2"] != 1 || names["web"] != 3 {
			t.Errorf("/clusters for web: %v, want web 3, v1 2, v2 1", names)
		}
	})
}

// h2cClient speaks HTTP/2 with prior knowledge, without TLS.
func h2cClient() *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Protocols: &p}}
}

// TestMeshRouteIdleTimeout: a service-router route's IdleTimeout bounds the
// pauses of a response, not its length: a head that does not come in time
// is answered 504, a body that pauses longer is cut, and a long response
// whose bytes keep coming is relayed whole; over HTTP/1.1 and HTTP/2.
func TestMeshRouteIdleTimeout(t *testing.T) {
	t.Parallel()
	m := startL7Mesh(t, 1)
	_, _, err := m.agent.Client.ConfigEntries().Set(&api.ServiceRouterConfigEntry{Kind: api.ServiceRouter, Name: "web",
		Routes: []api.ServiceRoute{{
			Match:       &api.ServiceRouteMatch{HTTP: &api.ServiceRouteHTTPMatch{PathPrefix: "/"}},
			Destination: &api.ServiceRouteDestination{IdleTimeout: 600 * time.Millisecond},
		}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, func() error {
		for _, u := range m.client.Dump().Upstreams {
			if u.DestinationName == "web" && len(u.Routes) == 2 {
				return nil
			}
		}
		return fmt.Errorf("the client does not see the router's route yet")
	})
	for _, proto := range []string{"HTTP/1.1", "HTTP/2.0"} {
		t.Run(proto, func(t *testing.T) {
			c := oneConnClient()
			if proto == "HTTP/2.0" {
				c = h2cClient()
			}
			fetch := func(path string) (int, string, error) {
				resp, err := c.Get("http://" + m.upstream + path)
				if err != nil {
					return 0, "", err
				}
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				return resp.StatusCode, string(b), err
			}
			if status, _, err := fetch("/sleep?d=1800ms"); status != 504 || err != nil {
				t.Errorf("a head 1800ms late: %d, %v; want 504", status, err)
			}
			// 4 chunks 150ms apart: 600ms in all, never idle for 600ms
			// (the margin is for a loaded machine).
			status, body, err := fetch("/drip?n=4&every=150ms")
			if status != 200 || err != nil || strings.Count(body, "chunk") != 4 {
				t.Errorf("a response whose bytes keep coming: %d, %q, %v; want 200 and 4 chunks", status, body, err)
			}
			// The head, then a 1800ms pause: the body is cut.
			status, body, err = fetch("/drip?n=1&every=1800ms")
			if status != 200 || (err == nil && strings.Contains(body, "chunk")) {
				t.Errorf("a body pausing 1800ms: %d, %q, %v; want the head and then a cut body", status, body, err)
			}
		})
	}
}

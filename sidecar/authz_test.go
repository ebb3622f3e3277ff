package sidecar_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// l7Intentions writes web's service-intentions entry: client may read
// except under /admin, may not DELETE, and may not send X-Debug.
func l7Intentions(t *testing.T, m *l7Mesh, extra ...*api.IntentionPermission) {
	t.Helper()
	perms := append([]*api.IntentionPermission{
		{Action: api.IntentionActionDeny, HTTP: &api.IntentionHTTPPermission{PathPrefix: "/admin"}},
		{Action: api.IntentionActionDeny, HTTP: &api.IntentionHTTPPermission{Methods: []string{"DELETE"}}},
		{Action: api.IntentionActionDeny, HTTP: &api.IntentionHTTPPermission{
			Header: []api.IntentionHTTPHeaderPermission{{Name: "X-Debug", Present: true}}}},
	}, extra...)
	perms = append(perms, &api.IntentionPermission{Action: api.IntentionActionAllow,
		HTTP: &api.IntentionHTTPPermission{PathPrefix: "/", Methods: []string{"GET", "HEAD", "POST"}}})
	_, _, err := m.agent.Client.ConfigEntries().Set(&api.ServiceIntentionsConfigEntry{
		Kind: api.ServiceIntentions, Name: "web",
		Sources: []*api.SourceIntention{{Name: "client", Permissions: perms}},
	}, nil)
	if err != nil {
		t.Fatalf("service-intentions web: %v", err)
	}
}

// explain asks web's sidecar what it would decide.
func explain(t *testing.T, sc *runningSidecar, q url.Values) map[string]any {
	t.Helper()
	resp, err := http.Get("http://" + sc.admin + "/authz/explain?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("explain %s: %d %s", q.Encode(), resp.StatusCode, body)
	}
	var out map[string]any
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatalf("explain: %v: %s", err, body)
	}
	return out
}

// TestMeshL7Intentions: Consul service-intentions with L7 Permissions,
// from a real agent, decided per request on web's inbound sidecar: the
// first matching permission decides, denied requests never reach the
// application, and spellings of a denied path are normalized before
// matching (the application receives the normalized path).
func TestMeshL7Intentions(t *testing.T) {
	t.Parallel()
	m := startL7Mesh(t, 1)
	app := m.apps[0]
	l7Intentions(t, m)
	c := oneConnClient()
	get := func(method, path string, h http.Header) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+m.upstream+path, nil)
		for k, v := range h {
			req.Header[k] = v
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	// The watch delivers the entry within a blocking query's turn.
	eventually(t, 15*time.Second, func() error {
		if resp, _ := get("GET", "/admin", nil); resp.StatusCode != 403 {
			return fmt.Errorf("GET /admin: %d, want 403", resp.StatusCode)
		}
		return nil
	})

	t.Run("permissions in order", func(t *testing.T) {
		for _, tt := range []struct {
			method, path string
			h            http.Header
			status       int
			code         string
		}{
			{"GET", "/echo", nil, 200, ""},
			{"POST", "/echo", nil, 200, ""},
			{"GET", "/admin/users", nil, 403, "denied"},
			{"POST", "/admin", nil, 403, "denied"},
			{"DELETE", "/echo", nil, 403, "denied"},
			{"GET", "/echo", http.Header{"X-Debug": {"1"}}, 403, "denied"},
			// A header a permission depends on, sent twice, is refused.
			{"GET", "/echo", http.Header{"X-Debug": {"1", "2"}}, 400, "ambiguous_header"},
		} {
			before := app.count()
			resp, body := get(tt.method, tt.path, tt.h)
			if resp.StatusCode != tt.status || resp.Header.Get("X-Outrider-Error") != tt.code {
				t.Errorf("%s %s %v: %d %q %q, want %d %q", tt.method, tt.path, tt.h, resp.StatusCode,
					resp.Header.Get("X-Outrider-Error"), body, tt.status, tt.code)
			}
			if got := app.count() - before; tt.status != 200 && got != 0 {
				t.Errorf("%s %s: the application received %d requests, want none", tt.method, tt.path, got)
			}
		}
	})

	t.Run("bypass attempts on /admin", func(t *testing.T) {
		for _, tt := range []struct{ name, method, target string }{
			{"percent-encoded letter", "GET", "/%61dmin"},
			{"double slash", "GET", "//admin"},
			{"dot segment", "GET", "/./admin"},
			{"dot-dot segment", "GET", "/x/../admin"},
			{"encoded dots", "GET", "/x/%2e%2e/admin"},
			{"encoded slash", "GET", "/admin%2F.."},
			{"encoded slash before", "GET", "/x%2F..%2Fadmin"},
			{"backslash", "GET", `/\admin`},
			{"encoded backslash", "GET", "/%5Cadmin"},
			{"encoded NUL", "GET", "/admin%00"},
			{"absolute form", "GET", "http://web/admin"},
			{"absolute form, upper-case scheme", "GET", "HTTP://web/admin"},
			{"absolute form, mixed-case scheme and dot-dot", "GET", "hTTp://web/x/../admin"},
			{"lower-case method", "get", "/admin"},
			{"lower-case DELETE", "delete", "/echo"},
			{"mixed-case DELETE", "DeLeTe", "/echo"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				method := tt.method
				before := app.count()
				status := rawStatus(t, m.upstream, method+" "+tt.target+" HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")
				if status != 403 && status != 400 {
					t.Errorf("%s %s: %d, want 403 or 400", method, tt.target, status)
				}
				if got := app.count() - before; got != 0 {
					t.Errorf("%s %s reached the application %d times", method, tt.target, got)
				}
			})
		}
	})

	t.Run("absolute form without a path is /", func(t *testing.T) {
		// Only the allow rule on PathPrefix "/" admits a GET: read as the
		// empty path, it matched nothing and was denied (403). The
		// application, which serves no "/", answers 404 for "http://web/"
		// (net/http's mux would redirect an empty path with 307).
		before := app.count()
		if status := rawStatus(t, m.upstream, "GET http://web HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n"); status != 404 {
			t.Errorf("GET http://web: %d, want the application's 404 for /", status)
		}
		if got := app.count() - before; got != 1 {
			t.Errorf("GET http://web reached the application %d times, want 1", got)
		}
	})

	t.Run("application receives the normalized path", func(t *testing.T) {
		s, _ := getSeen(t, c, mustRequest(t, "GET", "http://"+m.upstream+"/x/.././/%65cho?a=%2F"))
		if s.Path != "/echo?a=%2F" {
			t.Errorf("application saw %q, want /echo?a=%%2F", s.Path)
		}
		// Case is kept: /ADMIN is another path (documented).
		resp, _ := get("GET", "/ADMIN", nil)
		if resp.StatusCode == 403 {
			t.Errorf("/ADMIN denied: paths are case-sensitive")
		}
	})

	t.Run("explain", func(t *testing.T) {
		web := m.sidecars[0]
		ex := explain(t, web, url.Values{"source": {"client"}, "method": {"GET"}, "path": {"/x/../admin/a"}})
		d := ex["decision"].(map[string]any)
		if ex["status"] != 403.0 || d["allow"] != false || !strings.HasSuffix(d["rule"].(string), "permission 1") {
			t.Errorf("explain GET /x/../admin/a: %v", ex)
		}
		if r := ex["request"].(map[string]any); r["normalized_path"] != "/admin/a" {
			t.Errorf("explain normalized path: %v", r)
		}
		ex = explain(t, web, url.Values{"source": {"client"}, "path": {"/ok"}, "header": {"X-Debug: 1", "X-Debug: 2"}})
		if ex["status"] != 400.0 {
			t.Errorf("explain with X-Debug twice: %v", ex)
		}
		ex = explain(t, web, url.Values{"source": {"client"}, "path": {"/ok"}})
		if ex["status"] != 200.0 || !strings.HasSuffix(ex["decision"].(map[string]any)["rule"].(string), "permission 4") {
			t.Errorf("explain GET /ok: %v", ex)
		}
		ex = explain(t, web, url.Values{"source": {"client"}, "path": {"/a%2Fb"}})
		if ex["status"] != 400.0 {
			t.Errorf("explain encoded slash: %v", ex)
		}
	})

	t.Run("a changed entry applies to open connections", func(t *testing.T) {
		l7Intentions(t, m, &api.IntentionPermission{Action: api.IntentionActionDeny,
			HTTP: &api.IntentionHTTPPermission{PathExact: "/echo", Methods: []string{"POST"}}})
		eventually(t, 15*time.Second, func() error {
			if resp, _ := get("POST", "/echo", nil); resp.StatusCode != 403 {
				return fmt.Errorf("POST /echo: %d, want 403", resp.StatusCode)
			}
			return nil
		})
		if resp, _ := get("GET", "/echo", nil); resp.StatusCode != 200 {
			t.Errorf("GET /echo after the change: %d", resp.StatusCode)
		}
	})

	t.Run("an intention naming an unknown service changes nothing", func(t *testing.T) {
		_, _, err := m.agent.Client.ConfigEntries().Set(&api.ServiceIntentionsConfigEntry{
			Kind: api.ServiceIntentions, Name: "no-such-service",
			Sources: []*api.SourceIntention{{Name: "client", Action: api.IntentionActionDeny}},
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp, _ := get("GET", "/echo", nil); resp.StatusCode != 200 {
			t.Errorf("GET /echo: %d", resp.StatusCode)
		}
	})
}

func mustRequest(t *testing.T, method, u string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

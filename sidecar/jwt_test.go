package sidecar_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/outrider-mesh/outrider/internal/testutil/consultest"
	"github.com/outrider-mesh/outrider/internal/testutil/jwttest"
	"github.com/outrider-mesh/outrider/mtls/mtlstest"
	"github.com/outrider-mesh/outrider/policy"
	"github.com/outrider-mesh/outrider/policy/jwtauth"
	"github.com/outrider-mesh/outrider/sidecar"
)

const issuerURL = "https://issuer.test"

// TestStaticJWT: a static-mode web whose rules allow writes only with a
// token carrying scope "write", verified against a real JWKS server,
// with claims forwarded to the application and the token stripped.
func TestStaticJWT(t *testing.T) {
	t.Parallel()
	is := jwttest.New(t, issuerURL)
	jwksURL := is.Serve(t)
	is.SetDown(true) // not reachable when the sidecar starts
	ca := mtlstest.NewCA(t, "example.org")
	td := ca.TrustDomain()
	ports := consultest.FreePorts(t, 2)
	webPublic, upstream := fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1])
	app := startHTTPApp(t, "web-1")

	verifier, err := jwtauth.New([]jwtauth.Provider{{
		Name: "test", Issuer: issuerURL, Audiences: []string{"web"},
		KeySet:        jwtauth.KeySet{Remote: &jwtauth.Remote{URI: jwksURL, CacheDuration: time.Minute}},
		ForwardClaims: []jwtauth.ClaimHeader{{Path: []string{"sub"}, Header: "X-User"}},
		StripToken:    true,
	}})
	if err != nil {
		t.Fatal(err)
	}
	client := spiffeid.RequireFromPath(td, "/client")
	rules, err := policy.CompileRules([]policy.Rule{
		{Name: "reads", Allow: true, ID: client, HTTP: &policy.HTTPMatch{Methods: []string{"GET"}}},
		{Name: "writers", Allow: true, ID: client, HTTP: &policy.HTTPMatch{Methods: []string{"POST"}},
			JWT: &policy.JWTRequirement{Providers: []policy.JWTProvider{{Name: "test",
				VerifyClaims: []policy.ClaimCheck{{Path: []string{"scope"}, Value: "write"}}}}}},
	}, policy.RulesOptions{})
	if err != nil {
		t.Fatal(err)
	}
	web := startSidecar(t, nil, sidecar.Options{
		Config: &sidecar.Config{Service: "web", Public: sidecar.PublicListener{
			BindAddress: webPublic, LocalService: fmt.Sprintf("127.0.0.1:%d", app.port()), Protocol: sidecar.HTTP}},
		Identity: mtlstest.NewSource(ca.SVID(t, "spiffe://example.org/web"), ca.Bundle()),
		Policy:   rules,
		JWT:      verifier,
	})
	cl := startClient(t, "client", mtlstest.NewSource(ca.SVID(t, "spiffe://example.org/client"), ca.Bundle()), upstream, webPublic)
	waitReady(t, web.admin)
	waitReady(t, cl.admin)

	post := func(token string, h http.Header) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", "http://"+upstream+"/echo", strings.NewReader("x"))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		for k, v := range h {
			req.Header[k] = v
		}
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	good := is.Token(t, time.Hour, map[string]any{"scope": "read write"})

	t.Run("keys never fetched: denied, fail closed", func(t *testing.T) {
		resp, _ := post(good, nil)
		if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "invalid_token") {
			t.Errorf("%d %q, want 401 invalid_token", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	})
	is.SetDown(false)
	eventually(t, 20*time.Second, func() error {
		if resp, body := post(good, nil); resp.StatusCode != 200 {
			return fmt.Errorf("good token: %d %s", resp.StatusCode, body)
		}
		return nil
	})

	t.Run("claims forwarded, token stripped, spoofed claim header dropped", func(t *testing.T) {
		before := app.count()
		resp, body := post(good, http.Header{"X-User": {"mallory"}})
		var s seen
		if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &s) != nil {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		if got := s.Header.Values("X-User"); len(got) != 1 || got[0] != "alice" {
			t.Errorf("application saw X-User %q, want [alice]", got)
		}
		if s.Header.Get("Authorization") != "" {
			t.Errorf("token reached the application: %q", s.Header.Get("Authorization"))
		}
		if app.count() != before+1 {
			t.Errorf("application count moved by %d", app.count()-before)
		}
	})

	t.Run("a spoofed claim header is dropped on reads too", func(t *testing.T) {
		req, _ := http.NewRequest("GET", "http://"+upstream+"/echo", nil)
		req.Header.Set("X-User", "mallory")
		s, _ := getSeen(t, &http.Client{Timeout: 10 * time.Second}, req)
		if v := s.Header.Get("X-User"); v != "" {
			t.Errorf("application saw X-User %q from the client", v)
		}
	})

	unsigned := "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + strings.Split(good, ".")[1] + "."
	other := jwttest.New(t, issuerURL)
	for _, tt := range []struct {
		name   string
		token  string
		status int
	}{
		{"no token", "", 401},
		{"alg none", unsigned, 401},
		{"signed by an unknown key", other.Token(t, time.Hour, map[string]any{"scope": "write"}), 401},
		{"expired", is.Token(t, -time.Hour, map[string]any{"scope": "write"}), 401},
		{"garbage", "not.a.jwt", 401},
		{"valid but no write scope", is.Token(t, time.Hour, map[string]any{"scope": "read"}), 403},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := app.count()
			resp, body := post(tt.token, nil)
			if resp.StatusCode != tt.status {
				t.Errorf("%d %s, want %d", resp.StatusCode, body, tt.status)
			}
			if tt.status == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), `Bearer realm="test"`) {
				t.Errorf("WWW-Authenticate %q", resp.Header.Get("WWW-Authenticate"))
			}
			if app.count() != before {
				t.Errorf("a refused request reached the application")
			}
		})
	}

	t.Run("JWKS down later keeps the last good keys", func(t *testing.T) {
		is.SetDown(true)
		if resp, body := post(good, nil); resp.StatusCode != 200 {
			t.Errorf("%d %s", resp.StatusCode, body)
		}
	})

	t.Run("explain shows the token check", func(t *testing.T) {
		resp, err := http.Get("http://" + web.admin + "/authz/explain?peer=spiffe://example.org/client&method=POST&path=/echo")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var ex sidecar.Explanation
		if err := json.NewDecoder(resp.Body).Decode(&ex); err != nil {
			t.Fatal(err)
		}
		if ex.Status != 401 || len(ex.Tokens) != 1 || ex.Tokens[0].Valid || ex.Decision.Provider != "test" {
			t.Errorf("explain: %+v", ex)
		}
	})
}

package sidecar_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/outrider-mesh/outrider/gateway"
	"github.com/outrider-mesh/outrider/gateway/filter"
	"github.com/outrider-mesh/outrider/internal/testutil/consultest"
	"github.com/outrider-mesh/outrider/internal/testutil/jwttest"
	"github.com/outrider-mesh/outrider/mtls/mtlstest"
	"github.com/outrider-mesh/outrider/policy"
	"github.com/outrider-mesh/outrider/policy/jwtauth"
	"github.com/outrider-mesh/outrider/sidecar"
)

// TestCORSPreflightWithJWT: every request to web needs a token, and a
// gateway route answers CORS preflights for /echo. A browser's preflight
// carries no token: the gateway answers it without authorization and it
// never reaches the application, over HTTP/1.1 (through a client
// sidecar) and HTTP/2 (straight to web's public listener). The actual
// request still needs its token, and a preflight the gateway does not
// answer (another path, or one that normalizes out of the route) is
// decided as any request.
func TestCORSPreflightWithJWT(t *testing.T) {
	t.Parallel()
	is := jwttest.New(t, issuerURL)
	jwksURL := is.Serve(t)
	ca := mtlstest.NewCA(t, "example.org")
	td := ca.TrustDomain()
	ports := consultest.FreePorts(t, 2)
	webPublic, upstream := fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1])
	app := startHTTPApp(t, "web-1")
	verifier, err := jwtauth.New([]jwtauth.Provider{{Name: "test", Issuer: issuerURL, Audiences: []string{"web"},
		KeySet: jwtauth.KeySet{Remote: &jwtauth.Remote{URI: jwksURL, CacheDuration: time.Minute}}}})
	if err != nil {
		t.Fatal(err)
	}
	client := spiffeid.RequireFromPath(td, "/client")
	rules, err := policy.CompileRules([]policy.Rule{{Name: "token", Allow: true, ID: client,
		JWT: &policy.JWTRequirement{Providers: []policy.JWTProvider{{Name: "test"}}}}}, policy.RulesOptions{})
	if err != nil {
		t.Fatal(err)
	}
	gw := gateway.Config{Routes: []gateway.Route{{Name: "api", Match: gateway.Match{PathPrefix: "/echo"},
		Filter: filter.Config{CORS: filter.CORS{AllowOrigins: []string{"https://app.example.com"}, AllowMethods: []string{"PUT"}}}}}}
	web := startSidecar(t, nil, sidecar.Options{
		Config: &sidecar.Config{Service: "web", Public: sidecar.PublicListener{
			BindAddress: webPublic, LocalService: fmt.Sprintf("127.0.0.1:%d", app.port()), Protocol: sidecar.HTTP, Gateway: gw}},
		Identity: mtlstest.NewSource(ca.SVID(t, "spiffe://example.org/web"), ca.Bundle()),
		Policy:   rules, JWT: verifier,
	})
	clientID := mtlstest.NewSource(ca.SVID(t, "spiffe://example.org/client"), ca.Bundle())
	cl := startClient(t, "client", clientID, upstream, webPublic)
	waitReady(t, web.admin)
	waitReady(t, cl.admin)

	h2cfg := tlsconfig.MTLSClientConfig(clientID, clientID, tlsconfig.AuthorizeID(spiffeid.RequireFromPath(td, "/web")))
	h2cfg.NextProtos = []string{"h2"}
	h2 := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: h2cfg, ForceAttemptHTTP2: true}}
	defer h2.CloseIdleConnections()
	h1 := &http.Client{Timeout: 10 * time.Second}
	for _, via := range []struct {
		name, base string
		c          *http.Client
		proto      string
	}{{"HTTP/1.1 via the client sidecar", "http://" + upstream, h1, "HTTP/1.1"}, {"HTTP/2 to web", "https://" + webPublic, h2, "HTTP/2.0"}} {
		t.Run(via.name, func(t *testing.T) {
			send := func(method, path string, preflight bool) *http.Response {
				t.Helper()
				req, _ := http.NewRequest(method, via.base+path, nil)
				if preflight {
					req.Header.Set("Origin", "https://app.example.com")
					req.Header.Set("Access-Control-Request-Method", "PUT")
				}
				resp, err := via.c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.Proto != via.proto {
					t.Fatalf("%s, want %s", resp.Proto, via.proto)
				}
				return resp
			}
			before := app.count()
			resp := send("OPTIONS", "/echo/x", true)
			if resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" ||
				!strings.Contains(resp.Header.Get("Access-Control-Allow-Methods"), "PUT") {
				t.Errorf("preflight: %d %v, want 204 with the CORS answer", resp.StatusCode, resp.Header)
			}
			if app.count() != before {
				t.Error("the preflight reached the application")
			}
			for _, c := range []struct {
				method, path string
				preflight    bool
			}{
				{"GET", "/echo/x", false},           // the actual request needs its token
				{"OPTIONS", "/other", true},         // no route answers it
				{"OPTIONS", "/echo/../other", true}, // normalizes out of the route
			} {
				if resp := send(c.method, c.path, c.preflight); resp.StatusCode != 401 {
					t.Errorf("%s %s: %d, want 401", c.method, c.path, resp.StatusCode)
				}
			}
			if app.count() != before {
				t.Error("a refused request reached the application")
			}
		})
	}
}

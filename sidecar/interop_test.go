package sidecar_test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/outrider-mesh/outrider/internal/testutil/consultest"
	"github.com/outrider-mesh/outrider/sidecar"
)

// exchange echoes msg on a fresh connection, without half-closing
// (Consul's built-in proxy closes both directions at the first end of
// stream).
func exchange(addr, msg string) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	return echo(c, msg)
}

// Outrider and Consul's built-in proxy in one mesh, both directions, with
// intentions enforced by whichever side is inbound.
func TestInteropWithBuiltinProxy(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name            string
		outriderInbound bool
	}{
		{"outrider outbound to builtin inbound", false},
		{"builtin outbound to outrider inbound", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := consultest.Start(t)
			web := startEcho(t)
			upstream := registerPair(t, a, web.port()).upstream
			if tc.outriderInbound {
				startSidecar(t, a, sidecar.Options{SidecarFor: "web-1"}).waitReady(t)
				a.BuiltinProxy(t, "client-1")
			} else {
				a.BuiltinProxy(t, "web-1")
				startSidecar(t, a, sidecar.Options{SidecarFor: "client-1"}).waitReady(t)
			}
			waitRoutable(t, a, "web", 1)
			eventually(t, 20*time.Second, func() error { return exchange(upstream, "interop") })

			setIntention(t, a, "web", "client", api.IntentionActionDeny)
			eventually(t, 10*time.Second, func() error {
				if exchange(upstream, "denied?") == nil {
					return fmt.Errorf("still allowed after a deny intention")
				}
				return nil
			})
			accepted := web.accepted.Load()
			if exchange(upstream, "denied?") == nil {
				t.Fatal("deny intention not enforced")
			}
			// Outrider authorizes before dialling the application; the
			// built-in proxy dials it first and handshakes lazily, so the
			// check applies only when Outrider is the inbound side.
			if tc.outriderInbound && web.accepted.Load() != accepted {
				t.Fatal("a denied connection reached the application")
			}
			setIntention(t, a, "web", "client", api.IntentionActionAllow)
			eventually(t, 10*time.Second, func() error { return exchange(upstream, "allowed again") })
		})
	}
}

// With protocol http, an Outrider side proxies per request while the
// built-in proxy relays bytes: HTTP/1.1 over mTLS works both ways.
func TestInteropWithBuiltinProxyHTTP(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name            string
		outriderInbound bool
	}{
		{"outrider outbound to builtin inbound", false},
		{"builtin outbound to outrider inbound", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := consultest.Start(t)
			setProtocol(t, a, "web", "http")
			app := startHTTPApp(t, "web-1")
			upstream := registerPair(t, a, app.port()).upstream
			if tc.outriderInbound {
				startSidecar(t, a, sidecar.Options{SidecarFor: "web-1"}).waitReady(t)
				a.BuiltinProxy(t, "client-1")
			} else {
				a.BuiltinProxy(t, "web-1")
				startSidecar(t, a, sidecar.Options{SidecarFor: "client-1"}).waitReady(t)
			}
			waitRoutable(t, a, "web", 1)
			c := oneConnClient()
			eventually(t, 20*time.Second, func() error {
				resp, err := c.Get("http://" + upstream + "/echo")
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				var s seen
				if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
					return err
				}
				// Whichever side is Outrider set the request ID.
				if s.Instance != "web-1" || s.Header.Get("X-Request-Id") == "" {
					return fmt.Errorf("seen %+v", s)
				}
				return nil
			})
			if !tc.outriderInbound {
				return
			}
			// The built-in proxy relays the client's bytes as they are: the
			// fields Outrider's inbound sets survive a Connection that
			// names them (hop-by-hop removal runs before they are added).
			req, _ := http.NewRequest("GET", "http://"+upstream+"/echo", nil)
			req.Header.Set("Connection", "X-Forwarded-For, X-Forwarded-Proto, X-Request-Id, X-Hop")
			req.Header.Set("X-Forwarded-For", "10.9.9.9")
			req.Header.Set("X-Hop", "dropped")
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var s seen
			if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
				t.Fatal(err)
			}
			if got := s.Header.Get("X-Forwarded-For"); got != "127.0.0.1" {
				t.Errorf("X-Forwarded-For %q, want only the hop the sidecar saw (the client's was named in Connection)", got)
			}
			if s.Header.Get("X-Forwarded-Proto") != "https" || s.Header.Get("X-Request-Id") == "" || s.Header.Get("X-Hop") != "" {
				t.Errorf("application saw %v", s.Header)
			}
		})
	}
}

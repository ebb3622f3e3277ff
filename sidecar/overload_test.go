package sidecar_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/outrider-mesh/outrider/discovery"
	"github.com/outrider-mesh/outrider/internal/testutil/consultest"
	"github.com/outrider-mesh/outrider/mtls/mtlstest"
	"github.com/outrider-mesh/outrider/policy"
	"github.com/outrider-mesh/outrider/sidecar"
	"github.com/outrider-mesh/outrider/sidecar/overload"
)

// TestOverloadManager: a static pair whose sidecars run overload managers
// with small budgets and an injected memory reading. Above shed_at the
// server side answers 503 (flag OM) without forwarding and closes
// keep-alive connections; above refuse_at it closes new connections at
// accept; back under, it serves again. max_requests sheds the request
// beyond the bound and keeps its connection; max_connections closes the
// connection beyond it.
func TestOverloadManager(t *testing.T) {
	t.Parallel()
	ca := mtlstest.NewCA(t, "example.org")
	ports := consultest.FreePorts(t, 2)
	webPublic, upstream := fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1])
	app := startHTTPApp(t, "web-1")
	rules := allowOnly(t, ca.TrustDomain(), "/client")
	var memory atomic.Int64
	webOv := overload.New(overload.Budget{MaxRequests: 1, MaxMemory: 1000, ShedAt: 0.9, RefuseAt: 0.95},
		overload.WithMemoryReader(memory.Load))
	web := startSidecar(t, nil, sidecar.Options{
		Config: &sidecar.Config{Service: "web", Public: sidecar.PublicListener{
			BindAddress: webPublic, LocalService: fmt.Sprintf("127.0.0.1:%d", app.port()), Protocol: sidecar.HTTP}},
		Identity: mtlstest.NewSource(ca.SVID(t, "spiffe://example.org/web"), ca.Bundle()),
		Policy:   rules,
		Overload: webOv,
	})
	clientOv := overload.New(overload.Budget{MaxConnections: 2})
	// webIdle waits for web's one request slot: it is given back just
	// after the answer went out, so a request sent on its heels may be
	// shed.
	webIdle := func() {
		t.Helper()
		eventually(t, 5*time.Second, func() error {
			if n := webOv.Status().Requests; n != 0 {
				return fmt.Errorf("web has %d requests in flight", n)
			}
			return nil
		})
	}
	allowNone, _ := policy.CompileRules(nil, policy.RulesOptions{})
	client := startSidecar(t, nil, sidecar.Options{
		Config: &sidecar.Config{Service: "client", Upstreams: []sidecar.Upstream{{
			DestinationName: "web", BindAddress: upstream, Protocol: sidecar.HTTP,
			Endpoints: []discovery.Endpoint{{Address: webPublic, Weight: 1, Identity: spiffeid.RequireFromString("spiffe://example.org/web")}},
		}}},
		Identity: mtlstest.NewSource(ca.SVID(t, "spiffe://example.org/client"), ca.Bundle()),
		Policy:   allowNone,
		Overload: clientOv,
	})
	waitReady(t, web.admin)
	waitReady(t, client.admin)

	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	do := func(path string) (int, string) {
		t.Helper()
		resp, err := c.Get("http://" + upstream + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("X-Outrider-Error")
	}
	if st, _ := do("/echo"); st != 200 {
		t.Fatalf("normal: %d", st)
	}

	t.Run("memory above shed_at: 503, not forwarded", func(t *testing.T) {
		memory.Store(920)
		webOv.Sample()
		before := app.count()
		if st, code := do("/echo"); st != 503 || code != "overloaded" {
			t.Errorf("shedding: %d %q, want 503 overloaded", st, code)
		}
		if app.count() != before {
			t.Error("a shed request reached the application")
		}
		// A client holding a mesh connection to web straight: the shed
		// answer says Connection: close and the connection closes.
		tc := dialMesh(t, ca, webPublic)
		fmt.Fprintf(tc, "GET /echo HTTP/1.1\r\nHost: web\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 503 || !resp.Close {
			t.Errorf("direct: %d close=%v, want 503 and Connection: close", resp.StatusCode, resp.Close)
		}
	})

	t.Run("memory above refuse_at: connections closed at accept", func(t *testing.T) {
		memory.Store(960)
		webOv.Sample()
		conn, err := net.Dial("tcp", webPublic)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := conn.Read(make([]byte, 1)); err == nil || n > 0 {
			t.Errorf("a refused connection read %d bytes, err %v; want it closed", n, err)
		} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Error("a refused connection stayed open")
		}
		if _, body, _ := get(t, "http://"+web.admin+"/config_dump"); !strings.Contains(body, `"refusing_connections"`) {
			t.Errorf("/config_dump does not show the state: %s", body)
		}
	})

	t.Run("memory back under: served again", func(t *testing.T) {
		memory.Store(100)
		webOv.Sample()
		if st, _ := do("/echo"); st != 200 {
			t.Errorf("after recovery: %d", st)
		}
		_, body, _ := get(t, "http://"+web.admin+"/metrics")
		for _, want := range []string{`outrider_overload_shed_requests_total{reason="memory"} 2`, `outrider_overload_refused_connections_total{reason="memory"} 1`, `response_flag="OM"`} {
			if !strings.Contains(body, want) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
	})

	t.Run("max_requests: the request beyond is shed", func(t *testing.T) {
		var wg sync.WaitGroup
		before := app.count()
		wg.Go(func() { do("/sleep?d=1500ms") })
		defer wg.Wait()
		eventually(t, 5*time.Second, func() error {
			if app.count() == before {
				return fmt.Errorf("the slow request has not reached the application")
			}
			return nil
		})
		if st, code := do("/echo"); st != 503 || code != "overloaded" {
			t.Errorf("second request: %d %q, want 503 overloaded", st, code)
		}
		// On a mesh connection held to web straight, the shed answer
		// keeps the connection (a reconnect would cost a handshake), and
		// the next request on it is served once the slow one is done.
		tc := dialMesh(t, ca, webPublic)
		br := bufio.NewReader(tc)
		fmt.Fprintf(tc, "GET /echo HTTP/1.1\r\nHost: web\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 503 || resp.Header.Get("X-Outrider-Error") != "overloaded" || resp.Close {
			t.Errorf("direct: %d %q close=%v, want 503 overloaded and the connection kept", resp.StatusCode, resp.Header.Get("X-Outrider-Error"), resp.Close)
		}
		if app.count() != before+1 {
			t.Errorf("the application saw %d requests, want 1", app.count()-before)
		}
		wg.Wait()
		webIdle()
		fmt.Fprintf(tc, "GET /echo HTTP/1.1\r\nHost: web\r\n\r\n")
		if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 200 {
			t.Errorf("the next request on the kept connection: %v %v, want 200", resp, err)
		}
	})

	t.Run("max_connections: the connection beyond is closed", func(t *testing.T) {
		webIdle()
		held := make([]net.Conn, 2)
		for i := range held {
			conn, err := net.Dial("tcp", upstream)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			held[i] = conn
		}
		eventually(t, 5*time.Second, func() error {
			if n := clientOv.Status().Connections; n != 2 {
				return fmt.Errorf("%d connections counted", n)
			}
			return nil
		})
		extra, err := net.Dial("tcp", upstream)
		if err != nil {
			t.Fatal(err)
		}
		defer extra.Close()
		fmt.Fprintf(extra, "GET /echo HTTP/1.1\r\nHost: web\r\n\r\n")
		extra.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := extra.Read(make([]byte, 1)); err == nil || n > 0 {
			t.Errorf("the third connection read %d bytes (%v); want it closed", n, err)
		}
		// The held ones are served; once one closes, a new one is too.
		fmt.Fprintf(held[0], "GET /echo HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")
		if resp, err := http.ReadResponse(bufio.NewReader(held[0]), nil); err != nil || resp.StatusCode != 200 {
			t.Fatalf("a held connection: %v %v", resp, err)
		}
		held[0].Close()
		eventually(t, 5*time.Second, func() error {
			if n := clientOv.Status().Connections; n != 1 {
				return fmt.Errorf("%d connections counted", n)
			}
			return nil
		})
		if st, _ := do("/echo"); st != 200 {
			t.Errorf("after a slot freed: %d", st)
		}
	})
}

// dialMesh opens an mTLS connection to a sidecar's public listener as
// spiffe://<td>/client, expecting spiffe://<td>/web (ALPN http/1.1).
func dialMesh(t *testing.T, ca *mtlstest.CA, addr string) *tls.Conn {
	t.Helper()
	svid := ca.SVID(t, "spiffe://"+ca.TrustDomain().String()+"/client")
	cfg := tlsconfig.MTLSClientConfig(svid, ca.Bundle(), tlsconfig.AuthorizeID(spiffeid.RequireFromPath(ca.TrustDomain(), "/web")))
	cfg.NextProtos = []string{"http/1.1"}
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

package sidecar_test

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/outrider-mesh/outrider/internal/testutil"
	"github.com/outrider-mesh/outrider/internal/testutil/consultest"
	"github.com/outrider-mesh/outrider/mtls"
	"github.com/outrider-mesh/outrider/mtls/mtlstest"
	"github.com/outrider-mesh/outrider/sidecar"
)

// On shutdown the sidecar stops accepting at once, lets an open connection
// finish, and Run returns nil once it has.
func TestShutdownDrainsOpenConnections(t *testing.T) {
	t.Parallel()
	m := startMesh(t)
	c, err := net.Dial("tcp", m.upstream)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := echo(c, "first"); err != nil {
		t.Fatal(err)
	}

	m.clientSC.cancel()
	// Stops accepting...
	eventually(t, 5*time.Second, func() error {
		nc, err := net.DialTimeout("tcp", m.upstream, time.Second)
		if err == nil {
			nc.Close()
			return errors.New("listener still accepting during drain")
		}
		return nil
	})
	// ...but the open connection still works, and Run has not returned.
	if err := echo(c, "second"); err != nil {
		t.Fatalf("open connection during drain: %v", err)
	}
	select {
	case err := <-m.clientSC.done:
		t.Fatalf("Run returned (%v) while a connection was open", err)
	default:
	}
	c.(*net.TCPConn).CloseWrite()
	io.Copy(io.Discard, c)
	select {
	case err := <-m.clientSC.done:
		if err != nil {
			t.Fatalf("Run = %v, want nil after a clean drain", err)
		}
		m.clientSC.done <- nil // for the cleanup's stop()
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after the last connection closed")
	}
}

// The drain timeout bounds shutdown: connections still open then are closed.
func TestShutdownClosesConnectionsAfterDrainTimeout(t *testing.T) {
	t.Parallel()
	m := startMesh(t) // the harness sets a 2s drain timeout
	c, err := net.Dial("tcp", m.upstream)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := echo(c, "x"); err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	m.clientSC.cancel()
	select {
	case err := <-m.clientSC.done:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
		m.clientSC.done <- nil
	case <-time.After(8 * time.Second):
		t.Fatal("Run did not return after the drain timeout")
	}
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection still open after the drain timeout")
	}
}

// An endpoint that is listed healthy but fails the mTLS handshake (here a
// plain TCP listener answers its health check) is skipped: every connection
// reaches the healthy endpoint.
func TestFailedDialTriesAnotherEndpoint(t *testing.T) {
	t.Parallel()
	a := consultest.Start(t)
	web := startEcho(t)
	bogus, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer bogus.Close()
	go func() {
		for {
			c, err := bogus.Accept()
			if err != nil {
				return
			}
			c.Close() // accepts, then hangs up: not a sidecar
		}
	}()
	p := consultest.FreePorts(t, 4)
	register(t, a, service{name: "web", id: "web-1", appPort: web.port(), publicPort: p[0]})
	register(t, a, service{name: "web", id: "web-2", appPort: web.port(), publicPort: bogus.Addr().(*net.TCPAddr).Port})
	register(t, a, service{name: "client", id: "client-1", appPort: p[1], publicPort: p[2],
		upstreams: []api.Upstream{{DestinationName: "web", LocalBindPort: p[3]}}})
	startSidecar(t, a, sidecar.Options{SidecarFor: "web-1"}).waitReady(t)
	client := startSidecar(t, a, sidecar.Options{SidecarFor: "client-1"})
	client.waitReady(t)
	waitRoutable(t, a, "web", 2)
	eventually(t, 10*time.Second, func() error {
		if n := len(client.Dump().Upstreams[0].Snapshot.Endpoints); n != 2 {
			return errors.New("client sidecar does not see both endpoints yet")
		}
		return nil
	})
	for i := range 10 {
		if got, err := roundTrip(addr(p[3]), "failover"); err != nil || got != "failover" {
			t.Fatalf("connection %d: %q, %v", i, got, err)
		}
	}
}

// On shutdown the public listener closes first; the upstream listeners stay
// usable for the application's own calls until the application stops
// listening (or the grace period passes).
func TestShutdownClosesInboundFirst(t *testing.T) {
	t.Parallel()
	a := consultest.Start(t)
	web := startEcho(t)
	clientApp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer clientApp.Close()
	p := consultest.FreePorts(t, 3)
	register(t, a, service{name: "web", id: "web-1", appPort: web.port(), publicPort: p[0]})
	register(t, a, service{name: "client", id: "client-1", appPort: clientApp.Addr().(*net.TCPAddr).Port, publicPort: p[1],
		upstreams: []api.Upstream{{DestinationName: "web", LocalBindPort: p[2]}}})
	startSidecar(t, a, sidecar.Options{SidecarFor: "web-1"}).waitReady(t)
	client := startSidecar(t, a, sidecar.Options{SidecarFor: "client-1", ShutdownGracePeriod: 20 * time.Second})
	client.waitReady(t)
	waitRoutable(t, a, "web", 1)
	m := &mesh{upstream: addr(p[2])}
	m.waitFlowing(t)

	client.cancel()
	eventually(t, 5*time.Second, func() error {
		c, err := net.DialTimeout("tcp", addr(p[1]), time.Second)
		if err == nil {
			c.Close()
			return errors.New("public listener still accepting")
		}
		return nil
	})
	// The application is still up: its outbound calls keep working.
	for range 3 {
		if got, err := roundTrip(m.upstream, "outbound during shutdown"); err != nil || got != "outbound during shutdown" {
			t.Fatalf("upstream during shutdown: %q, %v", got, err)
		}
	}
	select {
	case <-client.done:
		t.Fatal("sidecar stopped while the application was still listening")
	default:
	}
	clientApp.Close() // the application exits
	select {
	case err := <-client.done:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
		client.done <- nil
	case <-time.After(10 * time.Second):
		t.Fatal("sidecar did not stop after the application exited")
	}
	if c, err := net.DialTimeout("tcp", m.upstream, time.Second); err == nil {
		c.Close()
		t.Fatal("upstream listener still accepting after shutdown")
	}
}

// A drain does not cut what clients already sent or are about to send on
// connections accepted before it: a request in flight finishes, and a
// connection that completed its handshake but has not carried a request
// yet still gets its first one answered (with Connection: close), by the
// application (its connection pool stays open until the drain ends).
// Closing that connection at once would fail the request: a client retries
// only a request on a reused connection.
func TestDrainServesFirstRequestOfAcceptedConnection(t *testing.T) {
	t.Parallel()
	ca := mtlstest.NewCA(t, "example.org")
	td := ca.TrustDomain()
	webPublic := addr(consultest.FreePorts(t, 1)[0])
	app := startHTTPApp(t, "web-1")
	rules := allowOnly(t, td, "/client")
	web := startSidecar(t, nil, sidecar.Options{
		Config: &sidecar.Config{Service: "web", Public: sidecar.PublicListener{
			BindAddress: webPublic, LocalService: addr(app.port()), Protocol: sidecar.HTTP}},
		Identity: mtlstest.NewSource(ca.SVID(t, "spiffe://example.org/web"), ca.Bundle()),
		Policy:   rules,
	})
	waitReady(t, web.admin)
	client := mtlstest.NewSource(ca.SVID(t, "spiffe://example.org/client"), ca.Bundle())
	dial := func() (*tls.Conn, *bufio.Reader) {
		cfg := mtls.ClientConfig(client, spiffeid.RequireFromPath(td, "/web"), nil)
		cfg.NextProtos = []string{"http/1.1"}
		c, err := tls.Dial("tcp", webPublic, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c, bufio.NewReader(c)
	}
	get := func(c *tls.Conn, r *bufio.Reader, target string) (*http.Response, error) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, "GET "+target+" HTTP/1.1\r\nHost: web\r\n\r\n"); err != nil {
			return nil, err
		}
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			return nil, err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp, err
	}
	// A connection whose application connection is pooled, a slow request
	// in flight on another, and a third connection that has carried none.
	warm, warmR := dial()
	if resp, err := get(warm, warmR, "/echo"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("before the drain: %v %v", resp, err)
	}
	slow, slowR := dial()
	slowDone := make(chan error, 1)
	go func() {
		resp, err := get(slow, slowR, "/sleep?d=500ms")
		if err == nil && resp.StatusCode != 200 {
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		slowDone <- err
	}()
	fresh, freshR := dial()
	time.Sleep(100 * time.Millisecond) // the slow request reached the application

	web.cancel()
	eventually(t, 5*time.Second, func() error {
		if c, err := net.DialTimeout("tcp", webPublic, time.Second); err == nil {
			c.Close()
			return errors.New("listener still accepting during drain")
		}
		return nil
	})
	resp, err := get(fresh, freshR, "/echo")
	if err != nil {
		t.Fatalf("first request of a connection accepted before the drain: %v", err)
	}
	if resp.StatusCode != 200 || !resp.Close {
		t.Errorf("first request during the drain: %d (%s), close %v; want 200 with Connection: close",
			resp.StatusCode, resp.Header.Get("X-Outrider-Error"), resp.Close)
	}
	if err := <-slowDone; err != nil {
		t.Errorf("request in flight when the drain began: %v", err)
	}
	// The idle connection that had served a request was closed.
	warm.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := warm.Read(make([]byte, 1)); err == nil {
		t.Error("idle keep-alive connection still open during the drain")
	}
}

// During the drain delay /ready answers 503 "draining" while the public
// listener still accepts new connections and serves them (the client's
// sidecar dials a new connection for each), and the delay ends as soon as
// the application stops listening.
func TestDrainDelayServesWhileNotReady(t *testing.T) {
	t.Parallel()
	a := consultest.Start(t)
	web := startEcho(t)
	p := registerPair(t, a, web.port())
	// A delay far longer than the test: only the application's exit ends it.
	webSC := startSidecar(t, a, sidecar.Options{SidecarFor: "web-1", DrainDelay: time.Minute})
	webSC.waitReady(t)
	startSidecar(t, a, sidecar.Options{SidecarFor: "client-1"}).waitReady(t)
	waitRoutable(t, a, "web", 1)
	m := &mesh{upstream: p.upstream}
	m.waitFlowing(t)

	webSC.cancel()
	eventually(t, 5*time.Second, func() error {
		code, body, err := testutil.Ready(webSC.admin)
		if err != nil || code != http.StatusServiceUnavailable || !strings.Contains(body, "draining") {
			return fmt.Errorf("/ready during the drain delay: %d %q %v, want 503 draining", code, body, err)
		}
		return nil
	})
	accepted := web.accepted.Load()
	for i := range 5 {
		msg := fmt.Sprintf("during the drain delay %d", i)
		if got, err := roundTrip(m.upstream, msg); err != nil || got != msg {
			t.Fatalf("request on a new connection during the drain delay: %q, %v", got, err)
		}
	}
	// (The sidecar's own probes of whether the application still listens
	// are accepted connections too.)
	if n := web.accepted.Load() - accepted; n < 5 {
		t.Errorf("the application accepted %d connections during the drain delay, want at least 5", n)
	}
	if code, body, err := testutil.Ready(webSC.admin); err != nil || code != http.StatusServiceUnavailable {
		t.Errorf("/ready after the requests: %d %q %v, want 503", code, body, err)
	}
	select {
	case err := <-webSC.done:
		t.Fatalf("Run returned (%v) during the drain delay", err)
	default:
	}
	web.ln.Close() // the application exits: nothing could serve new connections
	select {
	case err := <-webSC.done:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
		webSC.done <- nil
	case <-time.After(10 * time.Second):
		t.Fatal("the drain delay went on after the application stopped listening")
	}
	if _, _, err := testutil.Ready(webSC.admin); err == nil {
		t.Error("admin server still serving after Run returned")
	}
}

package sidecar_test

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/outrider-mesh/outrider/internal/testutil/consultest"
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

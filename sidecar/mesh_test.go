package sidecar_test

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/outrider-mesh/outrider/internal/testutil/consultest"
	"github.com/outrider-mesh/outrider/sidecar"
)

// mesh is two services, web and client, each with an Outrider sidecar;
// client's sidecar has web as an upstream on a local port.
type mesh struct {
	agent     *consultest.Agent
	web       *echoApp
	webSC     *runningSidecar
	clientSC  *runningSidecar
	webPublic int
	upstream  string
}

func startMesh(t *testing.T) *mesh {
	t.Helper()
	a := consultest.Start(t)
	web := startEcho(t)
	p := registerPair(t, a, web.port())
	m := &mesh{agent: a, web: web, webPublic: p.webPublic, upstream: p.upstream}
	m.webSC = startSidecar(t, a, sidecar.Options{SidecarFor: "web-1"})
	m.clientSC = startSidecar(t, a, sidecar.Options{SidecarFor: "client-1"})
	m.webSC.waitReady(t)
	m.clientSC.waitReady(t)
	waitRoutable(t, a, "web", 1)
	m.waitFlowing(t)
	return m
}

// waitFlowing waits until a round trip through the pair succeeds (the
// client sidecar learns of web's health within one blocking query).
func (m *mesh) waitFlowing(t *testing.T) {
	t.Helper()
	eventually(t, 15*time.Second, func() error {
		got, err := roundTrip(m.upstream, "ping")
		if err != nil {
			return err
		}
		if got != "ping" {
			return fmt.Errorf("got %q, want ping", got)
		}
		return nil
	})
}

func setIntention(t *testing.T, a *consultest.Agent, dest, src string, action api.IntentionAction) {
	t.Helper()
	_, _, err := a.Client.ConfigEntries().Set(&api.ServiceIntentionsConfigEntry{
		Kind: api.ServiceIntentions, Name: dest,
		Sources: []*api.SourceIntention{{Name: src, Action: action}},
	}, nil)
	if err != nil {
		t.Fatalf("intention %s->%s %s: %v", src, dest, action, err)
	}
}

func TestMeshL4(t *testing.T) {
	t.Parallel()
	m := startMesh(t)

	t.Run("half-close round trip", func(t *testing.T) {
		got, err := roundTrip(m.upstream, "hello through the mesh")
		if err != nil || got != "hello through the mesh" {
			t.Fatalf("round trip = %q, %v", got, err)
		}
	})

	// Two Outrider sidecars recognise each other (ALPN) and resume TLS
	// sessions; the inbound side still verifies and authorizes each one.
	t.Run("sessions resumed between Outrider sidecars", func(t *testing.T) {
		for range 3 {
			if got, err := roundTrip(m.upstream, "again"); err != nil || got != "again" {
				t.Fatalf("round trip = %q, %v", got, err)
			}
		}
		if n := m.webSC.Dump().Stats["tls_resumed_handshakes"]; n == 0 {
			t.Fatal("no resumed handshake between two Outrider sidecars")
		}
	})

	t.Run("large payload both ways", func(t *testing.T) {
		msg := make([]byte, 4<<20)
		rand.Read(msg)
		got, err := roundTrip(m.upstream, string(msg))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal([]byte(got), msg) {
			t.Fatalf("payload corrupted: got %d bytes, want %d", len(got), len(msg))
		}
	})

	t.Run("config_dump", func(t *testing.T) {
		resp, err := http.Get("http://" + m.clientSC.admin + "/config_dump")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var d sidecar.ConfigDump
		if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
			t.Fatal(err)
		}
		if !d.Ready || d.ProxyID != "client-1-sidecar-proxy" || d.Config == nil || d.Config.Service != "client" {
			t.Fatalf("config_dump: ready=%v proxy=%q config=%+v", d.Ready, d.ProxyID, d.Config)
		}
		if len(d.Upstreams) != 1 || d.Upstreams[0].Snapshot == nil || len(d.Upstreams[0].Snapshot.Endpoints) != 1 {
			t.Fatalf("config_dump upstreams = %+v", d.Upstreams)
		}
		ep := d.Upstreams[0].Snapshot.Endpoints[0]
		if !strings.HasSuffix(ep.Identity.String(), "/ns/default/dc/dc1/svc/web") || ep.Address != addr(m.webPublic) {
			t.Fatalf("endpoint = %+v, want web's sidecar with web's identity", ep)
		}
		if d.Identity == nil || d.Identity.Serial == "" || !strings.HasSuffix(d.Identity.SPIFFEID, "/svc/client") {
			t.Fatalf("identity = %+v, want the client service's leaf", d.Identity)
		}
	})

	t.Run("deny intention closes new connections", func(t *testing.T) {
		setIntention(t, m.agent, "web", "client", api.IntentionActionDeny)
		start := time.Now()
		eventually(t, 10*time.Second, func() error {
			got, err := roundTrip(m.upstream, "should be denied")
			if err == nil && got == "should be denied" {
				return fmt.Errorf("connection still allowed")
			}
			return nil
		})
		t.Logf("deny effective after %s", time.Since(start).Round(time.Millisecond))
		before := m.web.accepted.Load()
		if got, err := roundTrip(m.upstream, "x"); err == nil && got == "x" {
			t.Fatal("denied connection reached the application")
		}
		if after := m.web.accepted.Load(); after != before {
			t.Fatalf("denied connection dialled the application (%d -> %d accepts)", before, after)
		}
		if d := m.webSC.Dump(); d.Stats["connections_denied"] == 0 {
			t.Fatalf("denied counter is 0: %v", d.Stats)
		}
	})

	t.Run("allow intention restores traffic", func(t *testing.T) {
		setIntention(t, m.agent, "web", "client", api.IntentionActionAllow)
		m.waitFlowing(t)
	})

	// Last: the agent is stopped for good.
	t.Run("consul going away keeps traffic flowing", func(t *testing.T) {
		c, err := net.Dial("tcp", m.upstream)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		m.agent.Stop()
		// An established connection keeps working...
		if err := echo(c, "still here"); err != nil {
			t.Fatalf("established connection: %v", err)
		}
		// ...and new ones use the last snapshot, certificates and intentions.
		for i := range 5 {
			got, err := roundTrip(m.upstream, "new connection")
			if err != nil || got != "new connection" {
				t.Fatalf("new connection %d after Consul stopped: %q, %v", i, got, err)
			}
		}
		eventually(t, 10*time.Second, func() error {
			for _, u := range m.clientSC.Dump().Upstreams {
				if u.Discovery.Stale() {
					return nil
				}
			}
			return fmt.Errorf("discovery not reported stale")
		})
	})
}

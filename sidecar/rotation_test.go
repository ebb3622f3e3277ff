package sidecar_test

import (
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/outrider-mesh/outrider/internal/testutil/consultest"
	"github.com/outrider-mesh/outrider/mtls/consulca"
	"github.com/outrider-mesh/outrider/sidecar"
)

// A CA root rotation, forced through Consul's CA configuration endpoint,
// re-issues both leaves; the sidecars pick up the new leaves and roots
// without dropping an established connection, and new connections work.
func TestCARotationKeepsTraffic(t *testing.T) {
	t.Parallel()
	m := startMesh(t)
	before := map[string]string{
		"web":    m.webSC.Dump().Identity.Serial,
		"client": m.clientSC.Dump().Identity.Serial,
	}

	c, err := net.Dial("tcp", m.upstream)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := echo(c, "before rotation"); err != nil {
		t.Fatal(err)
	}

	// Changing the key type makes Consul's built-in CA generate a new root
	// (and cross-sign it), then re-issue every leaf.
	if _, err := m.agent.Client.Connect().CASetConfig(&api.CAConfig{
		Provider: "consul",
		Config:   map[string]any{"PrivateKeyType": "ec", "PrivateKeyBits": 384, "LeafCertTTL": "72h"},
	}, nil); err != nil {
		t.Fatal(err)
	}
	for name, sc := range map[string]*runningSidecar{"web": m.webSC, "client": m.clientSC} {
		eventually(t, 30*time.Second, func() error {
			id := sc.Dump().Identity
			if id.Serial == before[name] {
				return fmt.Errorf("%s leaf not rotated yet (serial %s)", name, id.Serial)
			}
			if len(id.Details.(consulca.Status).RootIDs) != 2 {
				return fmt.Errorf("%s trusts %d roots, want old and new", name, len(id.Details.(consulca.Status).RootIDs))
			}
			return nil
		})
	}
	if err := echo(c, "after rotation"); err != nil {
		t.Fatalf("established connection broken by rotation: %v", err)
	}
	for i := range 3 {
		got, err := roundTrip(m.upstream, "new leaf")
		if err != nil || got != "new leaf" {
			t.Fatalf("new connection %d after rotation: %q, %v", i, got, err)
		}
	}
}

// Upstreams added to, moved in or removed from the registration are
// applied live; connections accepted before the change keep flowing.
func TestRegistrationChangesApplyLive(t *testing.T) {
	t.Parallel()
	a := consultest.Start(t)
	web := startEcho(t)
	p := consultest.FreePorts(t, 6)
	register(t, a, service{name: "web", id: "web-1", appPort: web.port(), publicPort: p[0]})
	first := service{name: "client", id: "client-1", appPort: p[1], publicPort: p[2],
		upstreams: []api.Upstream{{DestinationName: "web", LocalBindPort: p[3]}}}
	register(t, a, first)
	startSidecar(t, a, sidecar.Options{SidecarFor: "web-1"}).waitReady(t)
	client := startSidecar(t, a, sidecar.Options{SidecarFor: "client-1"})
	client.waitReady(t)
	waitRoutable(t, a, "web", 1)
	m := &mesh{upstream: addr(p[3])}
	m.waitFlowing(t)

	held, err := net.Dial("tcp", addr(p[3]))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()

	// Move web to another local port and add a second upstream: the old
	// listener closes, the new ones open.
	second := first
	second.upstreams = []api.Upstream{
		{DestinationName: "web", LocalBindPort: p[4]},
		{DestinationName: "other", LocalBindPort: p[5]},
	}
	register(t, a, second)
	(&mesh{upstream: addr(p[4])}).waitFlowing(t)
	eventually(t, 10*time.Second, func() error {
		c, err := net.DialTimeout("tcp", addr(p[3]), time.Second)
		if err == nil {
			c.Close()
			return errors.New("removed upstream listener still accepts")
		}
		return nil
	})
	closedPromptly(t, addr(p[5])) // listening, but "other" has no instance
	if n := len(client.Dump().Upstreams); n != 2 {
		t.Fatalf("config_dump lists %d upstreams, want 2", n)
	}
	if got, err := roundTrip(addr(p[4]), "kept"); err != nil || got != "kept" {
		t.Fatalf("kept upstream: %q, %v", got, err)
	}
	if err := echo(held, "held"); err != nil {
		t.Fatalf("connection accepted before the change: %v", err)
	}
}

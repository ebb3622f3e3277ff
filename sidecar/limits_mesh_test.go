package sidecar_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/outrider-mesh/outrider/internal/testutil/consultest"
	"github.com/outrider-mesh/outrider/sidecar"
)

// TestMeshUpstreamLimits: service-defaults UpstreamConfig Limits of the
// client service (a real Consul config entry, merged by the agent into the
// client's upstream) apply live: a request over MaxConcurrentRequests
// fails fast with 503 upstream_overflow instead of queueing.
func TestMeshUpstreamLimits(t *testing.T) {
	t.Parallel()
	m := startL7Mesh(t, 1)
	setUpstreamConfig(t, m.agent, m.client, &api.UpstreamConfig{Limits: &api.UpstreamLimits{MaxConcurrentRequests: intPtr(1)}},
		func(u sidecar.Upstream) bool { return u.Limits.MaxConcurrentRequests == 1 })
	// One request holds the only slot (it has reached the application);
	// the next is refused at once.
	app := m.apps[0]
	before := app.count()
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	var wg sync.WaitGroup
	wg.Go(func() {
		resp, err := c.Get("http://" + m.upstream + "/sleep?d=1500ms")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
	defer wg.Wait()
	eventually(t, 5*time.Second, func() error {
		if app.count() == before {
			return fmt.Errorf("the slow request has not reached the application yet")
		}
		return nil
	})
	eventually(t, 5*time.Second, func() error {
		start := time.Now()
		resp, err := c.Get("http://" + m.upstream + "/echo")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 503 || resp.Header.Get("X-Outrider-Error") != "upstream_overflow" {
			return fmt.Errorf("second request: %d %q, want 503 upstream_overflow", resp.StatusCode, resp.Header.Get("X-Outrider-Error"))
		}
		if d := time.Since(start); d > 500*time.Millisecond {
			return fmt.Errorf("the overflow answer took %v: it waited", d)
		}
		return nil
	})
	wg.Wait()
	// The slot is free once the sidecar has finished the slow request,
	// which can be just after its client read the answer.
	eventually(t, 5*time.Second, func() error {
		resp, err := c.Get("http://" + m.upstream + "/echo")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("after the slot is free: %d", resp.StatusCode)
		}
		return nil
	})
}

func intPtr(n int) *int { return &n }

// setUpstreamConfig writes the client service's service-defaults with
// UpstreamConfig.Defaults c, and waits until sc's upstream web has it
// (ready says so): the agent merges it into the registration, which the
// sidecar watches.
func setUpstreamConfig(t *testing.T, a *consultest.Agent, sc *runningSidecar, c *api.UpstreamConfig, ready func(sidecar.Upstream) bool) {
	t.Helper()
	_, _, err := a.Client.ConfigEntries().Set(&api.ServiceConfigEntry{Kind: api.ServiceDefaults, Name: "client",
		UpstreamConfig: &api.UpstreamConfiguration{Defaults: c}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, func() error {
		for _, u := range sc.Dump().Upstreams {
			if u.DestinationName == "web" && ready(u.Upstream) {
				return nil
			}
		}
		return fmt.Errorf("the client sidecar's upstream web does not have the new UpstreamConfig yet")
	})
}

// TestMeshL4MaxConnections: for a tcp upstream, Limits.MaxConnections
// bounds the connections proxied at once; one over it is closed without
// reaching the destination, and a slot freed admits the next.
func TestMeshL4MaxConnections(t *testing.T) {
	t.Parallel()
	m := startMesh(t)
	setUpstreamConfig(t, m.agent, m.clientSC, &api.UpstreamConfig{Limits: &api.UpstreamLimits{MaxConnections: intPtr(1)}},
		func(u sidecar.Upstream) bool { return u.Limits.MaxConnections == 1 })
	// The mesh check's last connection may still hold the one slot for a
	// moment after its client saw the end (the relay tears down after):
	// retry the held connection until it is proxied.
	var held net.Conn
	eventually(t, 5*time.Second, func() error {
		c, err := net.Dial("tcp", m.upstream)
		if err != nil {
			return err
		}
		if err := echo(c, "held"); err != nil {
			c.Close()
			return err
		}
		held = c
		return nil
	})
	if got, err := roundTrip(m.upstream, "over"); err == nil {
		t.Fatalf("a second connection over MaxConnections 1 was proxied: %q", got)
	}
	held.Close()
	eventually(t, 5*time.Second, func() error {
		got, err := roundTrip(m.upstream, "after")
		if err != nil || got != "after" {
			return fmt.Errorf("after the held connection closed: %q %v", got, err)
		}
		return nil
	})
}

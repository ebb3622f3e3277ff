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
)

// TestMeshUpstreamLimits: service-defaults UpstreamConfig Limits of the
// client service (a real Consul config entry, merged by the agent into the
// client's upstream) apply live: a request over MaxConcurrentRequests
// fails fast with 503 upstream_overflow instead of queueing.
func TestMeshUpstreamLimits(t *testing.T) {
	t.Parallel()
	m := startL7Mesh(t, 1)
	_, _, err := m.agent.Client.ConfigEntries().Set(&api.ServiceConfigEntry{Kind: api.ServiceDefaults, Name: "client",
		UpstreamConfig: &api.UpstreamConfiguration{Defaults: &api.UpstreamConfig{
			Limits: &api.UpstreamLimits{MaxConcurrentRequests: intPtr(1)}}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, func() error {
		for _, u := range m.client.Dump().Upstreams {
			if u.DestinationName == "web" && u.Limits.MaxConcurrentRequests == 1 {
				return nil
			}
		}
		return fmt.Errorf("client sidecar does not have the limits yet")
	})
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
	resp, err := c.Get("http://" + m.upstream + "/echo")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("after the slot is free: %d", resp.StatusCode)
	}
}

func intPtr(n int) *int { return &n }

// TestMeshL4MaxConnections: for a tcp upstream, Limits.MaxConnections
// bounds the connections proxied at once; one over it is closed without
// reaching the destination, and a slot freed admits the next.
func TestMeshL4MaxConnections(t *testing.T) {
	t.Parallel()
	m := startMesh(t)
	_, _, err := m.agent.Client.ConfigEntries().Set(&api.ServiceConfigEntry{Kind: api.ServiceDefaults, Name: "client",
		UpstreamConfig: &api.UpstreamConfiguration{Defaults: &api.UpstreamConfig{
			Limits: &api.UpstreamLimits{MaxConnections: intPtr(1)}}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, func() error {
		for _, u := range m.clientSC.Dump().Upstreams {
			if u.DestinationName == "web" && u.Limits.MaxConnections == 1 {
				return nil
			}
		}
		return fmt.Errorf("client sidecar does not have the limits yet")
	})
	held, err := net.Dial("tcp", m.upstream)
	if err != nil {
		t.Fatal(err)
	}
	if err := echo(held, "held"); err != nil {
		t.Fatal(err)
	}
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

package sidecar

import (
	"testing"
	"time"

	"github.com/outrider-mesh/outrider/discovery"
	"github.com/outrider-mesh/outrider/sidecar/balance"
)

// pick fails over to the next target when the endpoints of the ones
// before it were all tried or ejected, and goes back to the first
// target's (as its balancer would) only when no target has better.
func TestPickFailsOverPastTriedAndEjected(t *testing.T) {
	newC := func(name string, addrs ...string) *cluster {
		c := &cluster{name: name, bal: balance.NewBalancer(balance.RoundRobin)}
		snap := &discovery.Snapshot{Service: name}
		for _, a := range addrs {
			snap.Endpoints = append(snap.Endpoints, discovery.Endpoint{Address: a, Weight: 1})
		}
		c.bal.Update(snap, balance.Config{Policy: balance.RoundRobin})
		return c
	}
	dc1, dc2, empty := newC("dc1", "a:1"), newC("dc2", "b:1"), newC("dc3")
	cs := []*cluster{dc1, empty, dc2}
	for _, tt := range []struct {
		name  string
		cs    []*cluster
		tried []string
		want  string
	}{
		{"first target healthy", cs, nil, "a:1"},
		{"first target's endpoint tried", cs, []string{"a:1"}, "b:1"},
		{"every endpoint tried", cs, []string{"a:1", "b:1"}, "a:1"},
		{"one target, tried", []*cluster{dc1}, []string{"a:1"}, "a:1"},
		{"first target empty", []*cluster{empty, dc2}, nil, "b:1"},
	} {
		c, ep, err := pick(tt.cs, 0, false, tt.tried)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if ep.Address != tt.want {
			t.Errorf("%s: picked %s of %s, want %s", tt.name, ep.Address, c.name, tt.want)
		}
		ep.Done()
	}
	if _, _, err := pick([]*cluster{empty}, 0, false, nil); err != balance.ErrNoEndpoint {
		t.Errorf("no endpoint: %v, want ErrNoEndpoint", err)
	}

	// Outlier detection ejects dc1's endpoint after one local failure.
	dc1.bal.SetOutlier(balance.OutlierConfig{Interval: time.Hour, MaxFailures: 1})
	_, ep, _ := pick(cs, 0, false, nil)
	ep.DoneWith(balance.LocalFailure)
	if _, ok := ep.Ejected(); !ok {
		t.Fatal("a:1 not ejected after a local failure")
	}
	_, ep, _ = pick(cs, 0, false, nil)
	if ep.Address != "b:1" {
		t.Errorf("dc1's endpoint ejected: picked %s, want b:1", ep.Address)
	}
	ep.Done()
	// The fallback endpoints pick passed over were released.
	for _, c := range []*cluster{dc1, dc2} {
		ep, _ := c.bal.Pick(0, false, nil)
		if n := ep.Active(); n != 1 {
			t.Errorf("%s has %d requests in flight, want only this pick's", ep.Address, n)
		}
		ep.Done()
	}
}

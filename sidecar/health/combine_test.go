package health_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/outrider-mesh/outrider/discovery"
	"github.com/outrider-mesh/outrider/mtls/mtlstest"
	"github.com/outrider-mesh/outrider/sidecar/balance"
	"github.com/outrider-mesh/outrider/sidecar/health"
)

// combo is a Checker whose endpoints' answers the test sets, feeding a
// Balancer the way a sidecar cluster does: UpdateExcluding(snapshot,
// Excluded(snapshot)).
type combo struct {
	c    *health.Checker
	bal  *balance.Balancer
	snap *discovery.Snapshot
	cfg  balance.Config
	down sync.Map // address -> true: answers unhealthy
}

func newCombo(t *testing.T, cfg balance.Config, n int) *combo {
	k := &combo{bal: balance.NewBalancer(balance.LeastRequest), cfg: cfg}
	f := &fakeProber{answer: func(_ context.Context, addr string) error {
		if _, ok := k.down.Load(addr); ok {
			return &health.AnswerError{Reason: "down"}
		}
		return nil
	}}
	hc := fast(health.Config{Type: health.TCP})
	hc.HealthyThreshold = 1
	k.c = health.New(hc, f)
	t.Cleanup(k.c.Close)
	var eps []discovery.Endpoint
	for i := range n {
		eps = append(eps, discovery.Endpoint{Address: fmt.Sprintf("10.0.0.%d:443", i+1), Weight: 1})
	}
	k.snap = snap(eps...)
	k.c.Update(k.snap)
	k.settle(t, nil)
	return k
}

// settle waits until the endpoints in down are unhealthy and the others
// healthy, then rebalances.
func (k *combo) settle(t *testing.T, down []string) {
	t.Helper()
	k.down.Clear()
	for _, a := range down {
		k.down.Store(a, true)
	}
	mtlstest.WaitFor(t, fmt.Sprintf("%v down", down), func() bool {
		for _, e := range k.snap.Endpoints {
			_, isDown := k.down.Load(e.Address)
			if st, _ := k.c.Status(e.Address); st.State != map[bool]health.State{false: health.Healthy, true: health.Unhealthy}[isDown] {
				return false
			}
		}
		return true
	})
	k.bal.UpdateExcluding(k.snap, k.cfg, k.c.Excluded(k.snap))
}

func (k *combo) addr(i int) string { return k.snap.Endpoints[i].Address }

func (k *combo) pick(t *testing.T, hash uint64, tried ...string) *balance.Endpoint {
	t.Helper()
	e, err := k.bal.Pick(hash, true, tried)
	if err != nil {
		t.Fatal(err)
	}
	e.Done()
	return e
}

// TestBalancerRingHashOverHealthy: with ring hash, an endpoint that fails
// its check loses its keys to the others and no other key moves; when it
// passes again its keys come back.
func TestBalancerRingHashOverHealthy(t *testing.T) {
	k := newCombo(t, balance.Config{Policy: balance.RingHash}, 4)
	owner := map[uint64]string{}
	for h := range uint64(500) {
		owner[h*0x9e3779b97f4a7c15] = k.pick(t, h*0x9e3779b97f4a7c15).Address
	}
	k.settle(t, []string{k.addr(1)})
	moved := 0
	for h, was := range owner {
		got := k.pick(t, h).Address
		switch {
		case got == k.addr(1):
			t.Fatalf("hash %x went to the unhealthy endpoint", h)
		case was != k.addr(1) && got != was:
			t.Fatalf("hash %x moved from healthy %s to %s", h, was, got)
		case was == k.addr(1):
			moved++
		}
	}
	if moved == 0 {
		t.Fatal("the unhealthy endpoint owned no key")
	}
	k.settle(t, nil)
	for h, was := range owner {
		if got := k.pick(t, h).Address; got != was {
			t.Fatalf("hash %x at %s after recovery, was %s", h, got, was)
		}
	}
}

// TestBalancerStateSurvivesHealthChanges: another endpoint's health
// changes keep an endpoint's outlier ejection and active request count
// (the balancer keeps state by address across updates).
func TestBalancerStateSurvivesHealthChanges(t *testing.T) {
	pct := uint32(100)
	k := newCombo(t, balance.Config{Policy: balance.RoundRobin}, 3)
	k.bal.SetOutlier(balance.OutlierConfig{MaxFailures: 1, MaxEjectionPercent: &pct})
	var ejected, held *balance.Endpoint
	for ejected == nil || held == nil {
		e, err := k.bal.Pick(0, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case e.Address == k.addr(0) && ejected == nil:
			e.DoneWith(balance.LocalFailure)
			ejected = e
		case e.Address == k.addr(1) && held == nil:
			held = e // in flight until the end of the test
		default:
			e.Done()
		}
	}
	k.settle(t, []string{k.addr(2)})
	k.settle(t, nil)
	for _, e := range k.bal.Endpoints() {
		switch e.Address {
		case k.addr(0):
			if _, ok := e.Ejected(); !ok || e.Ejections() != 1 {
				t.Errorf("%s lost its ejection", e.Address)
			}
		case k.addr(1):
			if e.Active() != 1 {
				t.Errorf("%s has %d active requests, want 1", e.Address, e.Active())
			}
		}
	}
	held.Done()
}

// TestBalancerTriedNeverUnhealthy: when the only healthy endpoint was
// tried, a retry goes back to it, never to an endpoint failing its check;
// with every endpoint failing there is nothing to pick.
func TestBalancerTriedNeverUnhealthy(t *testing.T) {
	for _, p := range []balance.Policy{balance.RoundRobin, balance.LeastRequest, balance.Random, balance.RingHash, balance.Maglev} {
		t.Run(string(p), func(t *testing.T) {
			k := newCombo(t, balance.Config{Policy: p}, 3)
			k.settle(t, []string{k.addr(1), k.addr(2)})
			for h := range uint64(50) {
				if e := k.pick(t, h, k.addr(0)); e.Address != k.addr(0) {
					t.Fatalf("picked %s, which fails its check", e.Address)
				}
			}
			k.settle(t, []string{k.addr(0), k.addr(1), k.addr(2)})
			if _, err := k.bal.Pick(0, false, nil); err != balance.ErrNoEndpoint {
				t.Fatalf("with every endpoint failing: %v, want ErrNoEndpoint", err)
			}
		})
	}
}

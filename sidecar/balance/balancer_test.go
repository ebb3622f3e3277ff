package balance

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/outrider-mesh/outrider/discovery"
)

var allPolicies = []Policy{RoundRobin, Random, LeastRequest, RingHash, Maglev}

func addr(i int) string { return fmt.Sprintf("10.0.0.%d:20000", i+1) }

func balancer(t testing.TB, p Policy, weights ...int) *Balancer {
	t.Helper()
	b := NewBalancer(RoundRobin)
	b.Update(snap(weights...), Config{Policy: p})
	return b
}

// pickDone picks and ends the request at once.
func pickDone(t testing.TB, b *Balancer, hash uint64, hashed bool, tried []string) *Endpoint {
	t.Helper()
	e, err := b.Pick(hash, hashed, tried)
	if err != nil {
		t.Fatal(err)
	}
	e.Done()
	return e
}

func TestBalancerNoEndpoint(t *testing.T) {
	for _, p := range allPolicies {
		b := NewBalancer(p)
		if _, err := b.Pick(1, true, nil); !errors.Is(err, ErrNoEndpoint) {
			t.Errorf("%s: Pick before Update: %v, want ErrNoEndpoint", p, err)
		}
		for _, s := range []*discovery.Snapshot{nil, snap()} {
			b.Update(s, Config{})
			if _, err := b.Pick(1, true, []string{"x"}); !errors.Is(err, ErrNoEndpoint) {
				t.Errorf("%s: Pick on %v: %v, want ErrNoEndpoint", p, s, err)
			}
		}
		// Back to empty after having endpoints.
		b.Update(snap(1, 2), Config{})
		b.Update(snap(), Config{})
		if _, err := b.Pick(1, true, nil); !errors.Is(err, ErrNoEndpoint) {
			t.Errorf("%s: Pick after emptying: %v", p, err)
		}
	}
}

func TestLegacyPickerPolicies(t *testing.T) {
	for _, p := range allPolicies {
		pk := New(p, snap(1, 2, 3))
		seen := map[string]bool{}
		for range 300 {
			e, err := pk.Pick()
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			seen[e.Address] = true
		}
		if len(seen) != 3 {
			t.Errorf("%s: legacy picker reached %d of 3 endpoints", p, len(seen))
		}
	}
}

func TestBalancerRoundRobinExact(t *testing.T) {
	b := balancer(t, RoundRobin, 5, 1, 1)
	counts := map[string]int{}
	for range 70 {
		counts[pickDone(t, b, 0, false, nil).Address]++
	}
	if counts[addr(0)] != 50 || counts[addr(1)] != 10 || counts[addr(2)] != 10 {
		t.Fatalf("counts = %v, want 50/10/10", counts)
	}
}

// checkShares fails when an endpoint's share of n picks is off its weight
// share by more than tol (relative).
func checkShares(t *testing.T, counts map[string]int, weights []int, n int, tol float64) {
	t.Helper()
	total := 0
	for _, w := range weights {
		total += w
	}
	for i, w := range weights {
		want := float64(n) * float64(w) / float64(total)
		if got := float64(counts[addr(i)]); math.Abs(got-want) > tol*want {
			t.Errorf("endpoint %d (weight %d): %v picks, want %.0f ±%.0f%%", i, w, got, want, tol*100)
		}
	}
}

// Idle endpoints (every request done before the next) are picked in
// proportion to their weights by every policy; hash policies with random
// hashes, or without one. A ring's shares deviate from the weights by about
// 1/sqrt(points of the endpoint): 6% for the 256 points of weight 2 in the
// default ring, 1.5% in this test's.
func TestWeightProportions(t *testing.T) {
	weights := []int{1, 2, 3, 4}
	const n = 100000
	for _, p := range allPolicies {
		for _, hashed := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/hashed=%v", p, hashed), func(t *testing.T) {
				b := NewBalancer(p)
				b.Update(snap(weights...), Config{MinRingSize: 1 << 14})
				counts := map[string]int{}
				for range n {
					counts[pickDone(t, b, rand.Uint64(), hashed, nil).Address]++
				}
				checkShares(t, counts, weights, n, 0.06)
			})
		}
	}
}

func TestLeastRequestPrefersIdle(t *testing.T) {
	for _, weights := range [][]int{{1, 1, 1, 1}, {2, 1, 1, 1}} {
		t.Run(fmt.Sprint(weights), func(t *testing.T) {
			b := balancer(t, LeastRequest, weights...)
			// Load endpoint 0 with 50 requests in flight.
			var held []*Endpoint
			for len(held) < 50 {
				e, err := b.Pick(0, false, nil)
				if err != nil {
					t.Fatal(err)
				}
				if e.Address == addr(0) {
					held = append(held, e)
				} else {
					e.Done()
				}
			}
			if got := held[0].Active(); got != 50 {
				t.Fatalf("Active() = %d, want 50", got)
			}
			busy := 0
			const n = 10000
			for range n {
				if pickDone(t, b, 0, false, nil).Address == addr(0) {
					busy++
				}
			}
			// With two choices the busy endpoint is picked only when both
			// samples are it: (w0/W)^2 of the time (1/16, 4/25), plus a
			// 1/51 chance per mixed pair with unequal weights.
			if limit := n / 4; busy > limit {
				t.Fatalf("busy endpoint picked %d times of %d, want at most %d", busy, n, limit)
			}
			for _, e := range held {
				e.Done()
			}
			if got := held[0].Active(); got != 0 {
				t.Fatalf("Active() after Done = %d", got)
			}
			// Idle again: back to its share.
			share := 0
			for range n {
				if pickDone(t, b, 0, false, nil).Address == addr(0) {
					share++
				}
			}
			if want := n * weights[0] / (weights[0] + 3); share < want*8/10 {
				t.Fatalf("idle endpoint 0 picked %d times, want about %d", share, want)
			}
		})
	}
}

// Large choice counts follow weight/(active+1): with endpoint 0 (weight 3)
// holding 2 requests, its effective weight 1 equals endpoint 1's.
func TestLeastRequestEffectiveWeight(t *testing.T) {
	b := NewBalancer(LeastRequest)
	b.Update(snap(3, 1), Config{ChoiceCount: 64})
	var held []*Endpoint
	for len(held) < 2 {
		e, _ := b.Pick(0, false, nil)
		if e.Address == addr(0) {
			held = append(held, e)
		} else {
			e.Done()
		}
	}
	counts := map[string]int{}
	const n = 40000
	for range n {
		counts[pickDone(t, b, 0, false, nil).Address]++
	}
	checkShares(t, counts, []int{1, 1}, n, 0.08)
}

func TestStateSurvivesUpdate(t *testing.T) {
	b := NewBalancer(LeastRequest)
	b.Update(snap(1, 1, 1), Config{})
	var e0 *Endpoint
	for e0 == nil {
		e, _ := b.Pick(0, false, nil)
		if e.Address == addr(1) {
			e0 = e
		} else {
			e.Done()
		}
	}
	// Same endpoints plus one: same *Endpoint, same counter.
	b.Update(snap(1, 1, 1, 1), Config{})
	eps := b.Endpoints()
	if eps[1] != e0 || eps[1].Active() != 1 {
		t.Fatalf("endpoint 1 after Update: %p (active %d), want %p with 1 active", eps[1], eps[1].Active(), e0)
	}
	// New weight: a new Endpoint with the new weight sharing the counter.
	b.Update(snap(1, 5, 1, 1), Config{Policy: RingHash})
	eps = b.Endpoints()
	if eps[1] == e0 || eps[1].Weight != 5 || e0.Weight != 1 || eps[1].Active() != 1 {
		t.Fatalf("reweighted endpoint: %+v active %d", eps[1].Endpoint, eps[1].Active())
	}
	e0.Done()
	if eps[1].Active() != 0 {
		t.Fatalf("Done on the old Endpoint left %d active on the new one", eps[1].Active())
	}
	// Removed and re-added: fresh state.
	b.Update(snap(1), Config{})
	b.Update(snap(1, 1), Config{})
	if b.Endpoints()[1] == eps[1] {
		t.Fatal("an endpoint absent from one snapshot kept its state")
	}
}

func TestUpdateKeepsPickerWhenUnchanged(t *testing.T) {
	b := NewBalancer(RoundRobin)
	b.Update(snap(1, 2, 3), Config{Policy: Maglev})
	p := b.state.Load().p
	s := snap(1, 2, 3)
	s.Index = 99
	b.Update(s, Config{Policy: Maglev, HashPolicies: []HashPolicy{{SourceIP: true}}})
	if b.state.Load().p != p {
		t.Fatal("an unchanged snapshot rebuilt the picker")
	}
	if len(b.Config().HashPolicies) != 1 {
		t.Fatal("the new hash policies were not published")
	}
	b.Update(snap(1, 2, 4), Config{Policy: Maglev})
	if b.state.Load().p == p {
		t.Fatal("a new weight kept the picker")
	}
}

func TestDuplicateAddresses(t *testing.T) {
	s := snap(1, 1)
	s.Endpoints = append(s.Endpoints, s.Endpoints[0])
	for _, p := range allPolicies {
		b := balancer(t, p)
		b.Update(s, Config{Policy: p})
		if n := len(b.Endpoints()); n != 2 {
			t.Fatalf("%s: %d endpoints from a snapshot with a duplicate, want 2", p, n)
		}
	}
}

// Every policy avoids tried endpoints while another exists, and returns a
// tried one (rather than failing) when all were tried.
func TestPickSkipsTried(t *testing.T) {
	for _, p := range allPolicies {
		for _, weights := range [][]int{{1, 1, 1, 1, 1}, {1, 8, 1, 3, 1}} {
			t.Run(fmt.Sprintf("%s/%v", p, weights), func(t *testing.T) {
				b := balancer(t, p, weights...)
				for i := range 2000 {
					h := rand.Uint64()
					tried := []string{addr(i % 5), addr((i + 2) % 5), addr((i + 3) % 5)}
					for k := range tried {
						e := pickDone(t, b, h, true, tried[:k+1])
						for _, a := range tried[:k+1] {
							if e.Address == a {
								t.Fatalf("picked tried %s (tried %v)", a, tried[:k+1])
							}
						}
					}
				}
				all := []string{addr(0), addr(1), addr(2), addr(3), addr(4)}
				if _, err := b.Pick(1, true, all); err != nil {
					t.Fatalf("all tried: %v", err)
				}
				one := balancer(t, p, 1)
				if e := pickDone(t, one, 1, true, []string{addr(0)}); e.Address != addr(0) {
					t.Fatalf("single tried endpoint: %s", e.Address)
				}
			})
		}
	}
}

// Retries of one hash follow the same sequence everywhere.
func TestHashRetriesAreDeterministic(t *testing.T) {
	for _, p := range []Policy{RingHash, Maglev} {
		a, b := balancer(t, p, 1, 1, 1, 1, 1, 1), balancer(t, p, 1, 1, 1, 1, 1, 1)
		for range 500 {
			h := rand.Uint64()
			var tried []string
			for range 5 {
				ea, eb := pickDone(t, a, h, true, tried), pickDone(t, b, h, true, tried)
				if ea.Address != eb.Address {
					t.Fatalf("%s: hash %#x tried %v: %s and %s", p, h, tried, ea.Address, eb.Address)
				}
				tried = append(tried, ea.Address)
			}
		}
	}
}

func TestConsistentHashing(t *testing.T) {
	const n = 10
	const keys = 20000
	equal := make([]int, n)
	for i := range equal {
		equal[i] = 1
	}
	for _, p := range []Policy{RingHash, Maglev} {
		t.Run(string(p), func(t *testing.T) {
			// Two independently built balancers (two sidecars) agree.
			a, b := balancer(t, p, equal...), balancer(t, p, equal...)
			before := make([]string, keys)
			for k := range keys {
				h := xxh64(fmt.Appendf(nil, "user-%d", k), 0)
				before[k] = pickDone(t, a, h, true, nil).Address
				if again := pickDone(t, a, h, true, nil).Address; again != before[k] {
					t.Fatalf("hash %#x went to %s then %s", h, before[k], again)
				}
				if other := pickDone(t, b, h, true, nil).Address; other != before[k] {
					t.Fatalf("hash %#x: %s on one balancer, %s on another", h, before[k], other)
				}
			}
			// Remove endpoint 3: its keys move, and only about 1/N others.
			s := snap(equal...)
			s.Endpoints = append(s.Endpoints[:3], s.Endpoints[4:]...)
			a.Update(s, Config{Policy: p})
			moved, movedOther := 0, 0
			for k := range keys {
				h := xxh64(fmt.Appendf(nil, "user-%d", k), 0)
				after := pickDone(t, a, h, true, nil).Address
				if after != before[k] {
					moved++
					if before[k] != addr(3) {
						movedOther++
					}
				}
			}
			t.Logf("%s: removing 1 of %d endpoints moved %.1f%% of keys, %.2f%% from other endpoints",
				p, n, 100*float64(moved)/keys, 100*float64(movedOther)/keys)
			if limit := keys / n * 13 / 10; moved > limit {
				t.Errorf("%d of %d keys moved, want at most %d (about 1/%d)", moved, keys, limit, n)
			}
			// Adding it back restores the original mapping.
			a.Update(snap(equal...), Config{Policy: p})
			for k := range keys {
				h := xxh64(fmt.Appendf(nil, "user-%d", k), 0)
				if after := pickDone(t, a, h, true, nil).Address; after != before[k] {
					t.Fatalf("after re-adding, key %d went to %s, was %s", k, after, before[k])
				}
			}
		})
	}
}

// endpoints returns fresh Endpoints of the given weights.
func endpoints(weights ...int) []*Endpoint {
	eps := make([]*Endpoint, len(weights))
	for i, w := range weights {
		eps[i] = &Endpoint{Endpoint: discovery.Endpoint{Address: addr(i), Weight: w}, live: new(endpointState)}
	}
	return eps
}

func TestRingSize(t *testing.T) {
	tests := []struct {
		weights          []int
		min, max         int
		wantMin, wantMax int
	}{
		{[]int{1, 1, 1}, 1024, 8 << 20, 1024, 2048},
		{[]int{1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, 1024, 8 << 20, 1024, 2048},
		{[]int{1, 1}, 16, 8 << 20, 16, 32},
		{[]int{1, 1000}, 1024, 8 << 20, 2002, 2002},       // 2 points per unit of weight
		{[]int{1, 1000}, 1024, 1500, 1500, 1502},          // capped by the maximum
		{[]int{1, 100000}, 1024, 8 << 20, 100001, 100001}, // the lightest gets 1
		{[]int{1, 1 << 30}, 8 << 20, 8 << 20, 2, MaxRingEntries + 2},
	}
	for _, tt := range tests {
		r := newRing(endpoints(tt.weights...), tt.min, tt.max)
		if n := len(r.hashes); n < tt.wantMin || n > tt.wantMax {
			t.Errorf("weights %v, sizes %d..%d: ring of %d points, want %d..%d", tt.weights, tt.min, tt.max, n, tt.wantMin, tt.wantMax)
		}
		seen := map[uint32]bool{}
		for _, o := range r.owners {
			seen[o] = true
		}
		if len(seen) != len(tt.weights) {
			t.Errorf("weights %v: only %d endpoints on the ring", tt.weights, len(seen))
		}
	}
}

func TestMaglevTableShares(t *testing.T) {
	weights := []int{1, 2, 3, 10}
	m := newMaglev(endpoints(weights...), MaglevTableSize)
	counts := make([]int, len(weights))
	for _, i := range m.table {
		counts[i]++
	}
	for i, w := range weights {
		want := float64(MaglevTableSize) * float64(w) / 16
		if got := float64(counts[i]); math.Abs(got-want) > 0.01*want+1 {
			t.Errorf("endpoint %d (weight %d): %v table entries, want %.0f", i, w, got, want)
		}
	}
}

// Pick and Update race freely (run with -race); every Pick returns an
// endpoint of some published snapshot and counters stay balanced.
func TestConcurrentPickAndUpdate(t *testing.T) {
	for _, p := range allPolicies {
		t.Run(string(p), func(t *testing.T) {
			b := NewBalancer(p)
			b.Update(snap(1, 2, 3), Config{})
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var mu sync.Mutex
			var all []*Endpoint
			for range 4 {
				wg.Go(func() {
					var local []*Endpoint
					for i := 0; ; i++ {
						select {
						case <-stop:
							mu.Lock()
							all = append(all, local...)
							mu.Unlock()
							return
						default:
						}
						e, err := b.Pick(uint64(i), i%2 == 0, []string{addr(i % 4)})
						if errors.Is(err, ErrNoEndpoint) {
							continue
						}
						if err != nil {
							t.Error(err)
							return
						}
						if i%3 == 0 {
							local = append(local, e) // finish later
						} else {
							e.Done()
						}
					}
				})
			}
			for i := range 100 {
				weights := make([]int, i%6)
				for j := range weights {
					weights[j] = 1 + (i+j)%4
				}
				b.Update(snap(weights...), Config{Policy: allPolicies[i%len(allPolicies)], MinRingSize: 64})
			}
			close(stop)
			wg.Wait()
			for _, e := range all {
				e.Done()
			}
			b.Update(snap(1, 1, 1, 1, 1), Config{})
			for _, e := range b.Endpoints() {
				if e.Active() != 0 {
					t.Errorf("%s: %d active after all Done", e.Address, e.Active())
				}
			}
		})
	}
}

func TestPickDoesNotAllocate(t *testing.T) {
	for _, p := range allPolicies {
		b := balancer(t, p, 5, 3, 1, 1, 2, 8, 1, 1)
		tried := []string{addr(0), addr(5)}
		if n := testing.AllocsPerRun(1000, func() {
			e, _ := b.Pick(12345, true, tried)
			e.Done()
		}); n != 0 {
			t.Errorf("%s: Pick allocates %.0f times", p, n)
		}
	}
}

func BenchmarkBalancerPick(b *testing.B) {
	for _, p := range allPolicies {
		for _, w := range [][]int{{1, 1, 1, 1, 1, 1, 1, 1}, {5, 3, 1, 1, 2, 8, 1, 1}} {
			b.Run(fmt.Sprintf("%s/%v", p, w), func(b *testing.B) {
				bl := balancer(b, p, w...)
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					h := rand.Uint64()
					for pb.Next() {
						h += 0x9E3779B97F4A7C15
						e, err := bl.Pick(h, true, nil)
						if err != nil {
							b.Fatal(err)
						}
						e.Done()
					}
				})
			})
		}
	}
}

// A retry: one endpoint already tried.
func BenchmarkBalancerPickTried(b *testing.B) {
	for _, p := range allPolicies {
		b.Run(string(p), func(b *testing.B) {
			bl := balancer(b, p, 1, 1, 1, 1, 1, 1, 1, 1)
			tried := []string{addr(3)}
			b.ReportAllocs()
			h := uint64(0)
			for b.Loop() {
				h += 0x9E3779B97F4A7C15
				e, _ := bl.Pick(h, true, tried)
				e.Done()
			}
		})
	}
}

func BenchmarkBalancerUpdate(b *testing.B) {
	weights := make([]int, 100)
	for i := range weights {
		weights[i] = 1 + i%3
	}
	// Two snapshots differing in one weight, so that every Update builds.
	s1, s2 := snap(weights...), snap(weights...)
	s2.Endpoints[50].Weight++
	for _, p := range allPolicies {
		b.Run(string(p), func(b *testing.B) {
			bl := NewBalancer(p)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				s := s1
				if i++; i%2 == 0 {
					s = s2
				}
				bl.Update(s, Config{})
			}
		})
	}
}

package balance

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// fakeClock is a settable clock for the balancer.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// setClock makes b read c; call it before b is used.
func setClock(b *Balancer, c *fakeClock) { b.now, b.epoch = c.Now, c.Now().Add(-time.Nanosecond) }

func u32(v uint32) *uint32 { return &v }

func ones(n int) []int {
	w := make([]int, n)
	for i := range w {
		w[i] = 1
	}
	return w
}

// outlierBalancer returns a balancer over endpoints of the given weights
// with outlier detection c, on a fake clock.
func outlierBalancer(p Policy, weights []int, c OutlierConfig) (*Balancer, *fakeClock) {
	b := NewBalancer(RoundRobin)
	clk := newClock()
	setClock(b, clk)
	b.SetOutlier(c)
	b.Update(snap(weights...), Config{Policy: p, MinRingSize: 4096})
	return b, clk
}

// report ends n requests on e with outcome o, as if Pick had returned e
// for each.
func report(e *Endpoint, o Outcome, n int) {
	for range n {
		e.live.active.Add(1)
		e.DoneWith(o)
	}
}

func ejected(e *Endpoint) bool {
	_, ok := e.Ejected()
	return ok
}

func ejectedCount(b *Balancer) int {
	n := 0
	for _, e := range b.Endpoints() {
		if ejected(e) {
			n++
		}
	}
	return n
}

func TestOutcomeOf(t *testing.T) {
	tests := []struct {
		status int
		want   Outcome
	}{
		{0, LocalFailure}, {-1, LocalFailure},
		{101, Success}, {200, Success}, {304, Success}, {404, Success}, {429, Success}, {499, Success},
		{500, ServerError}, {501, ServerError}, {505, ServerError}, {599, ServerError},
		{502, GatewayError}, {503, GatewayError}, {504, GatewayError},
		{600, Success},
	}
	for _, tt := range tests {
		if got := OutcomeOf(tt.status); got != tt.want {
			t.Errorf("OutcomeOf(%d) = %d, want %d", tt.status, got, tt.want)
		}
	}
}

// Every failure outcome counts toward MaxFailures, Success resets the
// count, and Done (no outcome) leaves it alone.
func TestDoneWithCounts(t *testing.T) {
	const (
		s = Success
		x = ServerError
		g = GatewayError
		l = LocalFailure
		d = Outcome(255) // stands for Done: no outcome
	)
	tests := []struct {
		name     string
		seq      []Outcome
		failures uint32 // the count afterwards, when not ejected
		eject    bool
	}{
		{"two server errors", []Outcome{x, x}, 2, false},
		{"three server errors", []Outcome{x, x, x}, 0, true},
		{"three gateway errors", []Outcome{g, g, g}, 0, true},
		{"three local failures", []Outcome{l, l, l}, 0, true},
		{"mixed failures", []Outcome{x, g, l}, 0, true},
		{"from OutcomeOf", []Outcome{OutcomeOf(503), OutcomeOf(0), OutcomeOf(500)}, 0, true},
		{"success resets", []Outcome{x, x, s, x, x}, 2, false},
		{"success at the end", []Outcome{x, x, s}, 0, false},
		{"successes only", []Outcome{s, s, s, s}, 0, false},
		{"done says nothing", []Outcome{x, d, x, d, x}, 0, true},
		{"done does not reset", []Outcome{x, x, d}, 2, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, clk := outlierBalancer(RoundRobin, ones(10), OutlierConfig{MaxFailures: 3})
			e := b.Endpoints()[4]
			for _, o := range tt.seq {
				e.live.active.Add(1)
				if o == d {
					e.Done()
				} else {
					e.DoneWith(o)
				}
			}
			if got := ejected(e); got != tt.eject {
				t.Fatalf("ejected = %v, want %v", got, tt.eject)
			}
			if e.Active() != 0 {
				t.Fatalf("Active() = %d after every request ended", e.Active())
			}
			if !tt.eject {
				if got := e.live.failures.Load(); got != tt.failures {
					t.Fatalf("consecutive failures = %d, want %d", got, tt.failures)
				}
				if e.Ejections() != 0 {
					t.Fatalf("Ejections() = %d", e.Ejections())
				}
				return
			}
			until, _ := e.Ejected()
			if want := clk.Now().Add(30 * time.Second); !until.Equal(want) {
				t.Fatalf("ejected until %v, want %v (BaseEjectionTime 30s)", until, want)
			}
			if e.Ejections() != 1 || ejectedCount(b) != 1 {
				t.Fatalf("Ejections() = %d, %d endpoints ejected; want 1 and 1", e.Ejections(), ejectedCount(b))
			}
		})
	}
}

func TestOutlierDetectionOffByDefault(t *testing.T) {
	b := balancer(t, RoundRobin, 1, 1, 1)
	e := b.Endpoints()[0]
	report(e, ServerError, 100)
	if ejected(e) || e.Ejections() != 0 {
		t.Fatal("a balancer without SetOutlier ejected an endpoint")
	}
	// Endpoints that no Balancer made only end the request.
	for _, e := range []*Endpoint{{}, endpoints(1)[0]} {
		e.DoneWith(ServerError)
		if ejected(e) || e.Ejections() != 0 {
			t.Fatal("an endpoint without a balancer was ejected")
		}
	}
}

func TestEnforcingConsecutive5xx(t *testing.T) {
	tests := []struct {
		enforcing *uint32
		min, max  int // ejections of 400 streaks
	}{
		{u32(0), 0, 0},
		{nil, 400, 400},
		{u32(100), 400, 400},
		{u32(50), 140, 260}, // binomial(400, 1/2): 200 ± 6 sd
	}
	for _, tt := range tests {
		b, clk := outlierBalancer(RoundRobin, ones(4), OutlierConfig{
			MaxFailures: 2, EnforcingConsecutive5xx: tt.enforcing, MaxEjectionPercent: u32(100),
		})
		e := b.Endpoints()[0]
		for range 400 {
			report(e, GatewayError, 2)
			clk.Advance(time.Hour) // past any ejection
		}
		if n := e.Ejections(); n < tt.min || n > tt.max {
			t.Errorf("EnforcingConsecutive5xx %v: %d ejections of 400 streaks, want %d..%d", tt.enforcing, n, tt.min, tt.max)
		}
	}
}

// Envoy 1.22-1.25 (what Consul 1.15 runs): an ejection is allowed while
// the ejected share is below the maximum, so ceil(n*p/100) endpoints at
// most, and always one when p > 0.
func TestMaxEjectionPercent(t *testing.T) {
	tests := []struct {
		n       int
		percent *uint32
		want    int
	}{
		{10, u32(10), 1},
		{10, u32(50), 5},
		{10, u32(100), 10},
		{10, nil, 1}, // Envoy's default 10%
		{10, u32(0), 0},
		{10, u32(15), 2},
		{20, u32(25), 5},
		{3, u32(10), 1},
		{3, u32(50), 2},
		{5, nil, 1},
		{1, nil, 1},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d endpoints at %v%%", tt.n, ptrString(tt.percent)), func(t *testing.T) {
			b, _ := outlierBalancer(RoundRobin, ones(tt.n), OutlierConfig{MaxFailures: 5, MaxEjectionPercent: tt.percent})
			for _, e := range b.Endpoints() {
				report(e, ServerError, 5)
			}
			if got := ejectedCount(b); got != tt.want {
				t.Fatalf("%d endpoints ejected, want %d", got, tt.want)
			}
		})
	}
}

func ptrString(p *uint32) string {
	if p == nil {
		return "nil"
	}
	return fmt.Sprint(*p)
}

// The limit counts endpoints ejected now, of the current set.
func TestMaxEjectionPercentCountsCurrentEjections(t *testing.T) {
	b, clk := outlierBalancer(RoundRobin, ones(10), OutlierConfig{MaxFailures: 3})
	eps := b.Endpoints()
	report(eps[0], ServerError, 3)
	report(eps[1], ServerError, 3)
	if !ejected(eps[0]) || ejected(eps[1]) {
		t.Fatal("want endpoint 0 ejected and endpoint 1 refused (10% of 10)")
	}
	// The refusal restarted endpoint 1's count, as in Envoy.
	if got := eps[1].live.failures.Load(); got != 0 {
		t.Fatalf("endpoint 1 has %d consecutive failures after a refused ejection", got)
	}
	clk.Advance(30 * time.Second) // endpoint 0 is back
	report(eps[1], ServerError, 3)
	if ejected(eps[0]) || !ejected(eps[1]) {
		t.Fatal("after endpoint 0's ejection ended, endpoint 1 was not ejected")
	}
	// Removing the ejected endpoint from the set frees the slot.
	s := snap(ones(10)...)
	s.Endpoints = append(s.Endpoints[:1:1], s.Endpoints[2:]...)
	b.Update(s, Config{})
	report(eps[2], ServerError, 3)
	if !ejected(eps[2]) {
		t.Fatal("with the ejected endpoint removed from the set, endpoint 2 was not ejected")
	}
}

func TestEjectionTimeGrowsAndCaps(t *testing.T) {
	s := time.Second
	tests := []struct {
		base time.Duration
		want []time.Duration // successive ejections, each right when the last ended
	}{
		{0, []time.Duration{30 * s, 60 * s, 90 * s, 120 * s, 150 * s, 180 * s, 210 * s, 240 * s, 270 * s, 300 * s, 300 * s, 300 * s}},
		{100 * s, []time.Duration{100 * s, 200 * s, 300 * s, 300 * s, 300 * s}},
		{400 * s, []time.Duration{400 * s, 400 * s, 400 * s}}, // capped at max(base, 300s)
		{time.Millisecond, []time.Duration{time.Millisecond, 2 * time.Millisecond, 3 * time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.base.String(), func(t *testing.T) {
			b, clk := outlierBalancer(RoundRobin, ones(2), OutlierConfig{MaxFailures: 1, BaseEjectionTime: tt.base})
			var got []time.Duration
			b.OnEject(func(_ string, d time.Duration) { got = append(got, d) })
			e := b.Endpoints()[0]
			for i, want := range tt.want {
				report(e, LocalFailure, 1)
				until, ok := e.Ejected()
				if !ok || !until.Equal(clk.Now().Add(want)) {
					t.Fatalf("ejection %d: until %v (%v), want now+%v", i+1, until, ok, want)
				}
				clk.Advance(want)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("OnEject durations %v, want %v", got, tt.want)
			}
			if e.Ejections() != len(tt.want) {
				t.Fatalf("Ejections() = %d, want %d", e.Ejections(), len(tt.want))
			}
		})
	}
}

// The multiplier loses one per Interval spent back in service; Ejections
// only grows.
func TestEjectionTimeDecays(t *testing.T) {
	b, clk := outlierBalancer(RoundRobin, ones(2), OutlierConfig{MaxFailures: 1, Interval: 10 * time.Second})
	var got []time.Duration
	b.OnEject(func(_ string, d time.Duration) { got = append(got, d) })
	e := b.Endpoints()[0]
	eject := func(after time.Duration) {
		t.Helper()
		clk.Advance(after)
		report(e, ServerError, 1)
		if !ejected(e) {
			t.Fatal("not ejected")
		}
	}
	eject(0)                // 30s
	eject(30 * time.Second) // back at once: 60s
	eject(60 * time.Second) // 90s; the multiplier is 3
	eject(90*time.Second + 25*time.Second)
	// 2 whole intervals back: 3-2+1 = 2, 60s.
	eject(60*time.Second + 9*time.Second)
	// Less than an interval: 2+1 = 3, 90s.
	eject(90*time.Second + time.Hour)
	// Long healthy: back to the first ejection's 30s.
	want := []time.Duration{30, 60, 90, 60, 90, 30}
	for i := range want {
		want[i] *= time.Second
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ejection times %v, want %v", got, want)
	}
	if e.Ejections() != 6 {
		t.Fatalf("Ejections() = %d, want 6", e.Ejections())
	}
}

// An ejection ends at its deadline, without a sweep: the endpoint is
// picked again and its count starts afresh; failures while ejected are
// not counted.
func TestEjectionEndsLazily(t *testing.T) {
	b, clk := outlierBalancer(RoundRobin, ones(2), OutlierConfig{MaxFailures: 3})
	e := b.Endpoints()[0]
	report(e, ServerError, 3)
	report(e, ServerError, 10) // in flight when it was ejected
	if e.Ejections() != 1 {
		t.Fatalf("Ejections() = %d: failures while ejected were counted", e.Ejections())
	}
	for range 10 {
		if pickDone(t, b, 0, false, nil) == e {
			t.Fatal("picked the ejected endpoint")
		}
	}
	clk.Advance(30*time.Second - 1)
	if !ejected(e) || pickDone(t, b, 0, false, nil) == e || pickDone(t, b, 0, false, nil) == e {
		t.Fatal("back a nanosecond early")
	}
	clk.Advance(1)
	if ejected(e) {
		t.Fatal("still ejected at its deadline")
	}
	picked := 0
	for range 10 {
		if pickDone(t, b, 0, false, nil) == e {
			picked++
		}
	}
	if picked != 5 {
		t.Fatalf("picked the returned endpoint %d times of 10, want 5", picked)
	}
	if e.live.until.Load() != 0 {
		t.Fatal("Pick left the expired deadline set")
	}
	report(e, GatewayError, 2)
	if ejected(e) {
		t.Fatal("re-ejected below MaxFailures: the count did not restart")
	}
	report(e, GatewayError, 1)
	if until, ok := e.Ejected(); !ok || !until.Equal(clk.Now().Add(60*time.Second)) {
		t.Fatalf("second ejection until %v (%v), want 60s", until, ok)
	}
}

// A failure is the first to notice the end of an ejection when nothing
// picked the endpoint since.
func TestEjectionEndNoticedByDoneWith(t *testing.T) {
	b, clk := outlierBalancer(RoundRobin, ones(2), OutlierConfig{MaxFailures: 2})
	e := b.Endpoints()[0]
	report(e, ServerError, 2)
	e.live.active.Add(1) // in flight across the end of the ejection
	clk.Advance(time.Minute)
	e.live.failures.Store(1) // as if counted during the ejection
	e.DoneWith(ServerError)
	if ejected(e) || e.live.until.Load() != 0 || e.live.failures.Load() != 1 {
		t.Fatalf("after the ejection: ejected %v, deadline %d, failures %d; want back, cleared, 1",
			ejected(e), e.live.until.Load(), e.live.failures.Load())
	}
}

// Every policy avoids ejected endpoints (and tried ones) while another
// exists; round robin and random keep the others' weighted shares.
func TestPickAvoidsEjected(t *testing.T) {
	for _, p := range allPolicies {
		for _, weights := range [][]int{{1, 1, 1, 1, 1}, {1, 8, 1, 3, 1}} {
			t.Run(fmt.Sprintf("%s/%v", p, weights), func(t *testing.T) {
				b, _ := outlierBalancer(p, weights, OutlierConfig{MaxFailures: 1, MaxEjectionPercent: u32(100)})
				eps := b.Endpoints()
				report(eps[1], ServerError, 1)
				report(eps[3], ServerError, 1)
				if ejectedCount(b) != 2 {
					t.Fatal("want endpoints 1 and 3 ejected")
				}
				for i := range 3000 {
					tried := []string{addr(i % 5)}
					e := pickDone(t, b, rand.Uint64(), i%2 == 0, tried)
					if e == eps[1] || e == eps[3] || (e.Address == tried[0] && i%5 != 1 && i%5 != 3) {
						t.Fatalf("picked %s (ejected 1 and 3, tried %v)", e.Address, tried)
					}
				}
				counts := map[string]int{}
				const n = 9000
				for i := range n {
					e := pickDone(t, b, rand.Uint64(), i%2 == 0, nil)
					if e == eps[1] || e == eps[3] {
						t.Fatalf("picked ejected %s", e.Address)
					}
					counts[e.Address]++
				}
				if p == RoundRobin || p == Random || p == LeastRequest {
					left := []int{weights[0], 0, weights[2], 0, weights[4]}
					checkShares(t, counts, left, n, 0.08)
				}
			})
		}
	}
}

// Random keeps exact shares even when the endpoints left hold a small
// part of the schedule (the weighted fallback).
func TestRandomSharesWithHeavyEjections(t *testing.T) {
	weights := []int{1, 40, 2, 40, 40}
	b, _ := outlierBalancer(Random, weights, OutlierConfig{MaxFailures: 1, MaxEjectionPercent: u32(100)})
	for _, i := range []int{1, 3, 4} {
		report(b.Endpoints()[i], ServerError, 1)
	}
	counts := map[string]int{}
	const n = 30000
	for range n {
		counts[pickDone(t, b, 0, false, nil).Address]++
	}
	checkShares(t, counts, []int{1, 0, 2, 0, 0}, n, 0.05)
}

// Round robin gives an ejected endpoint's turns to the others exactly.
func TestRoundRobinSpreadsEjectedShare(t *testing.T) {
	b, _ := outlierBalancer(RoundRobin, ones(4), OutlierConfig{MaxFailures: 1})
	report(b.Endpoints()[2], LocalFailure, 1)
	counts := map[string]int{}
	for range 300 {
		counts[pickDone(t, b, 0, false, nil).Address]++
	}
	if counts[addr(0)] != 100 || counts[addr(1)] != 100 || counts[addr(3)] != 100 {
		t.Fatalf("counts %v, want 100 each for the 3 endpoints left", counts)
	}
}

// A key of an ejected endpoint moves, on every sidecar alike, only while
// the endpoint is ejected; other keys stay.
func TestHashKeyMovesOnlyWhileEjected(t *testing.T) {
	const keys = 5000
	for _, p := range []Policy{RingHash, Maglev} {
		t.Run(string(p), func(t *testing.T) {
			cfg := OutlierConfig{MaxFailures: 1}
			a, clk := outlierBalancer(p, ones(10), cfg)
			other, _ := outlierBalancer(p, ones(10), cfg)
			h := func(k int) uint64 { return xxh64(fmt.Appendf(nil, "user-%d", k), 0) }
			before := make([]string, keys)
			for k := range keys {
				before[k] = pickDone(t, a, h(k), true, nil).Address
			}
			report(a.Endpoints()[3], ServerError, 1)
			report(other.Endpoints()[3], ServerError, 1)
			moved := 0
			for k := range keys {
				got := pickDone(t, a, h(k), true, nil).Address
				switch {
				case before[k] == addr(3) && got == addr(3):
					t.Fatalf("key %d stayed on the ejected endpoint", k)
				case before[k] != addr(3) && got != before[k]:
					t.Fatalf("key %d of %s moved to %s", k, before[k], got)
				case got != before[k]:
					moved++
				}
				if o := pickDone(t, other, h(k), true, nil).Address; o != got {
					t.Fatalf("key %d: %s on one sidecar, %s on another", k, got, o)
				}
			}
			if moved == 0 {
				t.Fatal("no key was on endpoint 3")
			}
			clk.Advance(30 * time.Second)
			for k := range keys {
				if got := pickDone(t, a, h(k), true, nil).Address; got != before[k] {
					t.Fatalf("after the ejection, key %d went to %s, was %s", k, got, before[k])
				}
			}
		})
	}
}

// With every endpoint ejected or tried, Pick ignores ejections rather than
// failing.
func TestPickWhenAllEjected(t *testing.T) {
	for _, p := range allPolicies {
		t.Run(string(p), func(t *testing.T) {
			b, _ := outlierBalancer(p, []int{1, 2, 3}, OutlierConfig{MaxFailures: 1, MaxEjectionPercent: u32(100)})
			eps := b.Endpoints()
			for _, e := range eps {
				report(e, ServerError, 1)
			}
			if ejectedCount(b) != 3 {
				t.Fatal("want all 3 ejected")
			}
			seen := map[string]bool{}
			for range 300 {
				seen[pickDone(t, b, rand.Uint64(), true, nil).Address] = true
			}
			if len(seen) != 3 {
				t.Errorf("all ejected: picked %d distinct endpoints, want the policy's usual 3", len(seen))
			}
			// Tried still counts: the one untried endpoint.
			for range 50 {
				if e := pickDone(t, b, rand.Uint64(), true, []string{addr(0), addr(2)}); e != eps[1] {
					t.Fatalf("all ejected, 0 and 2 tried: picked %s", e.Address)
				}
			}
			// Everything tried and ejected: still an endpoint.
			if _, err := b.Pick(1, true, []string{addr(0), addr(1), addr(2)}); err != nil {
				t.Fatal(err)
			}
		})
	}
	// Some ejected, the rest tried: an ejected untried one.
	b, _ := outlierBalancer(RoundRobin, ones(3), OutlierConfig{MaxFailures: 1, MaxEjectionPercent: u32(100)})
	report(b.Endpoints()[0], ServerError, 1)
	report(b.Endpoints()[1], ServerError, 1)
	for range 20 {
		if e := pickDone(t, b, 0, false, []string{addr(2)}); e.Address == addr(2) {
			t.Fatal("picked the tried endpoint over ejected untried ones")
		}
	}
}

func TestOutlierStateSurvivesUpdate(t *testing.T) {
	b, _ := outlierBalancer(LeastRequest, ones(3), OutlierConfig{MaxFailures: 3, MaxEjectionPercent: u32(100)})
	e1, e2 := b.Endpoints()[1], b.Endpoints()[2]
	report(e1, ServerError, 3)
	report(e2, ServerError, 2)
	until, _ := e1.Ejected()
	// An endpoint added: same *Endpoint, still ejected.
	b.Update(snap(1, 1, 1, 1), Config{})
	if b.Endpoints()[1] != e1 || !ejected(e1) {
		t.Fatal("adding an endpoint lost the ejection")
	}
	// New weights: new Endpoints sharing the state.
	b.Update(snap(1, 5, 5, 1), Config{Policy: Maglev})
	n1, n2 := b.Endpoints()[1], b.Endpoints()[2]
	if n1 == e1 || n1.Weight != 5 {
		t.Fatal("want a new Endpoint for the new weight")
	}
	if got, ok := n1.Ejected(); !ok || !got.Equal(until) || n1.Ejections() != 1 {
		t.Fatalf("reweighted endpoint: ejected until %v (%v), %d ejections; want %v, 1", got, ok, n1.Ejections(), until)
	}
	report(n2, ServerError, 1) // the third in a row, across two updates
	if !ejected(n2) {
		t.Fatal("the consecutive failures did not carry over the updates")
	}
	for range 100 {
		if e := pickDone(t, b, rand.Uint64(), true, nil); e == n1 || e == n2 {
			t.Fatalf("picked ejected %s after the updates", e.Address)
		}
	}
	// Removed and re-added: fresh state.
	b.Update(snap(1), Config{})
	b.Update(snap(1, 1), Config{})
	if e := b.Endpoints()[1]; ejected(e) || e.Ejections() != 0 {
		t.Fatal("an endpoint absent from one snapshot kept its ejection")
	}
}

func TestSetOutlier(t *testing.T) {
	cfg := OutlierConfig{MaxFailures: 3}
	b, clk := outlierBalancer(RoundRobin, ones(4), cfg)
	var calls atomic.Int32
	b.OnEject(func(string, time.Duration) { calls.Add(1) })
	e, f := b.Endpoints()[0], b.Endpoints()[1]

	// The same settings again: counts kept.
	report(f, ServerError, 2)
	b.SetOutlier(cfg)
	report(f, ServerError, 1)
	if !ejected(f) {
		t.Fatal("an unchanged SetOutlier reset the count")
	}
	clk.Advance(time.Hour)

	// A new MaxFailures restarts the counts.
	report(e, ServerError, 2)
	b.SetOutlier(OutlierConfig{MaxFailures: 2})
	report(e, ServerError, 1)
	if ejected(e) {
		t.Fatal("failures counted before the change of MaxFailures ejected")
	}
	report(e, ServerError, 1)
	if !ejected(e) {
		t.Fatal("not ejected at the new MaxFailures")
	}

	// Off: everyone back, failures ignored.
	b.SetOutlier(OutlierConfig{})
	if ejectedCount(b) != 0 {
		t.Fatal("turning detection off left endpoints ejected")
	}
	picked := false
	for range 8 {
		picked = picked || pickDone(t, b, 0, false, nil) == e
	}
	if !picked {
		t.Fatal("the endpoint un-ejected by SetOutlier was not picked")
	}
	report(e, ServerError, 10)
	if ejected(e) {
		t.Fatal("ejected with detection off")
	}

	// On again: the multiplier was reset, Ejections was not.
	b.SetOutlier(OutlierConfig{MaxFailures: 2, BaseEjectionTime: 10 * time.Second})
	report(e, ServerError, 2)
	if until, ok := e.Ejected(); !ok || !until.Equal(clk.Now().Add(10*time.Second)) {
		t.Fatalf("after off and on: ejected until %v (%v), want a first ejection's 10s", until, ok)
	}
	if e.Ejections() != 2 || calls.Load() != 3 {
		t.Fatalf("Ejections() = %d, OnEject calls %d; want 2 and 3", e.Ejections(), calls.Load())
	}
}

func TestOutlierParams(t *testing.T) {
	s := time.Second
	tests := []struct {
		in   OutlierConfig
		want outlierParams
	}{
		{OutlierConfig{}, outlierParams{}},
		{OutlierConfig{Interval: s, MaxEjectionPercent: u32(50)}, outlierParams{}}, // off
		{OutlierConfig{MaxFailures: 5}, outlierParams{5, 100, 10, 10 * s, 30 * s, 300 * s}},
		{
			OutlierConfig{MaxFailures: 3, Interval: s, EnforcingConsecutive5xx: u32(0), MaxEjectionPercent: u32(100), BaseEjectionTime: 400 * s},
			outlierParams{3, 0, 100, s, 400 * s, 400 * s},
		},
		{
			OutlierConfig{MaxFailures: 1, Interval: -s, EnforcingConsecutive5xx: u32(500), MaxEjectionPercent: u32(101), BaseEjectionTime: -s},
			outlierParams{1, 100, 100, 10 * s, 30 * s, 300 * s},
		},
		{
			OutlierConfig{MaxFailures: 1, Interval: math.MaxInt64, BaseEjectionTime: math.MaxInt64},
			outlierParams{1, 100, 10, maxOutlierDuration, maxOutlierDuration, maxOutlierDuration},
		},
	}
	for _, tt := range tests {
		if got := tt.in.params(); got != tt.want {
			t.Errorf("%+v.params() = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

// OnEject is called once per ejection however many goroutines report the
// failures that cause it.
func TestOnEjectOncePerEjection(t *testing.T) {
	b, clk := outlierBalancer(LeastRequest, ones(5), OutlierConfig{MaxFailures: 5})
	var (
		mu    sync.Mutex
		calls []string
	)
	b.OnEject(func(a string, d time.Duration) {
		mu.Lock()
		calls = append(calls, fmt.Sprint(a, " ", d))
		mu.Unlock()
	})
	e := b.Endpoints()[2]
	for round := range 2 {
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() { report(e, ServerError, 100) })
		}
		wg.Wait()
		if e.Ejections() != round+1 {
			t.Fatalf("round %d: %d ejections", round, e.Ejections())
		}
		clk.Advance(time.Duration(round+1) * 30 * time.Second)
	}
	want := []string{addr(2) + " 30s", addr(2) + " 1m0s"}
	if !reflect.DeepEqual(calls, want) {
		t.Fatalf("OnEject calls %q, want %q", calls, want)
	}
}

// Pick, DoneWith, Update, SetOutlier and the clock race freely (run with
// -race); counters stay balanced.
func TestOutlierConcurrent(t *testing.T) {
	for _, p := range allPolicies {
		t.Run(string(p), func(t *testing.T) {
			b, clk := outlierBalancer(p, []int{1, 2, 3, 1, 1, 2}, OutlierConfig{MaxFailures: 2, MaxEjectionPercent: u32(50), BaseEjectionTime: time.Millisecond})
			var ejections atomic.Int64
			b.OnEject(func(string, time.Duration) { ejections.Add(1) })
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for g := range 4 {
				wg.Go(func() {
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						e, err := b.Pick(uint64(i), i%2 == 0, []string{addr(i % 6)})
						if err != nil {
							continue
						}
						switch {
						case (i+g)%7 == 0:
							e.Done()
						case e.Address == addr(g%3) || i%3 == 0:
							e.DoneWith(Outcome(1 + i%3))
						default:
							e.DoneWith(Success)
						}
						_, _ = e.Ejected()
						_ = e.Ejections()
					}
				})
			}
			for i := range 200 {
				clk.Advance(time.Millisecond / 2)
				if i%10 == 0 {
					b.SetOutlier(OutlierConfig{MaxFailures: uint32(i % 3), BaseEjectionTime: time.Millisecond})
				}
				if i%25 == 0 {
					b.Update(snap(ones(3+i%4)...), Config{Policy: p, MinRingSize: 64})
				}
			}
			close(stop)
			wg.Wait()
			for _, e := range b.Endpoints() {
				if e.Active() != 0 {
					t.Errorf("%s: %d active after all Done", e.Address, e.Active())
				}
			}
			t.Logf("%d ejections", ejections.Load())
		})
	}
}

func TestPickDoesNotAllocateWithEjections(t *testing.T) {
	for _, p := range allPolicies {
		b, _ := outlierBalancer(p, []int{5, 3, 1, 1, 2, 8, 1, 1}, OutlierConfig{MaxFailures: 1, MaxEjectionPercent: u32(50)})
		report(b.Endpoints()[5], ServerError, 1)
		report(b.Endpoints()[1], ServerError, 1)
		tried := []string{addr(0), addr(3)}
		if n := testing.AllocsPerRun(1000, func() {
			e, _ := b.Pick(12345, true, tried)
			e.DoneWith(Success)
		}); n != 0 {
			t.Errorf("%s: Pick with ejected endpoints allocates %.0f times", p, n)
		}
	}
	b, _ := outlierBalancer(RoundRobin, ones(4), OutlierConfig{MaxFailures: 1 << 30})
	e := b.Endpoints()[0]
	for _, o := range []Outcome{Success, ServerError, GatewayError, LocalFailure} {
		if n := testing.AllocsPerRun(1000, func() { report(e, o, 1) }); n != 0 {
			t.Errorf("DoneWith(%d) allocates %.0f times", o, n)
		}
	}
}

// decodeJSON decodes s as encoding/json does for a Consul agent response.
func decodeJSON(t testing.TB, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestFromConsulPassiveHealthCheck(t *testing.T) {
	s := time.Second
	tests := []struct {
		name string
		in   any
		want OutlierConfig
	}{
		{"nil", nil, OutlierConfig{}},
		{"empty", decodeJSON(t, `{}`), OutlierConfig{}},
		{
			"as the agent merges it",
			decodeJSON(t, `{"Interval": 10000000000, "MaxFailures": 3, "EnforcingConsecutive5xx": 100, "MaxEjectionPercent": 50, "BaseEjectionTime": 30000000000}`),
			OutlierConfig{Interval: 10 * s, MaxFailures: 3, EnforcingConsecutive5xx: u32(100), MaxEjectionPercent: u32(50), BaseEjectionTime: 30 * s},
		},
		{
			"duration strings",
			decodeJSON(t, `{"Interval": "1m30s", "MaxFailures": 5, "BaseEjectionTime": "45s"}`),
			OutlierConfig{Interval: 90 * s, MaxFailures: 5, BaseEjectionTime: 45 * s},
		},
		{"max failures only", decodeJSON(t, `{"MaxFailures": 7}`), OutlierConfig{MaxFailures: 7}},
		{
			"zero percentages are set",
			decodeJSON(t, `{"MaxFailures": 2, "EnforcingConsecutive5xx": 0, "MaxEjectionPercent": 0}`),
			OutlierConfig{MaxFailures: 2, EnforcingConsecutive5xx: u32(0), MaxEjectionPercent: u32(0)},
		},
		{
			"snake case, as in a proxy registration",
			decodeJSON(t, `{"interval": "5s", "max_failures": 4, "enforcing_consecutive_5xx": 80, "max_ejection_percent": 30, "base_ejection_time": "1m"}`),
			OutlierConfig{Interval: 5 * s, MaxFailures: 4, EnforcingConsecutive5xx: u32(80), MaxEjectionPercent: u32(30), BaseEjectionTime: time.Minute},
		},
		{"keys match case-insensitively", decodeJSON(t, `{"maxfailures": 2, "INTERVAL": "2s"}`), OutlierConfig{MaxFailures: 2, Interval: 2 * s}},
		{"nulls are unset", decodeJSON(t, `{"MaxFailures": 3, "MaxEjectionPercent": null, "Interval": null}`), OutlierConfig{MaxFailures: 3}},
		{"unknown keys are ignored", decodeJSON(t, `{"MaxFailures": 3, "Consecutive5xx": "x", "Bogus": true}`), OutlierConfig{MaxFailures: 3}},
		{"count as a string", decodeJSON(t, `{"MaxFailures": "3"}`), OutlierConfig{MaxFailures: 3}},
		{"zero durations", decodeJSON(t, `{"MaxFailures": 1, "Interval": 0, "BaseEjectionTime": "0s"}`), OutlierConfig{MaxFailures: 1}},
		{
			"Go values (an HCL-decoded registration)",
			map[string]any{"Interval": 2 * time.Second, "MaxFailures": 3, "MaxEjectionPercent": uint8(20), "BaseEjectionTime": int64(5e9)},
			OutlierConfig{Interval: 2 * s, MaxFailures: 3, MaxEjectionPercent: u32(20), BaseEjectionTime: 5 * s},
		},
		{
			"json.Number",
			map[string]any{"Interval": json.Number("1000000000"), "MaxFailures": json.Number("3"), "EnforcingConsecutive5xx": json.Number("1e2")},
			OutlierConfig{Interval: s, MaxFailures: 3, EnforcingConsecutive5xx: u32(100)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FromConsulPassiveHealthCheck(tt.in)
			if err != nil {
				t.Fatalf("FromConsulPassiveHealthCheck: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got\n%s\nwant\n%s", outlierString(got), outlierString(tt.want))
			}
		})
	}
}

func outlierString(c OutlierConfig) string {
	return fmt.Sprintf("{Interval:%v MaxFailures:%d EnforcingConsecutive5xx:%s MaxEjectionPercent:%s BaseEjectionTime:%v}",
		c.Interval, c.MaxFailures, ptrString(c.EnforcingConsecutive5xx), ptrString(c.MaxEjectionPercent), c.BaseEjectionTime)
}

// What the agent merges is the JSON encoding of Consul's struct.
func TestFromConsulPassiveHealthCheckStruct(t *testing.T) {
	base := 20 * time.Second
	in := api.PassiveHealthCheck{Interval: 3 * time.Second, MaxFailures: 4, EnforcingConsecutive5xx: u32(90), MaxEjectionPercent: u32(40), BaseEjectionTime: &base}
	data, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	got, err := FromConsulPassiveHealthCheck(decodeJSON(t, string(data)))
	if err != nil {
		t.Fatalf("%s: %v", data, err)
	}
	want := OutlierConfig{Interval: 3 * time.Second, MaxFailures: 4, EnforcingConsecutive5xx: u32(90), MaxEjectionPercent: u32(40), BaseEjectionTime: base}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\ngot  %s\nwant %s", data, outlierString(got), outlierString(want))
	}
}

func TestFromConsulPassiveHealthCheckErrors(t *testing.T) {
	tests := []struct {
		name  string
		in    any
		field string
		msg   string // the whole message, when set
	}{
		{"not an object", "10s", "PassiveHealthCheck", "balance: PassiveHealthCheck: want an object, got a string"},
		{"an array", decodeJSON(t, `[1]`), "PassiveHealthCheck", ""},
		{"negative interval", decodeJSON(t, `{"Interval": -1}`), "PassiveHealthCheck.Interval", "balance: PassiveHealthCheck.Interval: negative (-1ns)"},
		{"negative interval string", decodeJSON(t, `{"Interval": "-5s"}`), "PassiveHealthCheck.Interval", "balance: PassiveHealthCheck.Interval: negative (-5s)"},
		{"interval without unit", decodeJSON(t, `{"Interval": "10"}`), "PassiveHealthCheck.Interval",
			`balance: PassiveHealthCheck.Interval: "10" is not a duration (want nanoseconds, or a duration such as "10s")`},
		{"interval bool", decodeJSON(t, `{"Interval": true}`), "PassiveHealthCheck.Interval",
			`balance: PassiveHealthCheck.Interval: want nanoseconds or a duration such as "10s", got a boolean`},
		{"fractional nanoseconds", decodeJSON(t, `{"Interval": 1.5}`), "PassiveHealthCheck.Interval", "balance: PassiveHealthCheck.Interval: 1.5 is not a whole number"},
		{"huge interval", decodeJSON(t, `{"Interval": 1e30}`), "PassiveHealthCheck.Interval", ""},
		{"infinite interval", map[string]any{"Interval": math.Inf(1)}, "PassiveHealthCheck.Interval", ""},
		{"negative max failures", decodeJSON(t, `{"MaxFailures": -1}`), "PassiveHealthCheck.MaxFailures", "balance: PassiveHealthCheck.MaxFailures: negative (-1)"},
		{"max failures word", decodeJSON(t, `{"MaxFailures": "three"}`), "PassiveHealthCheck.MaxFailures",
			`balance: PassiveHealthCheck.MaxFailures: want a whole number, got the string "three"`},
		{"fractional max failures", decodeJSON(t, `{"MaxFailures": 2.5}`), "PassiveHealthCheck.MaxFailures", ""},
		{"max failures above uint32", decodeJSON(t, `{"MaxFailures": 4294967296}`), "PassiveHealthCheck.MaxFailures",
			"balance: PassiveHealthCheck.MaxFailures: 4294967296 is above the limit 4294967295"},
		{"max failures object", decodeJSON(t, `{"MaxFailures": {}}`), "PassiveHealthCheck.MaxFailures",
			"balance: PassiveHealthCheck.MaxFailures: want a whole number, got an object"},
		{"max failures huge uint", map[string]any{"MaxFailures": uint64(math.MaxUint64)}, "PassiveHealthCheck.MaxFailures", ""},
		{"enforcing above 100", decodeJSON(t, `{"EnforcingConsecutive5xx": 101}`), "PassiveHealthCheck.EnforcingConsecutive5xx",
			"balance: PassiveHealthCheck.EnforcingConsecutive5xx: 101 is above 100 (a percentage)"},
		{"negative enforcing", decodeJSON(t, `{"EnforcingConsecutive5xx": -5}`), "PassiveHealthCheck.EnforcingConsecutive5xx", ""},
		{"percent above 100", decodeJSON(t, `{"MaxFailures": 3, "MaxEjectionPercent": 150}`), "PassiveHealthCheck.MaxEjectionPercent",
			"balance: PassiveHealthCheck.MaxEjectionPercent: 150 is above 100 (a percentage)"},
		{"percent array", decodeJSON(t, `{"MaxEjectionPercent": [50]}`), "PassiveHealthCheck.MaxEjectionPercent",
			"balance: PassiveHealthCheck.MaxEjectionPercent: want a whole number, got an array"},
		{"negative base ejection time", decodeJSON(t, `{"BaseEjectionTime": -30000000000}`), "PassiveHealthCheck.BaseEjectionTime",
			"balance: PassiveHealthCheck.BaseEjectionTime: negative (-30s)"},
		{"base ejection time bool", decodeJSON(t, `{"base_ejection_time": false}`), "PassiveHealthCheck.BaseEjectionTime", ""},
		{"set twice", decodeJSON(t, `{"MaxFailures": 3, "max_failures": 4}`), "PassiveHealthCheck.MaxFailures",
			`balance: PassiveHealthCheck.MaxFailures: set more than once, as ["MaxFailures" "max_failures"]`},
		{"first bad field in order", decodeJSON(t, `{"BaseEjectionTime": -1, "MaxFailures": -1, "Interval": "x"}`), "PassiveHealthCheck.Interval", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FromConsulPassiveHealthCheck(tt.in)
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error = %v (config %s), want a *ConfigError", err, outlierString(got))
			}
			if ce.Field != tt.field {
				t.Errorf("error field = %q, want %q (%v)", ce.Field, tt.field, err)
			}
			if tt.msg != "" && err.Error() != tt.msg {
				t.Errorf("error =\n%s\nwant\n%s", err, tt.msg)
			}
			if !reflect.DeepEqual(got, OutlierConfig{}) {
				t.Errorf("a config with the error: %s", outlierString(got))
			}
		})
	}
}

// FuzzFromConsulPassiveHealthCheck checks that the parser never panics,
// that its errors name a PassiveHealthCheck field, and that what it
// accepts is within Consul's limits and usable by SetOutlier.
func FuzzFromConsulPassiveHealthCheck(f *testing.F) {
	f.Add([]byte(`{"Interval": 10000000000, "MaxFailures": 3, "EnforcingConsecutive5xx": 100, "MaxEjectionPercent": 50, "BaseEjectionTime": 30000000000}`))
	f.Add([]byte(`{"interval": "1m", "max_failures": "2", "base_ejection_time": "0s"}`))
	f.Add([]byte(`{"MaxFailures": 1e3, "MaxEjectionPercent": 100.0, "Interval": -0}`))
	f.Add([]byte(`{"MaxFailures": [], "Interval": {"a": 1}}`))
	f.Add([]byte(`"10s"`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var v any
		if json.Unmarshal(data, &v) != nil {
			return
		}
		c, err := FromConsulPassiveHealthCheck(v)
		if err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) || !strings.HasPrefix(ce.Field, "PassiveHealthCheck") {
				t.Fatalf("error %v does not name a PassiveHealthCheck field", err)
			}
			return
		}
		if c.Interval < 0 || c.BaseEjectionTime < 0 ||
			(c.EnforcingConsecutive5xx != nil && *c.EnforcingConsecutive5xx > 100) ||
			(c.MaxEjectionPercent != nil && *c.MaxEjectionPercent > 100) {
			t.Fatalf("accepted out-of-range %s", outlierString(c))
		}
		b := NewBalancer(RoundRobin)
		b.SetOutlier(c)
		b.Update(snap(1, 1), Config{})
		e, _ := b.Pick(0, false, nil)
		e.DoneWith(ServerError)
	})
}

// Pick's cost with outlier detection off, on with nobody ejected (the
// common case, which must cost the same), and on with one of eight
// endpoints ejected.
func BenchmarkPickWithOutlier(b *testing.B) {
	for _, p := range allPolicies {
		for _, mode := range []string{"off", "on", "one-ejected"} {
			b.Run(string(p)+"/"+mode, func(b *testing.B) {
				cfg := OutlierConfig{MaxFailures: 5}
				if mode == "off" {
					cfg = OutlierConfig{}
				}
				bl := NewBalancer(p)
				bl.SetOutlier(cfg)
				bl.Update(snap(ones(8)...), Config{})
				if mode == "one-ejected" {
					bl.SetOutlier(OutlierConfig{MaxFailures: 1, BaseEjectionTime: time.Hour})
					report(bl.Endpoints()[3], ServerError, 1)
					if !ejected(bl.Endpoints()[3]) {
						b.Fatal("not ejected")
					}
				}
				b.ReportAllocs()
				h := uint64(0)
				for b.Loop() {
					h += 0x9E3779B97F4A7C15
					e, _ := bl.Pick(h, true, nil)
					e.Done()
				}
			})
		}
	}
}

// DoneWith's cost against Done's.
func BenchmarkDoneWith(b *testing.B) {
	bl := NewBalancer(RoundRobin)
	bl.SetOutlier(OutlierConfig{MaxFailures: 1 << 30})
	bl.Update(snap(1), Config{})
	e := bl.Endpoints()[0]
	for _, tc := range []struct {
		name string
		done func()
	}{
		{"Done", e.Done},
		{"Success", func() { e.DoneWith(Success) }},
		{"ServerError", func() { e.DoneWith(ServerError) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				e.live.active.Add(1)
				tc.done()
			}
		})
	}
}

// Report counts an outcome while the request is still active (the status
// of a response head whose body is being relayed): the endpoint is
// ejected before Done, the next Pick avoids it, and Done then only ends
// the request.
func TestReportBeforeDone(t *testing.T) {
	b, _ := outlierBalancer(RoundRobin, ones(2), OutlierConfig{MaxFailures: 2, MaxEjectionPercent: u32(50)})
	var bad *Endpoint
	for range 2 {
		e, err := b.Pick(0, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		if bad == nil {
			bad = e
		}
		if e != bad {
			e.Done()
			if e, err = b.Pick(0, false, nil); err != nil || e != bad {
				t.Fatalf("round robin did not come back to %s", bad.Address)
			}
		}
		e.Report(GatewayError) // head arrived; the body is still coming
	}
	if !ejected(bad) {
		t.Fatal("two reported gateway errors did not eject the endpoint while its requests were active")
	}
	if got := bad.Active(); got != 2 {
		t.Fatalf("Report ended requests: %d active, want 2", got)
	}
	for range 4 {
		e, err := b.Pick(0, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		if e == bad {
			t.Fatal("an endpoint ejected by Report was picked")
		}
		e.Done()
	}
	bad.Done()
	bad.Done()
	if got := bad.Active(); got != 0 {
		t.Fatalf("%d active after Done, want 0", got)
	}
	if got := bad.Ejections(); got != 1 {
		t.Fatalf("%d ejections, want 1 (Done must not count again)", got)
	}
}

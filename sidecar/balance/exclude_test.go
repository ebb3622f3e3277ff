package balance

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
)

// excludedBalancer is a balancer over five endpoints of the given weights
// with the endpoints at indexes out excluded.
func excludedBalancer(p Policy, weights []int, c OutlierConfig, out ...int) (*Balancer, map[string]bool) {
	b, _ := outlierBalancer(p, weights, c)
	ex := map[string]bool{}
	for _, i := range out {
		ex[addr(i)] = true
	}
	b.UpdateExcluding(snap(weights...), Config{Policy: p, MinRingSize: 4096}, ex)
	return b, ex
}

// TestExcludedNeverPicked: an excluded endpoint is not picked by any
// policy, also when every other endpoint is tried or ejected (the
// fallbacks that ignore ejections and tries still avoid exclusions), and
// when every endpoint is excluded Pick returns ErrNoEndpoint.
func TestExcludedNeverPicked(t *testing.T) {
	for _, p := range allPolicies {
		for _, weights := range [][]int{{1, 1, 1, 1, 1}, {1, 8, 1, 3, 1}} {
			t.Run(fmt.Sprintf("%s/%v", p, weights), func(t *testing.T) {
				b, ex := excludedBalancer(p, weights, OutlierConfig{MaxFailures: 1, MaxEjectionPercent: u32(100)}, 1, 3)
				counts := map[string]int{}
				for range 3000 {
					e := pickDone(t, b, rand.Uint64(), true, nil)
					if ex[e.Address] {
						t.Fatalf("picked excluded %s", e.Address)
					}
					counts[e.Address]++
				}
				if len(counts) != 3 {
					t.Fatalf("picked %v, want the three endpoints not excluded", counts)
				}
				// Every endpoint left tried: a retry goes back to one of
				// them, not to an excluded one.
				for range 200 {
					if e := pickDone(t, b, rand.Uint64(), true, []string{addr(0), addr(2), addr(4)}); ex[e.Address] {
						t.Fatalf("all others tried: picked excluded %s", e.Address)
					}
				}
				// Every endpoint left ejected: ejections are ignored, not
				// exclusions.
				for _, e := range b.Endpoints() {
					if !ex[e.Address] {
						report(e, LocalFailure, 1)
					}
				}
				if ejectedCount(b) != 3 {
					t.Fatalf("%d ejected, want 3", ejectedCount(b))
				}
				for range 200 {
					if e := pickDone(t, b, rand.Uint64(), true, nil); ex[e.Address] {
						t.Fatalf("all others ejected: picked excluded %s", e.Address)
					}
				}
				all := map[string]bool{}
				for i := range weights {
					all[addr(i)] = true
				}
				b.UpdateExcluding(snap(weights...), Config{Policy: p}, all)
				if _, err := b.Pick(7, true, nil); !errors.Is(err, ErrNoEndpoint) {
					t.Fatalf("every endpoint excluded: %v, want ErrNoEndpoint", err)
				}
				if _, err := b.Pick(7, true, []string{addr(0)}); !errors.Is(err, ErrNoEndpoint) {
					t.Fatalf("every endpoint excluded, one tried: %v, want ErrNoEndpoint", err)
				}
				// The next update replaces the exclusions.
				b.Update(snap(weights...), Config{Policy: p})
				seen := map[string]bool{}
				for range 3000 {
					seen[pickDone(t, b, rand.Uint64(), true, nil).Address] = true
				}
				if !seen[addr(1)] || !seen[addr(3)] {
					t.Fatalf("after the exclusions were lifted: picked %v", seen)
				}
				for _, e := range b.Endpoints() {
					if e.Excluded() {
						t.Fatalf("%s still reports Excluded", e.Address)
					}
				}
			})
		}
	}
}

// TestExclusionKeepsHashKeys: with ring hash and maglev, excluding an
// endpoint moves only its own keys (to the endpoints the retry order
// gives), and lifting the exclusion brings them back.
func TestExclusionKeepsHashKeys(t *testing.T) {
	for _, p := range []Policy{RingHash, Maglev} {
		t.Run(string(p), func(t *testing.T) {
			b := balancer(t, p, 1, 1, 1, 1)
			owner := map[uint64]string{}
			for range 2000 {
				h := rand.Uint64()
				owner[h] = pickDone(t, b, h, true, nil).Address
			}
			b.UpdateExcluding(snap(1, 1, 1, 1), Config{Policy: p}, map[string]bool{addr(2): true})
			for h, was := range owner {
				got := pickDone(t, b, h, true, nil).Address
				if got == addr(2) || (was != addr(2) && got != was) {
					t.Fatalf("hash %x: %s, was %s (%s excluded)", h, got, was, addr(2))
				}
				if was == addr(2) && got != pickDone(t, b, h, true, []string{addr(2)}).Address {
					t.Fatalf("hash %x of the excluded endpoint does not follow its retry order", h)
				}
			}
			b.Update(snap(1, 1, 1, 1), Config{Policy: p})
			for h, was := range owner {
				if got := pickDone(t, b, h, true, nil).Address; got != was {
					t.Fatalf("hash %x: %s after the exclusion ended, was %s", h, got, was)
				}
			}
		})
	}
}

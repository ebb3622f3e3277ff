package balance

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/outrider-mesh/outrider/discovery"
)

func snap(weights ...int) *discovery.Snapshot {
	s := &discovery.Snapshot{Service: "api"}
	for i, w := range weights {
		s.Endpoints = append(s.Endpoints, discovery.Endpoint{Address: fmt.Sprintf("10.0.0.%d:20000", i+1), Weight: w})
	}
	return s
}

func TestEmptyReturnsErrNoEndpoint(t *testing.T) {
	for _, p := range []Policy{RoundRobin, Random} {
		for _, s := range []*discovery.Snapshot{nil, snap()} {
			if _, err := New(p, s).Pick(); !errors.Is(err, ErrNoEndpoint) {
				t.Errorf("%s: Pick() error = %v, want ErrNoEndpoint", p, err)
			}
		}
	}
}

// Over a whole number of cycles, every endpoint is picked exactly in
// proportion to its weight, wherever the random start fell.
func TestRoundRobinProportions(t *testing.T) {
	tests := []struct {
		weights []int
		cycle   int
	}{
		{[]int{1, 1, 1}, 3},
		{[]int{1}, 1},
		{[]int{5, 1, 1}, 7},
		{[]int{10, 20}, 3}, // reduced by the gcd
		{[]int{0, 3}, 4},   // zero weight counts as 1
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.weights), func(t *testing.T) {
			p := New(RoundRobin, snap(tt.weights...))
			counts := map[string]int{}
			for range tt.cycle * 10 {
				e, err := p.Pick()
				if err != nil {
					t.Fatal(err)
				}
				counts[e.Address]++
			}
			for i, w := range tt.weights {
				g := 0
				for _, x := range tt.weights {
					g += max(x, 1)
				}
				want := max(w, 1) * tt.cycle * 10 / g
				if got := counts[fmt.Sprintf("10.0.0.%d:20000", i+1)]; got != want {
					t.Errorf("endpoint %d (weight %d): picked %d times, want %d", i, w, got, want)
				}
			}
		})
	}
}

// Smooth weighted round robin never sends a run of the heavy endpoint's
// whole share before the others get one.
func TestScheduleIsInterleaved(t *testing.T) {
	got := schedule([]int{5, 1, 1})
	want := []uint32{0, 0, 1, 0, 2, 0, 0}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("schedule = %v, want %v", got, want)
	}
}

func TestScheduleBounded(t *testing.T) {
	s := schedule([]int{65535, 1, 65534})
	if len(s) > maxSchedule+3 {
		t.Fatalf("schedule has %d slots, want at most %d", len(s), maxSchedule+3)
	}
	seen := map[uint32]bool{}
	for _, i := range s {
		seen[i] = true
	}
	if len(seen) != 3 {
		t.Fatalf("schedule %v dropped an endpoint", seen)
	}
}

func TestRandomPicksEveryEndpoint(t *testing.T) {
	p := New(Random, snap(1, 1, 1))
	seen := map[string]bool{}
	for range 1000 {
		e, _ := p.Pick()
		seen[e.Address] = true
	}
	if len(seen) != 3 {
		t.Fatalf("random picked %d distinct endpoints in 1000 picks, want 3", len(seen))
	}
}

// Concurrent picks spread exactly evenly: the counter is one atomic add.
func TestRoundRobinConcurrent(t *testing.T) {
	p := New(RoundRobin, snap(1, 1, 1, 1))
	var mu sync.Mutex
	counts := map[string]int{}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			local := map[string]int{}
			for range 1000 {
				e, _ := p.Pick()
				local[e.Address]++
			}
			mu.Lock()
			for k, v := range local {
				counts[k] += v
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	for k, v := range counts {
		if v != 2000 {
			t.Errorf("%s picked %d times, want 2000", k, v)
		}
	}
}

func BenchmarkPick(b *testing.B) {
	for _, p := range []Policy{RoundRobin, Random} {
		for _, w := range [][]int{{1, 1, 1, 1, 1, 1, 1, 1}, {5, 3, 1, 1, 2, 8, 1, 1}} {
			b.Run(fmt.Sprintf("%s/%v", p, w), func(b *testing.B) {
				pk := New(p, snap(w...))
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := pk.Pick(); err != nil {
							b.Fatal(err)
						}
					}
				})
			})
		}
	}
}

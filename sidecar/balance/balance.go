package balance

import (
	"errors"
	"math/rand/v2"
	"sync/atomic"

	"github.com/outrider-mesh/outrider/discovery"
)

// ErrNoEndpoint means the upstream has no healthy endpoint to pick.
var ErrNoEndpoint = errors.New("balance: no healthy endpoint")

// Picker picks an endpoint. Implementations are safe for concurrent use,
// never block, and return ErrNoEndpoint when there is nothing to pick.
type Picker interface {
	Pick() (discovery.Endpoint, error)
}

// Policy names a balancing algorithm.
type Policy string

const (
	// RoundRobin cycles through endpoints in proportion to their weights,
	// interleaved (smooth weighted round robin); with equal weights it is
	// plain round robin.
	RoundRobin Policy = "round_robin"
	// Random picks uniformly at random, in proportion to weights.
	Random Policy = "random"
)

// maxSchedule bounds the weighted schedule; weights are scaled down
// proportionally (each endpoint keeping at least one slot) beyond it.
const maxSchedule = 4096

// New returns a picker over snap's endpoints. A nil or empty snapshot gives
// a picker that always returns ErrNoEndpoint.
func New(p Policy, snap *discovery.Snapshot) Picker {
	if snap == nil || len(snap.Endpoints) == 0 {
		return empty{}
	}
	sched := schedule(snap.Endpoints)
	if p == Random {
		return &random{eps: snap.Endpoints, sched: sched}
	}
	rr := &roundRobin{eps: snap.Endpoints, sched: sched}
	// A random start spreads the first connections of many sidecars that
	// received the same snapshot at the same moment.
	rr.next.Store(rand.Uint64N(uint64(len(sched))))
	return rr
}

type empty struct{}

func (empty) Pick() (discovery.Endpoint, error) { return discovery.Endpoint{}, ErrNoEndpoint }

type roundRobin struct {
	eps   []discovery.Endpoint
	sched []uint32 // endpoint indexes in smooth weighted order
	next  atomic.Uint64
}

func (r *roundRobin) Pick() (discovery.Endpoint, error) {
	n := r.next.Add(1) - 1
	return r.eps[r.sched[n%uint64(len(r.sched))]], nil
}

type random struct {
	eps   []discovery.Endpoint
	sched []uint32
}

func (r *random) Pick() (discovery.Endpoint, error) {
	return r.eps[r.sched[rand.IntN(len(r.sched))]], nil
}

// schedule lays out endpoint indexes so each appears in proportion to its
// weight, interleaved as nginx's smooth weighted round robin does: with
// weights 5,1,1 the order is a a b a c a a, not a a a a a b c.
func schedule(eps []discovery.Endpoint) []uint32 {
	weights := make([]int, len(eps))
	total, equal := 0, true
	for i, e := range eps {
		weights[i] = max(e.Weight, 1)
		total += weights[i]
		equal = equal && weights[i] == weights[0]
	}
	if equal {
		s := make([]uint32, len(eps))
		for i := range s {
			s[i] = uint32(i)
		}
		return s
	}
	g := weights[0]
	for _, w := range weights[1:] {
		g = gcd(g, w)
	}
	total = 0
	for i := range weights {
		weights[i] /= g
		total += weights[i]
	}
	if total > maxSchedule {
		scaled := 0
		for i, w := range weights {
			weights[i] = max(w*maxSchedule/total, 1)
			scaled += weights[i]
		}
		total = scaled
	}
	s := make([]uint32, 0, total)
	current := make([]int, len(weights))
	for range total {
		best := 0
		for i, w := range weights {
			current[i] += w
			if current[i] > current[best] {
				best = i
			}
		}
		current[best] -= total
		s = append(s, uint32(best))
	}
	return s
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

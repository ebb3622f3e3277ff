package balance

import (
	"math/rand/v2"
	"sync/atomic"
)

// maxSchedule bounds the weighted schedule; weights are scaled down
// proportionally (each endpoint keeping at least one slot) beyond it.
const maxSchedule = 4096

type roundRobin struct {
	eps   []*Endpoint
	sched []uint32 // endpoint indexes in smooth weighted order
	next  atomic.Uint64
}

func newRoundRobin(eps []*Endpoint) *roundRobin {
	rr := &roundRobin{eps: eps, sched: schedule(weightsOf(eps))}
	// A random start spreads the first connections of many sidecars that
	// received the same snapshot at the same moment.
	rr.next.Store(rand.Uint64N(uint64(len(rr.sched))))
	return rr
}

func (r *roundRobin) pick(_ uint64, _ bool, tried []string) *Endpoint {
	n := (r.next.Add(1) - 1) % uint64(len(r.sched))
	return skipTried(r.eps, r.sched, n, tried)
}

type random struct {
	eps   []*Endpoint
	sched []uint32
}

func (r *random) pick(_ uint64, _ bool, tried []string) *Endpoint {
	return skipTried(r.eps, r.sched, rand.Uint64N(uint64(len(r.sched))), tried)
}

// skipTried returns the endpoint of schedule slot n, or when it was tried,
// the next untried one in schedule order; the slot's own when all were.
func skipTried(eps []*Endpoint, sched []uint32, n uint64, tried []string) *Endpoint {
	e := eps[sched[n]]
	if len(tried) == 0 || !e.tried(tried) {
		return e
	}
	for k := uint64(1); k < uint64(len(sched)); k++ {
		if c := eps[sched[(n+k)%uint64(len(sched))]]; !c.tried(tried) {
			return c
		}
	}
	return e
}

// schedule lays out endpoint indexes so each appears in proportion to its
// weight, interleaved as nginx's smooth weighted round robin does: with
// weights 5,1,1 the order is a a b a c a a, not a a a a a b c. Weights are
// at least 1.
func schedule(weights []int) []uint32 {
	equal := true
	for _, w := range weights {
		equal = equal && w == weights[0]
	}
	if equal {
		s := make([]uint32, len(weights))
		for i := range s {
			s[i] = uint32(i)
		}
		return s
	}
	weights = reduce(weights)
	total := 0
	for _, w := range weights {
		total += w
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

// reduce returns weights divided by their greatest common divisor, in a
// new slice.
func reduce(weights []int) []int {
	g := weights[0]
	for _, w := range weights[1:] {
		g = gcd(g, w)
	}
	out := make([]int, len(weights))
	for i, w := range weights {
		out[i] = w / g
	}
	return out
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// leastRequest is Envoy's least-request balancer made lock-free.
//
// With equal weights it is Envoy's exactly: sample choices endpoints
// uniformly at random (with replacement) and take the one with the fewest
// active requests, the first sampled on a tie.
//
// With unequal weights Envoy schedules endpoints by earliest deadline first
// on the effective weight w/(active+1) (active_request_bias 1.0, which
// Consul does not expose), so that in the long run endpoint i gets a share
// of requests proportional to w_i/(a_i+1). An EDF queue needs a lock; the
// equivalent here samples choices endpoints in proportion to their weight,
// then chooses among the samples with probability proportional to
// 1/(active+1): the probability of picking i is then proportional to
// w_i/(a_i+1), exactly when choices is large and approximately (the load
// preference is softer) for the default 2. Idle endpoints are picked in
// exact proportion to their weights.
type leastRequest struct {
	eps     []*Endpoint
	choices int
	sched   []uint32 // weighted sampling; nil when weights are equal
}

func newLeastRequest(eps []*Endpoint, choices int) *leastRequest {
	l := &leastRequest{eps: eps, choices: choices}
	w := weightsOf(eps)
	for _, x := range w {
		if x != w[0] {
			l.sched = schedule(w)
			break
		}
	}
	return l
}

func (l *leastRequest) pick(_ uint64, _ bool, tried []string) *Endpoint {
	if len(l.eps) == 1 {
		return l.eps[0]
	}
	if len(tried) > 0 && !untried(l.eps, tried) {
		tried = nil
	}
	var best *Endpoint
	if l.sched == nil {
		best = l.fewest(tried)
	} else {
		best = l.weighted(tried)
	}
	if best == nil {
		best = l.scan(tried)
	}
	return best
}

// draws bounds the random draws of one pick: tried endpoints are redrawn.
func (l *leastRequest) draws(tried []string) int { return l.choices + 4*len(tried) }

func (l *leastRequest) fewest(tried []string) *Endpoint {
	var (
		best  *Endpoint
		bestA int64
	)
	for got, draw := 0, l.draws(tried); got < l.choices && draw > 0; draw-- {
		e := l.eps[randIndex(rand.Uint64(), len(l.eps))]
		if len(tried) > 0 && e.tried(tried) {
			continue
		}
		got++
		if a := e.live.active.Load(); best == nil || a < bestA {
			best, bestA = e, a
		}
	}
	return best
}

func (l *leastRequest) weighted(tried []string) *Endpoint {
	var (
		best  *Endpoint
		total float64
	)
	for got, draw := 0, l.draws(tried); got < l.choices && draw > 0; draw-- {
		x := rand.Uint64() // high half: the sample; low half: the draw
		e := l.eps[l.sched[randIndex(x, len(l.sched))]]
		if len(tried) > 0 && e.tried(tried) {
			continue
		}
		got++
		// A weighted reservoir of size one: the k-th sample replaces the
		// choice with probability r_k / (r_1 + ... + r_k).
		r := 1 / float64(max(e.live.active.Load(), 0)+1)
		total += r
		if best == nil || float64(uint32(x))*(1.0/(1<<32))*total < r {
			best = e
		}
	}
	return best
}

// randIndex maps the high 32 bits of the random x to [0, n) (Lemire's
// multiply-shift; the bias, n/2^32, is negligible for n below 2^20).
func randIndex(x uint64, n int) int { return int((x >> 32) * uint64(n) >> 32) }

// scan returns the untried endpoint with the fewest active requests,
// starting at a random index; the fallback when sampling drew only tried
// endpoints.
func (l *leastRequest) scan(tried []string) *Endpoint {
	var (
		best  *Endpoint
		bestA int64
		n     = len(l.eps)
		start = rand.IntN(n)
	)
	for k := range n {
		e := l.eps[(start+k)%n]
		if e.tried(tried) {
			continue
		}
		if a := e.live.active.Load(); best == nil || a < bestA {
			best, bestA = e, a
		}
	}
	if best == nil {
		best = l.eps[start]
	}
	return best
}

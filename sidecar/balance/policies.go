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

// draws is how many schedule slots RoundRobin and Random draw for one
// pick while the slots drawn hold avoided endpoints, before drawing among
// the endpoints left.
const draws = 16

// pick takes the next turn; an avoided endpoint's turn goes to the next
// one, so that the others keep exact weighted shares while it is ejected
// (moving on along the schedule without taking the turn would hand its
// whole share to the endpoint after it).
func (r *roundRobin) pick(_ uint64, _ bool, s skip) *Endpoint {
	e := r.eps[r.sched[(r.next.Add(1)-1)%uint64(len(r.sched))]]
	if s.clear(e) {
		return e
	}
	return r.redraw(e, s)
}

// redraw returns e unless avoided, else the next turn not avoided.
func (r *roundRobin) redraw(e *Endpoint, s skip) *Endpoint {
	a := avoider{skip: s}
	if !a.avoids(e) {
		return e
	}
	for range draws - 1 {
		if e := r.eps[r.sched[(r.next.Add(1)-1)%uint64(len(r.sched))]]; !a.avoids(e) {
			return e
		}
	}
	return drawWeighted(r.eps, &a)
}

type random struct {
	eps   []*Endpoint
	sched []uint32
}

// pick draws again for an avoided endpoint, so that the others keep their
// weighted shares.
func (r *random) pick(_ uint64, _ bool, s skip) *Endpoint {
	e := r.eps[r.sched[rand.Uint64N(uint64(len(r.sched)))]]
	if s.clear(e) {
		return e
	}
	return r.redraw(e, s)
}

// redraw returns e unless avoided, else a new draw not avoided.
func (r *random) redraw(e *Endpoint, s skip) *Endpoint {
	a := avoider{skip: s}
	if !a.avoids(e) {
		return e
	}
	for range draws - 1 {
		if e := r.eps[r.sched[rand.Uint64N(uint64(len(r.sched)))]]; !a.avoids(e) {
			return e
		}
	}
	return drawWeighted(r.eps, &a)
}

// drawWeighted returns an endpoint not avoided, chosen at random in
// proportion to its weight (a weighted reservoir sample of one), or nil
// when every endpoint is avoided. It is the fallback of RoundRobin and
// Random when the endpoints left hold so small a share of the schedule
// that draws slots in a row missed them.
func drawWeighted(eps []*Endpoint, a *avoider) *Endpoint {
	var (
		pick  *Endpoint
		total uint64
	)
	for _, e := range eps {
		if a.avoids(e) {
			continue
		}
		w := uint64(max(e.Weight, 1))
		total += w
		if rand.Uint64N(total) < w {
			pick = e
		}
	}
	return pick
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

func (l *leastRequest) pick(_ uint64, _ bool, s skip) *Endpoint {
	if len(l.eps) == 1 {
		if a := (avoider{skip: s}); a.avoids(l.eps[0]) {
			return nil
		}
		return l.eps[0]
	}
	if l.sched == nil {
		return l.fewest(s)
	}
	return l.weighted(s)
}

// draws bounds the random draws of one pick: avoided endpoints are
// redrawn, and a few extra draws cover ejected ones.
func (l *leastRequest) draws(s skip) int { return l.choices + 4*len(s.tried) + 4 }

// maxTopUps bounds the samples of one pick drawn by drawWeighted (O(n)
// each) once the random draws ran out: when the endpoints left hold a
// small share of the weight, the samples still follow the weights (a scan
// from a random start would favour the endpoints after the ejected ones).
const maxTopUps = 8

func (l *leastRequest) fewest(s skip) *Endpoint {
	var (
		best  *Endpoint
		bestA int64
		got   int
		av    = avoider{skip: s}
	)
	for draw := l.draws(s); got < l.choices && draw > 0; draw-- {
		e := l.eps[randIndex(rand.Uint64(), len(l.eps))]
		if !s.clear(e) && av.avoids(e) {
			continue
		}
		got++
		if a := e.live.active.Load(); best == nil || a < bestA {
			best, bestA = e, a
		}
	}
	for top := 0; got < l.choices && top < maxTopUps; top++ {
		e := drawWeighted(l.eps, &av)
		if e == nil {
			break
		}
		got++
		if a := e.live.active.Load(); best == nil || a < bestA {
			best, bestA = e, a
		}
	}
	return best
}

func (l *leastRequest) weighted(s skip) *Endpoint {
	var (
		best  *Endpoint
		total float64
		got   int
	)
	// consider adds a sample to a weighted reservoir of size one: the k-th
	// sample replaces the choice with probability r_k / (r_1 + ... + r_k),
	// drawn with the low half of x.
	consider := func(e *Endpoint, x uint64) {
		got++
		r := 1 / float64(max(e.live.active.Load(), 0)+1)
		total += r
		if best == nil || float64(uint32(x))*(1.0/(1<<32))*total < r {
			best = e
		}
	}
	av := avoider{skip: s}
	for draw := l.draws(s); got < l.choices && draw > 0; draw-- {
		x := rand.Uint64() // high half: the sample; low half: the draw
		e := l.eps[l.sched[randIndex(x, len(l.sched))]]
		if s.clear(e) || !av.avoids(e) {
			consider(e, x)
		}
	}
	for top := 0; got < l.choices && top < maxTopUps; top++ {
		e := drawWeighted(l.eps, &av)
		if e == nil {
			break
		}
		consider(e, rand.Uint64())
	}
	return best
}

// randIndex maps the high 32 bits of the random x to [0, n) (Lemire's
// multiply-shift; the bias, n/2^32, is negligible for n below 2^20).
func randIndex(x uint64, n int) int { return int((x >> 32) * uint64(n) >> 32) }

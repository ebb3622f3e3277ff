package balance

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/outrider-mesh/outrider/discovery"
)

// Endpoint is a discovery.Endpoint plus the balancer's live state for it.
// The embedded discovery.Endpoint is immutable. The state (the active
// request count, and the outlier detection state: consecutive failures,
// ejection) survives updates: an endpoint present in successive snapshots
// (same Address) shares it across them, and keeps the same *Endpoint as
// long as its discovery.Endpoint is unchanged.
type Endpoint struct {
	discovery.Endpoint
	live *endpointState
}

type endpointState struct {
	active atomic.Int64
	// until is the ejection deadline in nanoseconds on b's clock (see
	// Balancer.nanos), 0 when the endpoint is not ejected. A deadline in
	// the past means the endpoint is back; the first Pick or DoneWith to
	// notice clears it. It sits next to active, on the cache line Pick
	// touches anyway.
	until atomic.Int64
	// excluded is set while the endpoint is excluded from picks (it fails
	// its active health check, see UpdateExcluding): unlike an ejection,
	// no fallback ignores it.
	excluded  atomic.Bool
	failures  atomic.Uint32 // consecutive failures (DoneWith)
	ejections atomic.Uint32 // ejections so far, for /clusters
	// b is the balancer that owns the state (set before the endpoint is
	// published); nil for the per-snapshot Picker's endpoints, which have
	// no outlier detection.
	b *Balancer
	// Guarded by b.mu.
	backoff  int64 // the ejection time multiplier (Envoy's ejectTimeBackoff)
	returnAt int64 // the deadline of the last ejection, when it came back
}

// Done ends one request (or connection) that Pick returned e for, without
// an outcome for outlier detection (the client went away, or the proxy
// gave up for reasons that say nothing about the endpoint). Call Done or
// DoneWith exactly once per successful Pick, from any goroutine.
func (e *Endpoint) Done() {
	if e.live != nil {
		e.live.active.Add(-1)
	}
}

// Excluded reports whether the last update excluded e from picks (see
// UpdateExcluding).
func (e *Endpoint) Excluded() bool { return e.live != nil && e.live.excluded.Load() }

// Active is the number of requests picked for e and not yet Done.
func (e *Endpoint) Active() int64 {
	if e.live == nil {
		return 0
	}
	return e.live.active.Load()
}

// tried reports whether e's address is in tried.
func (e *Endpoint) tried(tried []string) bool {
	for _, a := range tried {
		if a == e.Address {
			return true
		}
	}
	return false
}

// skip is what one pick avoids: excluded endpoints, always; the
// addresses already tried for the request; and, when clock is set,
// ejected endpoints. Pickers check their first candidate with skip.clear,
// which is inlined: nothing tried, no ejection deadline set and not
// excluded, a length check and two loads of one cache line. Otherwise
// they go on with an avoider, which reads the clock at most once per
// pick. excluding says that some endpoint of the set may be excluded.
type skip struct {
	tried     []string
	clock     *Balancer // nil: ejections are not avoided
	excluding bool
}

// clear reports whether e is certainly not avoided.
func (s skip) clear(e *Endpoint) bool {
	return len(s.tried) == 0 && e.live.until.Load() == 0 && !e.live.excluded.Load()
}

// avoider is a skip for the rest of a pick once its first candidate was
// not clear: it reads the clock only for an endpoint with a deadline set,
// and then once.
type avoider struct {
	skip
	now int64 // clock.nanos() (at least 1), 0 until read
}

func (a *avoider) avoids(e *Endpoint) bool {
	return e.live.excluded.Load() || (len(a.tried) > 0 && e.tried(a.tried)) || (e.live.until.Load() != 0 && a.ejected(e))
}

// ejected reports whether e is ejected. An expired deadline is cleared (by
// whoever notices first), and the consecutive failures restart from zero,
// as when Envoy un-ejects a host.
func (a *avoider) ejected(e *Endpoint) bool {
	if a.clock == nil {
		return false
	}
	u := e.live.until.Load()
	if u == 0 {
		return false
	}
	if a.now == 0 {
		a.now = a.clock.nanos()
	}
	if u > a.now {
		return true
	}
	if e.live.until.CompareAndSwap(u, 0) {
		e.live.failures.Store(0)
	}
	return false
}

// anyLeft reports whether some endpoint of eps is not avoided.
func (a *avoider) anyLeft(eps []*Endpoint) bool {
	if a.clock == nil && !a.excluding && len(a.tried) < len(eps) {
		return true // fewer tried addresses than endpoints
	}
	for _, e := range eps {
		if !a.avoids(e) {
			return true
		}
	}
	return false
}

// picker is one policy's immutable view of one endpoint set. pick never
// blocks and does not allocate; it returns nil when every endpoint is
// avoided (or eps is empty), and never returns nil for a set with an
// endpoint that is not excluded and an otherwise empty skip. It does not
// count the pick (Balancer.Pick does).
type picker interface {
	pick(hash uint64, hashed bool, s skip) *Endpoint
}

// state is what Update publishes and Pick reads.
type state struct {
	cfg Config
	eps []*Endpoint
	p   picker
	// excluding: some endpoint of eps was excluded when it was published.
	excluding bool
}

// Balancer balances one upstream.
//
// Update and SetOutlier are called by the goroutine that receives
// discovery snapshots and configuration (calls are serialized by one
// mutex; concurrent calls are safe but pointless). Update builds a new
// immutable picker and publishes it with an atomic store. Pick is called
// concurrently from request goroutines: it is lock-free, never blocks and
// does not allocate. Done and DoneWith are called from any goroutine; an
// ejection decision takes the mutex briefly.
type Balancer struct {
	def   Policy
	state atomic.Pointer[state]

	// maxFailures is the outlier detection threshold DoneWith reads
	// without the lock; 0 when detection is off. Written under mu.
	maxFailures atomic.Uint32

	// now is the clock and epoch its origin, 1ns before the balancer was
	// made: nanos measures the monotonic time since. Tests replace both
	// (setClock) before use.
	now   func() time.Time
	epoch time.Time

	mu      sync.Mutex           // serializes Update, SetOutlier and ejections
	live    map[string]*Endpoint // by address, the endpoints of the last Update
	outlier outlierParams
	onEject func(address string, d time.Duration)
}

// NewBalancer returns a balancer with no endpoints (Pick returns
// ErrNoEndpoint until the first Update) and outlier detection off.
// defaultPolicy applies when the Config's Policy is empty: RoundRobin for
// L4 listeners, LeastRequest for L7 ones.
func NewBalancer(defaultPolicy Policy) *Balancer {
	if !defaultPolicy.known() {
		defaultPolicy = RoundRobin
	}
	return &Balancer{def: defaultPolicy, now: time.Now, epoch: time.Now().Add(-time.Nanosecond)}
}

// nanos is the balancer's clock: nanoseconds since just before it was
// made (so at least 1; 0 means unset), on the monotonic clock (a wall
// clock step does not lengthen an ejection).
func (b *Balancer) nanos() int64 { return max(int64(b.now().Sub(b.epoch)), 1) }

// Update publishes snap's endpoints balanced by cfg. A nil snapshot means
// no endpoints. Endpoints keep their live state (active requests,
// consecutive failures, ejection) across updates by address; an endpoint
// absent from a snapshot loses it. A snapshot listing an address twice
// keeps the first.
// When neither the endpoints nor the picker's settings changed (a
// discovery wake-up with a new index only), the current picker, with its
// round-robin position, is kept.
//
// cfg is normalized: an empty Policy becomes the balancer's default, zero
// settings their defaults, and out-of-range settings are clamped (validate
// configuration with FromConsul). cfg.HashPolicies is retained (Config
// returns it) and must not be modified afterwards.
func (b *Balancer) Update(snap *discovery.Snapshot, cfg Config) {
	b.UpdateExcluding(snap, cfg, nil)
}

// UpdateExcluding is Update with the endpoints whose addresses excluded
// holds left out of every pick: an endpoint failing its active health
// check. Unlike an ejected one, an excluded endpoint is never picked, not
// even when every endpoint is excluded (Pick then returns ErrNoEndpoint).
// It stays in the picker's set, so that the others keep their places: a
// ring-hash key moves only while its endpoint is excluded, as for an
// ejection. The exclusions are set before the new picker is published
// and replace those of the previous update; excluded is not retained.
func (b *Balancer) UpdateExcluding(snap *discovery.Snapshot, cfg Config, excluded map[string]bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	cfg = cfg.normalize(b.def)
	var in []discovery.Endpoint
	if snap != nil {
		in = snap.Endpoints
	}
	live := make(map[string]*Endpoint, len(in))
	eps := make([]*Endpoint, 0, len(in))
	for _, de := range in {
		if _, dup := live[de.Address]; dup {
			continue
		}
		e := b.live[de.Address]
		switch {
		case e == nil:
			e = &Endpoint{Endpoint: de, live: &endpointState{b: b}}
		case e.Endpoint != de:
			// Same address, new weight or identity: a new immutable
			// Endpoint sharing the counters.
			e = &Endpoint{Endpoint: de, live: e.live}
		}
		live[de.Address] = e
		eps = append(eps, e)
	}
	b.live = live
	excluding := false
	for _, e := range eps {
		x := excluded[e.Address]
		e.live.excluded.Store(x)
		excluding = excluding || x
	}

	old := b.state.Load()
	var p picker
	if old != nil && old.cfg.samePicker(cfg) && samePointers(old.eps, eps) {
		p = old.p
	} else {
		p = build(cfg, eps)
	}
	b.state.Store(&state{cfg: cfg, eps: eps, p: p, excluding: excluding})
}

func samePointers(a, b []*Endpoint) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Config returns the configuration of the current picker, normalized (its
// Policy is never empty).
func (b *Balancer) Config() Config {
	if s := b.state.Load(); s != nil {
		return s.cfg
	}
	return Config{}.normalize(b.def)
}

// Endpoints returns the current endpoints. The slice must not be modified.
func (b *Balancer) Endpoints() []*Endpoint {
	if s := b.state.Load(); s != nil {
		return s.eps
	}
	return nil
}

// Pick picks an endpoint for one request (or connection).
//
// hash and hashed come from Hash over Config().HashPolicies; only RingHash
// and Maglev read them, and they pick at random when hashed is false.
// tried lists the addresses already attempted for this request. Pick
// avoids tried and ejected endpoints (see SetOutlier) whenever another
// endpoint exists: RoundRobin and Random give the turn to another slot of
// their schedule (the round robin's next turn, a new random draw), so
// that the endpoints left keep their weighted shares, and after 16 such
// draws pick among the endpoints left in proportion to their weights;
// LeastRequest samples only the endpoints left; RingHash walks the ring
// to the next endpoint not avoided; Maglev rehashes with the attempt
// number as Envoy does, then scans the table. Every sidecar thus retries
// a given hash on the same sequence of endpoints, and the keys of an
// ejected endpoint go back to it when the ejection ends.
//
// When every endpoint is ejected or tried, Pick ignores ejections and
// picks as if only tried endpoints were avoided, and when every endpoint
// was tried, as if none were: better a possibly bad endpoint than a
// certain 503 (Envoy's panic threshold has the same intent). Endpoints
// excluded by UpdateExcluding are avoided throughout.
//
// Pick returns ErrNoEndpoint when there is no endpoint. Otherwise the
// caller must call Done or DoneWith on the returned Endpoint exactly once,
// when the request (or connection) ends.
func (b *Balancer) Pick(hash uint64, hashed bool, tried []string) (*Endpoint, error) {
	s := b.state.Load()
	if s == nil {
		return nil, ErrNoEndpoint
	}
	e := s.p.pick(hash, hashed, skip{tried: tried, clock: b, excluding: s.excluding})
	if e == nil {
		if e = s.fallback(hash, hashed, tried); e == nil {
			return nil, ErrNoEndpoint
		}
	}
	e.live.active.Add(1)
	return e, nil
}

// fallback picks when every endpoint is avoided: ignoring ejections, then
// what was tried, never excluded endpoints; nil when there is no endpoint
// left.
func (s *state) fallback(hash uint64, hashed bool, tried []string) *Endpoint {
	if len(s.eps) == 0 {
		return nil
	}
	var e *Endpoint
	if len(tried) > 0 {
		e = s.p.pick(hash, hashed, skip{tried: tried, excluding: s.excluding})
	}
	if e == nil {
		e = s.p.pick(hash, hashed, skip{excluding: s.excluding})
	}
	return e
}

// build returns the picker of cfg.Policy (normalized) over eps.
func build(cfg Config, eps []*Endpoint) picker {
	if len(eps) == 0 {
		return noEndpoint{}
	}
	switch cfg.Policy {
	case Random:
		return &random{eps: eps, sched: schedule(weightsOf(eps))}
	case LeastRequest:
		return newLeastRequest(eps, cfg.ChoiceCount)
	case RingHash:
		return newRing(eps, cfg.MinRingSize, cfg.MaxRingSize)
	case Maglev:
		return newMaglev(eps, MaglevTableSize)
	}
	return newRoundRobin(eps)
}

// weightsOf returns the endpoints' weights, at least 1 each.
func weightsOf(eps []*Endpoint) []int {
	w := make([]int, len(eps))
	for i, e := range eps {
		w[i] = max(e.Weight, 1)
	}
	return w
}

type noEndpoint struct{}

func (noEndpoint) pick(uint64, bool, skip) *Endpoint { return nil }

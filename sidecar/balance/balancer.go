package balance

import (
	"sync"
	"sync/atomic"

	"github.com/outrider-mesh/outrider/discovery"
)

// Endpoint is a discovery.Endpoint plus the balancer's live state for it.
// The embedded discovery.Endpoint is immutable. The state (the active
// request count) survives updates: an endpoint present in successive
// snapshots (same Address) shares its counters across them, and keeps the
// same *Endpoint as long as its discovery.Endpoint is unchanged.
type Endpoint struct {
	discovery.Endpoint
	live *endpointState
}

type endpointState struct {
	active atomic.Int64
}

// Done ends one request (or connection) that Pick returned e for. Call it
// exactly once per successful Pick, from any goroutine.
func (e *Endpoint) Done() {
	if e.live != nil {
		e.live.active.Add(-1)
	}
}

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

// picker is one policy's immutable view of one endpoint set. pick never
// blocks, does not allocate, and returns nil only when eps is empty; it
// does not count the pick (Balancer.Pick does).
type picker interface {
	pick(hash uint64, hashed bool, tried []string) *Endpoint
}

// state is what Update publishes and Pick reads.
type state struct {
	cfg Config
	eps []*Endpoint
	p   picker
}

// Balancer balances one upstream.
//
// Update is called by the goroutine that receives discovery snapshots and
// configuration (calls are serialized; concurrent calls are safe but
// pointless). It builds a new immutable picker and publishes it with an
// atomic store. Pick is called concurrently from request goroutines: it is
// lock-free, never blocks and does not allocate.
type Balancer struct {
	def   Policy
	state atomic.Pointer[state]

	mu   sync.Mutex           // serializes Update
	live map[string]*Endpoint // by address, the endpoints of the last Update
}

// NewBalancer returns a balancer with no endpoints (Pick returns
// ErrNoEndpoint until the first Update). defaultPolicy applies when the
// Config's Policy is empty: RoundRobin for L4 listeners, LeastRequest for
// L7 ones.
func NewBalancer(defaultPolicy Policy) *Balancer {
	if !defaultPolicy.known() {
		defaultPolicy = RoundRobin
	}
	return &Balancer{def: defaultPolicy}
}

// Update publishes snap's endpoints balanced by cfg. A nil snapshot means
// no endpoints. Endpoints keep their live state (active requests) across
// updates by address; a snapshot listing an address twice keeps the first.
// When neither the endpoints nor the picker's settings changed (a
// discovery wake-up with a new index only), the current picker, with its
// round-robin position, is kept.
//
// cfg is normalized: an empty Policy becomes the balancer's default, zero
// settings their defaults, and out-of-range settings are clamped (validate
// configuration with FromConsul). cfg.HashPolicies is retained (Config
// returns it) and must not be modified afterwards.
func (b *Balancer) Update(snap *discovery.Snapshot, cfg Config) {
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
			e = &Endpoint{Endpoint: de, live: new(endpointState)}
		case e.Endpoint != de:
			// Same address, new weight or identity: a new immutable
			// Endpoint sharing the counters.
			e = &Endpoint{Endpoint: de, live: e.live}
		}
		live[de.Address] = e
		eps = append(eps, e)
	}
	b.live = live

	old := b.state.Load()
	var p picker
	if old != nil && old.cfg.samePicker(cfg) && samePointers(old.eps, eps) {
		p = old.p
	} else {
		p = build(cfg, eps)
	}
	b.state.Store(&state{cfg: cfg, eps: eps, p: p})
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
// tried lists the addresses already attempted for this request; Pick
// avoids them whenever another endpoint exists: RoundRobin and Random move
// on to the next untried endpoint of their schedule, LeastRequest samples
// only untried endpoints, RingHash walks the ring to the next untried
// endpoint, Maglev rehashes with the attempt number as Envoy does, then
// scans the table. Every sidecar thus retries a given hash on the same
// sequence of endpoints.
//
// Pick returns ErrNoEndpoint when there is no endpoint. Otherwise the
// caller must call Done on the returned Endpoint exactly once, when the
// request (or connection) ends.
func (b *Balancer) Pick(hash uint64, hashed bool, tried []string) (*Endpoint, error) {
	s := b.state.Load()
	if s == nil {
		return nil, ErrNoEndpoint
	}
	e := s.p.pick(hash, hashed, tried)
	if e == nil {
		return nil, ErrNoEndpoint
	}
	e.live.active.Add(1)
	return e, nil
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

func (noEndpoint) pick(uint64, bool, []string) *Endpoint { return nil }

// untried reports whether some endpoint of eps is not in tried.
func untried(eps []*Endpoint, tried []string) bool {
	if len(tried) < len(eps) {
		return true // fewer tried addresses than endpoints
	}
	for _, e := range eps {
		if !e.tried(tried) {
			return true
		}
	}
	return false
}

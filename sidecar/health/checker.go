package health

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/outrider-mesh/outrider/discovery"
)

// DefaultConcurrency bounds the probes one Checker has in flight.
const DefaultConcurrency = 16

// State is an endpoint's active health.
type State uint8

// The states. An endpoint starts Pending, is probed at once, and becomes
// Healthy on its first passing probe and Unhealthy on its first failing
// one; after that the thresholds apply.
const (
	Pending State = iota
	Healthy
	Unhealthy
)

var stateNames = [...]string{Pending: "pending", Healthy: "healthy", Unhealthy: "unhealthy"}

func (s State) String() string { return stateNames[s] }

// MarshalText writes the state's name (for /clusters).
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a state's name.
func (s *State) UnmarshalText(b []byte) error {
	for i, n := range stateNames {
		if n == string(b) {
			*s = State(i)
			return nil
		}
	}
	return fmt.Errorf("health: unknown state %q", b)
}

// Result classifies one probe.
type Result uint8

// The results, each a value of the health-check metric's result label.
const (
	// Success: the probe passed.
	Success Result = iota
	// Failure: the endpoint answered that it is not healthy (an *AnswerError).
	Failure
	// Error: no usable answer (connect, TLS, reset, malformed answer).
	Error
	// Timeout: no answer within Config.Timeout.
	Timeout
)

var resultNames = [...]string{Success: "success", Failure: "failure", Error: "error", Timeout: "timeout"}

func (r Result) String() string { return resultNames[r] }

// Results lists every Result, for exposing metrics from zero.
var Results = []Result{Success, Failure, Error, Timeout}

// AnswerError is an endpoint's answer that it is not healthy: an HTTP
// status not expected, a gRPC status other than SERVING. It makes the
// endpoint Unhealthy at once (Envoy's active failure); every other probe
// error counts towards Config.UnhealthyThreshold (Envoy's network failure).
type AnswerError struct{ Reason string }

func (e *AnswerError) Error() string { return e.Reason }

// Status is an endpoint's active health as the Checker holds it.
type Status struct {
	State State `json:"state"`
	// Since is when the endpoint entered State (for Pending: when it
	// appeared).
	Since time.Time `json:"since"`
	// LastCheck is when the last probe ended; zero before the first.
	LastCheck time.Time `json:"last_check,omitzero"`
	// LastFailure says why the last failing probe failed, at
	// LastFailureAt; empty if none has.
	LastFailure   string    `json:"last_failure,omitempty"`
	LastFailureAt time.Time `json:"last_failure_at,omitzero"`
	// successes and failures are consecutive results towards a threshold.
	successes, failures uint32
}

// step applies one result to s and reports whether the state changed.
// Envoy's rules: a first result decides at once; later, HealthyThreshold
// successes in a row bring an unhealthy endpoint back, an answer that it
// is not healthy takes it out at once, and UnhealthyThreshold probes in a
// row without an answer take it out.
func (s *Status) step(r Result, cfg *Config) bool {
	from := s.State
	if r == Success {
		s.failures = 0
		switch s.State {
		case Pending:
			s.State = Healthy
		case Unhealthy:
			if s.successes++; s.successes >= cfg.HealthyThreshold {
				s.State = Healthy
			}
		}
	} else {
		s.successes = 0
		switch {
		case s.State == Pending || r == Failure:
			s.State = Unhealthy
		case s.State == Healthy:
			if s.failures++; s.failures >= cfg.UnhealthyThreshold {
				s.State = Unhealthy
			}
		}
	}
	if s.State != from {
		s.successes, s.failures = 0, 0
		return true
	}
	return false
}

// Change is an endpoint's move from one state to another, with the
// reason: the failing probe's error, or "" for a pass.
type Change struct {
	Endpoint discovery.Endpoint
	From, To State
	Reason   string
}

// Prober makes the probes of endpoints. NewSession is called on the
// endpoint's probe goroutine when its probing starts.
type Prober interface {
	NewSession(ep discovery.Endpoint) Session
}

// Session probes one endpoint, from one goroutine: Probe once per
// interval, under a context that carries Config.Timeout, and Close when
// the endpoint's probing stops (it releases pooled connections). Probe
// returns nil when the endpoint passes, an *AnswerError when it answered
// that it is not healthy, and another error otherwise.
type Session interface {
	Probe(ctx context.Context) error
	Close()
}

// Option configures a Checker.
type Option func(*Checker)

// WithConcurrency bounds the probes in flight at once (default
// DefaultConcurrency); a probe due while the bound is reached waits.
func WithConcurrency(n int) Option {
	return func(c *Checker) {
		if n > 0 {
			c.sem = make(chan struct{}, n)
		}
	}
}

// OnChange sets the function called after an endpoint changes state, on
// that endpoint's probe goroutine, with no lock held; it may call the
// Checker's methods except Close (which waits for that goroutine).
func OnChange(f func(Change)) Option { return func(c *Checker) { c.onChange = f } }

// OnResult sets the function called with each probe's result, as OnChange.
func OnResult(f func(Result)) Option { return func(c *Checker) { c.onResult = f } }

// Checker actively checks the endpoints of one endpoint set (a sidecar
// cluster). Each endpoint has a probe goroutine, which probes it at once
// and then every Interval (plus up to 10% jitter), at most the
// concurrency bound of probes being in flight. Update, Excluded, Status and
// Healthy are safe for concurrent use; none of them blocks on a probe.
// Close stops every probe and waits for the goroutines.
type Checker struct {
	cfg      Config
	prober   Prober
	sem      chan struct{}
	onChange func(Change)
	onResult func(Result)
	now      func() time.Time

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	entries map[string]*entry // by address
}

// entry is one endpoint being probed; guarded by Checker.mu except ep and
// cancel, which never change.
type entry struct {
	ep     discovery.Endpoint
	cancel context.CancelFunc
	st     Status
}

// New returns a Checker with no endpoints; cfg gets its defaults. Probing
// starts with the first Update.
func New(cfg Config, p Prober, opts ...Option) *Checker {
	ctx, cancel := context.WithCancel(context.Background())
	c := &Checker{cfg: cfg.WithDefaults(), prober: p, sem: make(chan struct{}, DefaultConcurrency), now: time.Now,
		ctx: ctx, cancel: cancel, entries: map[string]*entry{}}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Config returns the configuration in force, defaults applied.
func (c *Checker) Config() Config { return c.cfg }

// Update makes snap's endpoints the ones probed (nil: none). A new
// endpoint is Pending and probed at once; an endpoint no longer listed
// stops being probed (a probe in flight is cancelled and its result
// dropped) and its state is forgotten; an endpoint whose identity changed
// starts over as a new one. After Close, Update does nothing.
func (c *Checker) Update(snap *discovery.Snapshot) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ctx.Err() != nil {
		return
	}
	var eps []discovery.Endpoint
	if snap != nil {
		eps = snap.Endpoints
	}
	keep := make(map[string]bool, len(eps))
	for _, ep := range eps {
		keep[ep.Address] = true
		if e := c.entries[ep.Address]; e != nil {
			if e.ep.Identity == ep.Identity {
				continue
			}
			e.cancel()
		}
		ctx, cancel := context.WithCancel(c.ctx)
		e := &entry{ep: ep, cancel: cancel, st: Status{State: Pending, Since: c.now()}}
		c.entries[ep.Address] = e
		c.wg.Go(func() { c.run(ctx, e) })
	}
	for addr, e := range c.entries {
		if !keep[addr] {
			e.cancel()
			delete(c.entries, addr)
		}
	}
}

// Close stops every probe and waits for the probe goroutines to end.
// Idempotent. Must not be called from an OnChange or OnResult function.
func (c *Checker) Close() {
	c.mu.Lock()
	c.cancel()
	c.entries = map[string]*entry{}
	c.mu.Unlock()
	c.wg.Wait()
}

// run probes e until ctx ends.
func (c *Checker) run(ctx context.Context, e *entry) {
	s := c.prober.NewSession(e.ep)
	defer s.Close()
	var t *time.Timer
	for {
		select {
		case c.sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		pctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
		err := s.Probe(pctx)
		timedOut := errors.Is(pctx.Err(), context.DeadlineExceeded)
		cancel()
		<-c.sem
		if ctx.Err() != nil {
			return
		}
		c.record(e, err, timedOut)
		wait := c.cfg.Interval + rand.N(c.cfg.Interval/10+1)
		if t == nil {
			t = time.NewTimer(wait)
			defer t.Stop()
		} else {
			t.Reset(wait)
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

// record applies a probe's outcome to e, unless e left the set meanwhile.
func (c *Checker) record(e *entry, err error, timedOut bool) {
	r := Success
	var answer *AnswerError
	switch {
	case err == nil:
	case errors.As(err, &answer):
		r = Failure
	case timedOut:
		r = Timeout
	default:
		r = Error
	}
	c.mu.Lock()
	if c.entries[e.ep.Address] != e {
		c.mu.Unlock()
		return
	}
	now := c.now()
	from := e.st.State
	e.st.LastCheck = now
	reason := ""
	if err != nil {
		reason = err.Error()
		if r == Timeout {
			reason = "timeout after " + c.cfg.Timeout.String() + ": " + reason
		}
		e.st.LastFailure, e.st.LastFailureAt = reason, now
	}
	changed := e.st.step(r, &c.cfg)
	if changed {
		e.st.Since = now
	}
	to := e.st.State
	c.mu.Unlock()
	if c.onResult != nil {
		c.onResult(r)
	}
	if changed && c.onChange != nil {
		c.onChange(Change{Endpoint: e.ep, From: from, To: to, Reason: reason})
	}
}

// Status returns the active health of the endpoint at addr; ok is false
// when it is not being probed.
func (c *Checker) Status(addr string) (st Status, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.entries[addr]; e != nil {
		return e.st, true
	}
	return Status{}, false
}

// Healthy counts the endpoints whose state is Healthy.
func (c *Checker) Healthy() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, e := range c.entries {
		if e.st.State == Healthy {
			n++
		}
	}
	return n
}

// Excluded returns the addresses of snap's endpoints not to balance over
// (nil when there is none): those that are not Healthy, except that while
// no endpoint is Healthy the Pending ones are kept (no probe has answered
// for them yet, as for every endpoint when checking starts: nothing says
// otherwise, and Consul passes them). When every endpoint is Unhealthy,
// every one is excluded and the caller answers "no healthy upstream"
// (fail closed, see the package documentation). An endpoint of snap that
// Update has not seen counts as Pending.
func (c *Checker) Excluded(snap *discovery.Snapshot) map[string]bool {
	if snap == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	state := func(ep discovery.Endpoint) State {
		if e := c.entries[ep.Address]; e != nil && e.ep.Identity == ep.Identity {
			return e.st.State
		}
		return Pending
	}
	anyHealthy := false
	for _, ep := range snap.Endpoints {
		anyHealthy = anyHealthy || state(ep) == Healthy
	}
	var out map[string]bool
	for _, ep := range snap.Endpoints {
		if st := state(ep); st == Unhealthy || (st == Pending && anyHealthy) {
			if out == nil {
				out = map[string]bool{}
			}
			out[ep.Address] = true
		}
	}
	return out
}

package balance

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/outrider-mesh/outrider/internal/confval"
)

// Outlier detection defaults: Envoy's, which apply when Consul leaves a
// field unset.
const (
	defaultOutlierInterval    = 10 * time.Second
	defaultBaseEjectionTime   = 30 * time.Second
	defaultMaxEjectionTime    = 300 * time.Second // Envoy's max_ejection_time, which Consul does not expose
	defaultMaxEjectionPercent = 10
	// maxOutlierDuration bounds Interval and BaseEjectionTime (SetOutlier
	// clamps them), so that ejection times cannot overflow.
	maxOutlierDuration = 366 * 24 * time.Hour
)

// OutlierConfig is service-defaults PassiveHealthCheck (an UpstreamConfig
// Defaults or Overrides entry, as the agent merges it into each upstream's
// registration): passive outlier detection as Envoy's consecutive_5xx
// detector does it, with split_external_local_origin_errors off. The zero
// value turns detection off.
//
// SetOutlier clamps values out of range rather than failing; validate
// configuration with FromConsulPassiveHealthCheck.
type OutlierConfig struct {
	// Interval is how often ejected endpoints are reconsidered; default 10s
	// (Envoy), and 0 means the default. Envoy sweeps its hosts every
	// Interval, un-ejecting those whose ejection time has passed and
	// decrementing the ejection time multiplier of those back in service
	// for at least an Interval. Here an ejection ends exactly at its
	// deadline, with no sweep (lazily: the first Pick or DoneWith to
	// look at the endpoint notices), and Interval is the period of the
	// multiplier's decay: each whole Interval an endpoint has been back by
	// its next ejection takes one BaseEjectionTime off that ejection.
	Interval time.Duration
	// MaxFailures is how many consecutive failures (DoneWith outcomes other
	// than Success) eject an endpoint; Envoy's consecutive_5xx. 0 turns
	// outlier detection off.
	MaxFailures uint32
	// EnforcingConsecutive5xx is the chance, in percent (0-100), that an
	// ejection is enforced once an endpoint reaches MaxFailures; nil means
	// 100. With 0 failures are counted but nothing is ejected.
	EnforcingConsecutive5xx *uint32
	// MaxEjectionPercent bounds how many endpoints are ejected at once, in
	// percent of the balancer's current endpoints; nil means 10 (Envoy's
	// default). As in the Envoy releases Consul 1.15 runs (1.22 to 1.25),
	// an ejection is allowed while the endpoints already ejected are fewer
	// than MaxEjectionPercent of all: one endpoint can always be ejected
	// when MaxEjectionPercent is above 0, and at most
	// ceil(n × MaxEjectionPercent / 100) are (1 of 10 at 10%, 1 of 3 at 10%,
	// 2 of 3 at 50%, all at 100%). 0 ejects nothing.
	MaxEjectionPercent *uint32
	// BaseEjectionTime is how long a first ejection lasts; default 30s, and
	// 0 means the default. Each ejection increments the endpoint's
	// multiplier n, decremented as described for Interval, and lasts
	// n × BaseEjectionTime, capped at max(BaseEjectionTime, 300s) (Envoy's
	// max_ejection_time default, which Consul does not expose).
	BaseEjectionTime time.Duration
}

// outlierParams is an OutlierConfig normalized; the zero value is
// detection off.
type outlierParams struct {
	maxFailures uint32
	enforcing   uint32 // percent
	maxPercent  uint32
	interval    time.Duration
	base        time.Duration
	maxEjection time.Duration
}

func (c OutlierConfig) params() outlierParams {
	if c.MaxFailures == 0 {
		return outlierParams{}
	}
	p := outlierParams{
		maxFailures: c.MaxFailures,
		enforcing:   100,
		maxPercent:  defaultMaxEjectionPercent,
		interval:    c.Interval,
		base:        c.BaseEjectionTime,
	}
	if c.EnforcingConsecutive5xx != nil {
		p.enforcing = min(*c.EnforcingConsecutive5xx, 100)
	}
	if c.MaxEjectionPercent != nil {
		p.maxPercent = min(*c.MaxEjectionPercent, 100)
	}
	if p.interval <= 0 {
		p.interval = defaultOutlierInterval
	}
	if p.base <= 0 {
		p.base = defaultBaseEjectionTime
	}
	p.interval = min(p.interval, maxOutlierDuration)
	p.base = min(p.base, maxOutlierDuration)
	p.maxEjection = max(defaultMaxEjectionTime, p.base)
	return p
}

// FromConsulPassiveHealthCheck converts the value the Consul agent puts in
// an upstream's Config["passive_health_check"] (nil gives the zero
// OutlierConfig: detection off), validating it as Consul does when a
// service-defaults entry is written. v is the object as encoding/json
// decodes it, a map[string]any:
//
//	{"Interval": 10000000000, "MaxFailures": 3, "EnforcingConsecutive5xx": 100,
//	 "MaxEjectionPercent": 50, "BaseEjectionTime": 30000000000}
//
// Keys match case-insensitively and also in Consul's snake_case spelling
// (max_failures, enforcing_consecutive_5xx, ...), as Consul decodes them;
// other keys are ignored, as Consul ignores them; a null value is unset.
// Interval and BaseEjectionTime are whole numbers of nanoseconds or Go
// duration strings ("10s"); the counts are whole numbers (also as decimal
// strings, which Consul's weak decoding accepts). Negative values, wrong
// types, and percentages above 100 are errors. The error, a *ConfigError,
// names the first bad field, e.g. "PassiveHealthCheck.MaxEjectionPercent".
func FromConsulPassiveHealthCheck(v any) (OutlierConfig, error) {
	const prefix = "PassiveHealthCheck"
	if v == nil {
		return OutlierConfig{}, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return OutlierConfig{}, errField(prefix, "want an object, got %s", confval.Kind(v))
	}
	fields := [...]struct{ name, alias string }{
		{"Interval", "interval"},
		{"MaxFailures", "max_failures"},
		{"EnforcingConsecutive5xx", "enforcing_consecutive_5xx"},
		{"MaxEjectionPercent", "max_ejection_percent"},
		{"BaseEjectionTime", "base_ejection_time"},
	}
	var keys [len(fields)][]string
	for k := range m {
		lk := strings.ToLower(k)
		for i, f := range fields {
			if lk == strings.ToLower(f.name) || lk == f.alias {
				keys[i] = append(keys[i], k)
			}
		}
	}
	var c OutlierConfig
	for i, f := range fields {
		field := prefix + "." + f.name
		if len(keys[i]) == 0 {
			continue
		}
		if len(keys[i]) > 1 {
			slices.Sort(keys[i])
			return OutlierConfig{}, errField(field, "set more than once, as %q", keys[i])
		}
		val := m[keys[i][0]]
		if val == nil {
			continue
		}
		var err error
		switch i {
		case 0:
			c.Interval, err = durationValue(field, val)
		case 1:
			c.MaxFailures, err = countValue(field, val, math.MaxUint32)
		case 2:
			c.EnforcingConsecutive5xx, err = percentValue(field, val)
		case 3:
			c.MaxEjectionPercent, err = percentValue(field, val)
		case 4:
			c.BaseEjectionTime, err = durationValue(field, val)
		}
		if err != nil {
			return OutlierConfig{}, err
		}
	}
	return c, nil
}

func durationValue(field string, v any) (time.Duration, error) {
	d, err := confval.Duration(v)
	if err != nil {
		return 0, errField(field, "%s", err)
	}
	return d, nil
}

func percentValue(field string, v any) (*uint32, error) {
	n, err := countValue(field, v, 100)
	if err != nil {
		return nil, err
	}
	return &n, nil
}

// countValue converts a count or percentage (limit 100).
func countValue(field string, v any, limit int64) (uint32, error) {
	n, err := confval.Count(v, limit)
	if err != nil {
		return 0, errField(field, "%s", err)
	}
	return n, nil
}

// Outcome is how one request or connection on an endpoint ended.
type Outcome uint8

const (
	// Success is a response below 500, or a completed L4 connection.
	Success Outcome = iota
	// ServerError is a 5xx response that is not a gateway error (500, 501,
	// 505, ...).
	ServerError
	// GatewayError is a 502, 503 or 504 response from the endpoint.
	GatewayError
	// LocalFailure is a connect or TLS handshake failure, or a reset or
	// timeout before a response: a failure originated locally.
	LocalFailure
)

// OutcomeOf classifies an HTTP status: 0 (no response, and any status
// below 0) is LocalFailure, 502 to 504 GatewayError, other statuses from
// 500 to 599 ServerError, and the rest Success (Envoy counts 500-599 as
// 5xx).
func OutcomeOf(status int) Outcome {
	switch {
	case status <= 0:
		return LocalFailure
	case status == 502 || status == 503 || status == 504:
		return GatewayError
	case status >= 500 && status < 600:
		return ServerError
	}
	return Success
}

// DoneWith ends one request (or connection) like Done and reports how it
// ended, as Report does. Call Done or DoneWith exactly once per successful
// Pick, from any goroutine; DoneWith never blocks on requests.
func (e *Endpoint) DoneWith(o Outcome) {
	if e.live == nil {
		return
	}
	e.live.active.Add(-1)
	e.Report(o)
}

// Report tells outlier detection how a request on e went without ending
// it: the proxy reports the status when the response head arrives (as
// Envoy does), so that the next request picked already knows of a
// failure while the body is still being relayed, and ends the request
// with Done. Report any number of times per Pick (a 200 whose body is then
// cut short is a Success and then a LocalFailure).
//
// Every outcome other than Success increments the endpoint's count of
// consecutive failures (Envoy's consecutive_5xx counts 5xx responses,
// gateway errors and, with split_external_local_origin_errors off as
// Consul leaves it, locally originated failures); Success resets it. When
// the count reaches MaxFailures, the endpoint is ejected, subject to
// EnforcingConsecutive5xx and MaxEjectionPercent, and the count restarts
// from zero whether it was ejected or not (as in Envoy). Failures reported
// while the endpoint is ejected are not counted (requests in flight when
// it was ejected, or picked because nothing else was left), and the count
// restarts when the ejection ends.
//
// The common path is atomic and lock-free: Success is one load (plus a
// store when it ends a run of failures), a failure below MaxFailures an
// addition and two loads. Only reaching MaxFailures takes the balancer's
// mutex, and reads the clock, as does a failure on an endpoint with an
// ejection deadline set. Endpoints not made by a Balancer (the
// per-snapshot Picker's, literals) ignore it.
func (e *Endpoint) Report(o Outcome) {
	l := e.live
	if l == nil {
		return
	}
	if o == Success {
		if l.failures.Load() != 0 {
			l.failures.Store(0)
		}
		return
	}
	b := l.b
	if b == nil {
		return
	}
	threshold := b.maxFailures.Load()
	if threshold == 0 {
		return
	}
	if u := l.until.Load(); u != 0 {
		if u > b.nanos() {
			return // ejected
		}
		if l.until.CompareAndSwap(u, 0) {
			l.failures.Store(0) // back: count afresh
		}
	}
	if l.failures.Add(1) >= threshold {
		b.eject(e.Address, l)
	}
}

// eject decides, under the mutex, whether the endpoint at addr, whose live
// state l reached MaxFailures, is ejected, and for how long; it calls the
// OnEject callback after releasing the mutex.
func (b *Balancer) eject(addr string, l *endpointState) {
	b.mu.Lock()
	p := b.outlier
	if p.maxFailures == 0 || l.failures.Load() < p.maxFailures {
		b.mu.Unlock() // off, or another goroutine decided for this streak
		return
	}
	l.failures.Store(0)
	if cur := b.live[addr]; cur == nil || cur.live != l {
		b.mu.Unlock() // no longer an endpoint of the balancer
		return
	}
	now := b.nanos()
	if l.until.Load() > now {
		b.mu.Unlock()
		return
	}
	// Envoy (1.22 to 1.25): allowed while the ejected share, before this
	// ejection, is below MaxEjectionPercent.
	ejected := 0
	for _, c := range b.live {
		if c.live.until.Load() > now {
			ejected++
		}
	}
	if 100*ejected >= int(p.maxPercent)*len(b.live) ||
		(p.enforcing < 100 && rand.Uint32N(100) >= p.enforcing) {
		b.mu.Unlock()
		return
	}
	// The multiplier decays by one per whole Interval spent back in
	// service since the last ejection ended, then grows by one (as long as
	// it has not passed the cap, as Envoy bounds it).
	if l.backoff > 0 && now > l.returnAt {
		l.backoff = max(l.backoff-(now-l.returnAt)/int64(p.interval), 0)
	}
	if time.Duration(l.backoff)*p.base < p.maxEjection+p.base {
		l.backoff++
	}
	d := min(time.Duration(l.backoff)*p.base, p.maxEjection)
	until := now + int64(d)
	l.until.Store(until)
	l.returnAt = until
	l.ejections.Add(1)
	f := b.onEject
	b.mu.Unlock()
	if f != nil {
		f(addr, d)
	}
}

// SetOutlier configures outlier detection for the balancer's endpoints,
// present and future; it starts off (MaxFailures 0). Calls are serialized
// with Update by the same mutex, and are cheap when c is unchanged.
// Values out of range are clamped: percentages to 100, durations to a
// year, zero or negative durations to their defaults.
//
// The settings apply to outcomes reported afterwards; ejections in force
// keep their deadlines. A change of MaxFailures restarts every endpoint's
// count of consecutive failures. Turning detection off un-ejects every
// endpoint and resets the multipliers of their ejection times (Ejections
// still counts past ejections).
func (b *Balancer) SetOutlier(c OutlierConfig) {
	p := c.params()
	b.mu.Lock()
	defer b.mu.Unlock()
	old := b.outlier
	if p == old {
		return
	}
	b.outlier = p
	b.maxFailures.Store(p.maxFailures)
	if p.maxFailures == old.maxFailures {
		return
	}
	for _, e := range b.live {
		l := e.live
		l.failures.Store(0)
		if p.maxFailures == 0 {
			l.until.Store(0)
			l.backoff, l.returnAt = 0, 0
		}
	}
}

// OnEject sets f, called once per ejection with the endpoint's address and
// the ejection's duration, for the outrider_outlier_ejections_total metric
// and a log line; nil removes it. Set it before the balancer is used, so
// that no ejection goes unreported. f is called on the goroutine calling
// DoneWith, after the balancer's mutex is released; it must not block.
func (b *Balancer) OnEject(f func(address string, d time.Duration)) {
	b.mu.Lock()
	b.onEject = f
	b.mu.Unlock()
}

// Ejected reports whether outlier detection has ejected e, and until when,
// for /clusters. While ejected, e is picked only when every other
// endpoint is ejected or tried. Safe from any goroutine; it reads the
// clock.
func (e *Endpoint) Ejected() (until time.Time, ok bool) {
	l := e.live
	if l == nil || l.b == nil {
		return time.Time{}, false
	}
	u := l.until.Load()
	if u == 0 || u <= l.b.nanos() {
		return time.Time{}, false
	}
	return l.b.epoch.Add(time.Duration(u)).Round(0), true
}

// Ejections is how many times outlier detection has ejected e since it
// joined the balancer's endpoints (it only grows), for /clusters.
func (e *Endpoint) Ejections() int {
	if e.live == nil {
		return 0
	}
	return int(e.live.ejections.Load())
}

package overload

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime/metrics"
	"sync/atomic"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/outrider-mesh/outrider/internal/confval"
	"github.com/outrider-mesh/outrider/internal/lograte"
)

// Defaults filled in by Config.WithDefaults for fields left zero.
const (
	// DefaultMaxRequests bounds the requests in flight through one
	// sidecar, every listener together.
	DefaultMaxRequests = 10000
	// DefaultHeapFallback is the memory budget when neither GOMEMLIMIT
	// nor a cgroup limit says otherwise (Envoy's example overload
	// configuration uses the same 2 GiB), cut to 90% of the host's memory.
	DefaultHeapFallback = 2 << 30
	// DefaultShedAt and DefaultRefuseAt are the fractions of the memory
	// budget at which requests are shed and connections refused.
	DefaultShedAt   = 0.95
	DefaultRefuseAt = 0.98
	// DefaultInterval is how often the memory in use is read.
	DefaultInterval = 100 * time.Millisecond
	// cgroupRatio is the share of a container's memory limit the budget
	// takes, leaving room for the runtime's own overhead and the kernel.
	cgroupRatio = 0.9
	// fdShare is the share of the file descriptor limit max_connections
	// takes by default: every accepted connection may need an upstream
	// one too, but most L7 connections share pooled upstreams.
	fdShare = 0.9
)

// Config is the overload section: the static file's top-level overload
// key, or run's -max-connections, -max-requests and -max-memory flags.
// Zero fields take their defaults; -1 turns a bound off.
type Config struct {
	// MaxConnections bounds the client connections open through the
	// sidecar, every listener together (mesh, application and ingress);
	// a connection beyond it is closed as soon as it is accepted.
	// Default: 90% of the process's file descriptor limit.
	MaxConnections int `yaml:"max_connections"`
	// MaxRequests bounds the HTTP requests in flight, every listener
	// together; a request beyond it is answered 503 (flag OM) at once.
	// Default 10000.
	MaxRequests int `yaml:"max_requests"`
	// MaxMemory is the memory budget: the Go runtime's memory in use (what it
	// holds, less free heap and garbage). Default: GOMEMLIMIT when set, else 90% of
	// the container's cgroup memory limit, else 2GiB (at most 90% of the
	// host's memory). Outrider also sets it as the runtime's soft memory
	// limit, so the garbage collector works harder before anything is
	// shed.
	MaxMemory confval.ByteSize `yaml:"max_memory"`
	// ShedAt is the fraction of MaxMemory from which new requests are
	// answered 503 and keep-alive connections are closed after their
	// current request. Default 0.95.
	ShedAt float64 `yaml:"shed_at"`
	// RefuseAt is the fraction of MaxMemory from which new connections
	// are refused as well. Default 0.98; not below ShedAt.
	RefuseAt float64 `yaml:"refuse_at"`
}

// Validate reports every bad field, with paths relative to Config.
func (c Config) Validate() error {
	var errs []error
	if c.MaxConnections < -1 {
		errs = append(errs, confval.Errorf("max_connections", "%d: want a positive number, or -1 for no limit", c.MaxConnections))
	}
	if c.MaxRequests < -1 {
		errs = append(errs, confval.Errorf("max_requests", "%d: want a positive number, or -1 for no limit", c.MaxRequests))
	}
	if c.MaxMemory < -1 {
		errs = append(errs, confval.Errorf("max_memory", "want a size, or -1 for no limit"))
	}
	for _, f := range []struct {
		name string
		v    float64
	}{{"shed_at", c.ShedAt}, {"refuse_at", c.RefuseAt}} {
		if f.v != 0 && (math.IsNaN(f.v) || f.v <= 0 || f.v > 1) {
			errs = append(errs, confval.Errorf(f.name, "%v: want a fraction above 0 and at most 1", f.v))
		}
	}
	if c.ShedAt > 0 && c.RefuseAt > 0 && c.RefuseAt < c.ShedAt {
		errs = append(errs, confval.Errorf("refuse_at", "%v is below shed_at %v: requests must be shed before connections are refused", c.RefuseAt, c.ShedAt))
	}
	return errors.Join(errs...)
}

// Budget is a Config with its defaults resolved, and where each came
// from, for /config_dump and the start-up log.
type Budget struct {
	MaxConnections int     `json:"max_connections"` // 0: no limit
	MaxRequests    int     `json:"max_requests"`    // 0: no limit
	MaxMemory      int64   `json:"max_memory"`      // bytes; 0: no limit
	MemorySource   string  `json:"memory_source"`   // config, GOMEMLIMIT, cgroup, default, off
	ShedAt         float64 `json:"shed_at"`
	RefuseAt       float64 `json:"refuse_at"`
}

// Resolve fills in the defaults from the environment: the file
// descriptor limit, GOMEMLIMIT (gomemlimit is its value as
// debug.SetMemoryLimit(-1) reports it, math.MaxInt64 when unset) and the
// cgroup or host memory.
func (c Config) Resolve(gomemlimit int64) Budget {
	b := Budget{ShedAt: c.ShedAt, RefuseAt: c.RefuseAt}
	if b.ShedAt == 0 {
		b.ShedAt = DefaultShedAt
	}
	if b.RefuseAt == 0 {
		b.RefuseAt = max(DefaultRefuseAt, b.ShedAt)
	}
	switch {
	case c.MaxConnections > 0:
		b.MaxConnections = c.MaxConnections
	case c.MaxConnections == 0:
		if n := fileLimit(); n > 0 {
			b.MaxConnections = max(1, int(float64(n)*fdShare))
		}
	}
	switch {
	case c.MaxRequests > 0:
		b.MaxRequests = c.MaxRequests
	case c.MaxRequests == 0:
		b.MaxRequests = DefaultMaxRequests
	}
	switch {
	case c.MaxMemory > 0:
		b.MaxMemory, b.MemorySource = int64(c.MaxMemory), "config"
	case c.MaxMemory < 0:
		b.MemorySource = "off"
	case gomemlimit > 0 && gomemlimit < math.MaxInt64:
		b.MaxMemory, b.MemorySource = gomemlimit, "GOMEMLIMIT"
	default:
		if n, err := memlimit.FromCgroup(); err == nil && n > 0 && n < math.MaxInt64 {
			b.MaxMemory, b.MemorySource = int64(float64(n)*cgroupRatio), "cgroup"
			break
		}
		b.MaxMemory, b.MemorySource = DefaultHeapFallback, "default"
		if n, err := memlimit.FromSystem(); err == nil && n > 0 {
			b.MaxMemory = min(b.MaxMemory, int64(float64(n)*cgroupRatio))
		}
	}
	return b
}

// The manager's states, from the memory reading.
const (
	stateNormal int32 = iota
	stateShed         // new requests answered 503, keep-alive off
	stateRefuse       // new connections refused too
)

// Manager enforces a Budget. AdmitConnection and AdmitRequest cost an
// atomic add and a load; Run samples the memory in use on its own
// goroutine. Safe for concurrent use. The zero value is not usable; a nil
// *Manager admits everything.
type Manager struct {
	budget Budget
	read   func() int64 // memory in use, bytes

	state           atomic.Int32
	memory          atomic.Int64
	conns, requests atomic.Int64

	refusedConns, refusedConnsMemory atomic.Int64
	shed, shedMemory                 atomic.Int64
	refusals                         lograte.Limiter
}

// Option configures New.
type Option func(*Manager)

// WithMemoryReader replaces the reading of the runtime's memory in use
// (tests drive the states with it).
func WithMemoryReader(f func() int64) Option { return func(m *Manager) { m.read = f } }

// New returns a manager for b; Run must run for the memory budget to
// apply (the connection and request bounds apply without it).
func New(b Budget, opts ...Option) *Manager {
	m := &Manager{budget: b, read: runtimeMemory}
	for _, o := range opts {
		o(m)
	}
	return m
}

// Budget returns what the manager enforces.
func (m *Manager) Budget() Budget { return m.budget }

// Run reads the memory in use every interval (DefaultInterval if <= 0)
// until ctx is done, moving between the states.
func (m *Manager) Run(ctx context.Context, interval time.Duration) {
	if m.budget.MaxMemory <= 0 {
		return
	}
	if interval <= 0 {
		interval = DefaultInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		m.Sample()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Sample reads the memory in use once and updates the state (Run calls
// it; tests call it to step).
func (m *Manager) Sample() {
	used := m.read()
	m.memory.Store(used)
	if m.budget.MaxMemory <= 0 {
		return
	}
	frac := float64(used) / float64(m.budget.MaxMemory)
	st := stateNormal
	switch {
	case frac >= m.budget.RefuseAt:
		st = stateRefuse
	case frac >= m.budget.ShedAt:
		st = stateShed
	}
	m.state.Store(st)
}

// Reason says why something was refused.
type Reason string

// The reasons, as metrics label them.
const (
	ReasonNone           Reason = ""
	ReasonMaxConnections Reason = "max_connections"
	ReasonMaxRequests    Reason = "max_requests"
	ReasonMemory         Reason = "memory"
)

// AdmitConnection counts a new client connection in, or refuses it. An
// admitted connection must call ConnectionDone once.
func (m *Manager) AdmitConnection() Reason {
	if m == nil {
		return ReasonNone
	}
	if m.state.Load() >= stateRefuse {
		m.refusedConnsMemory.Add(1)
		return ReasonMemory
	}
	if !take(&m.conns, m.budget.MaxConnections, &m.refusedConns) {
		return ReasonMaxConnections
	}
	return ReasonNone
}

// take counts one more in n unless that passes max (> 0), in which case
// it counts the refusal in refused instead and reports false.
func take(n *atomic.Int64, max int, refused *atomic.Int64) bool {
	if v := n.Add(1); max > 0 && v > int64(max) {
		n.Add(-1)
		refused.Add(1)
		return false
	}
	return true
}

// ConnectionDone releases an admitted connection.
func (m *Manager) ConnectionDone() {
	if m != nil {
		m.conns.Add(-1)
	}
}

// AdmitRequest counts a new request in, or sheds it. An admitted request
// must call RequestDone once.
func (m *Manager) AdmitRequest() Reason {
	if m == nil {
		return ReasonNone
	}
	if m.state.Load() >= stateShed {
		m.shedMemory.Add(1)
		return ReasonMemory
	}
	if !take(&m.requests, m.budget.MaxRequests, &m.shed) {
		return ReasonMaxRequests
	}
	return ReasonNone
}

// RequestDone releases an admitted request.
func (m *Manager) RequestDone() {
	if m != nil {
		m.requests.Add(-1)
	}
}

// LogRefusal reports whether the caller should log the refusal it just
// made: true at most once a second, so an overload does not flood the
// log with one line per refused connection or shed request.
func (m *Manager) LogRefusal() bool {
	_, ok := m.refusals.Allow()
	return ok
}

// KeepAlive reports whether a connection may stay open for another
// request: false while shedding, so clients reconnect (and may be
// refused) instead of holding connections the sidecar cannot serve.
func (m *Manager) KeepAlive() bool { return m == nil || m.state.Load() < stateShed }

// Status is the manager's state for /config_dump and tests.
type Status struct {
	Budget      Budget `json:"budget"`
	Memory      int64  `json:"memory"`
	State       string `json:"state"` // normal, shedding_requests, refusing_connections
	Connections int64  `json:"connections"`
	Requests    int64  `json:"requests"`
}

// Status returns the current state.
func (m *Manager) Status() Status {
	st := "normal"
	switch m.state.Load() {
	case stateShed:
		st = "shedding_requests"
	case stateRefuse:
		st = "refusing_connections"
	}
	return Status{Budget: m.budget, Memory: m.memory.Load(), State: st, Connections: m.conns.Load(), Requests: m.requests.Load()}
}

// Register adds the manager's collectors to reg; they read the counters
// when scraped, so the data path pays nothing for them.
func (m *Manager) Register(reg prometheus.Registerer) error {
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	cs := []prometheus.Collector{
		gauge("outrider_overload_memory_bytes", "Memory in use as the overload manager last read it: the Go runtime's, less free heap and garbage.",
			func() float64 { return float64(m.memory.Load()) }),
		gauge("outrider_overload_memory_budget_bytes", "The overload manager's memory budget (0: none).",
			func() float64 { return float64(m.budget.MaxMemory) }),
		gauge("outrider_overload_shedding", "1 while new requests are shed because memory is above shed_at of the budget.",
			func() float64 { return b2f(m.state.Load() >= stateShed) }),
		gauge("outrider_overload_refusing", "1 while new connections are refused because memory is above refuse_at of the budget.",
			func() float64 { return b2f(m.state.Load() >= stateRefuse) }),
		gauge("outrider_overload_connections", "Client connections counted against max_connections.",
			func() float64 { return float64(m.conns.Load()) }),
		gauge("outrider_overload_requests", "Requests in flight counted against max_requests.",
			func() float64 { return float64(m.requests.Load()) }),
	}
	refused := prometheus.NewDesc("outrider_overload_refused_connections_total", "Client connections closed at accept by the overload manager, by reason.", []string{"reason"}, nil)
	shed := prometheus.NewDesc("outrider_overload_shed_requests_total", "Requests answered 503 (flag OM) by the overload manager, by reason.", []string{"reason"}, nil)
	cs = append(cs, collectorFunc{descs: []*prometheus.Desc{refused, shed}, collect: func(ch chan<- prometheus.Metric) {
		ch <- prometheus.MustNewConstMetric(refused, prometheus.CounterValue, float64(m.refusedConns.Load()), string(ReasonMaxConnections))
		ch <- prometheus.MustNewConstMetric(refused, prometheus.CounterValue, float64(m.refusedConnsMemory.Load()), string(ReasonMemory))
		ch <- prometheus.MustNewConstMetric(shed, prometheus.CounterValue, float64(m.shed.Load()), string(ReasonMaxRequests))
		ch <- prometheus.MustNewConstMetric(shed, prometheus.CounterValue, float64(m.shedMemory.Load()), string(ReasonMemory))
	}})
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("overload: %w", err)
		}
	}
	return nil
}

type collectorFunc struct {
	descs   []*prometheus.Desc
	collect func(chan<- prometheus.Metric)
}

func (c collectorFunc) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c collectorFunc) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// runtimeMemory is the memory the Go runtime holds that a collection
// cannot give back: everything mapped and not returned to the OS, less
// the heap's free spans and its garbage (heap objects beyond the live
// heap the last collection marked). Under a soft memory limit the total
// hovers near the limit whenever garbage piles up, however small the live
// heap; this figure reaches the budget only when live data fills it.
func runtimeMemory() int64 {
	s := []metrics.Sample{
		{Name: "/memory/classes/total:bytes"},
		{Name: "/memory/classes/heap/released:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/gc/heap/live:bytes"},
	}
	metrics.Read(s)
	var v [5]int64
	for i := range s {
		if s[i].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		v[i] = int64(s[i].Value.Uint64())
	}
	total, released, free, objects, live := v[0], v[1], v[2], v[3], v[4]
	return total - released - free - objects + min(live, objects)
}

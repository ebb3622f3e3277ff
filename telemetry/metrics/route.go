package metrics

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Direction is the side of the sidecar a listener serves.
type Direction string

// Directions.
const (
	// Inbound: the public mTLS listener, in front of the local app.
	Inbound Direction = "inbound"
	// Outbound: a local upstream listener, towards another service.
	Outbound Direction = "outbound"
)

// LocalApp is the upstream label of inbound routes.
const LocalApp = "local_app"

type routeKey struct {
	dir      Direction
	upstream string
}

// Route returns the recorder of one listener: upstream is the destination
// service name (outbound) or LocalApp (inbound). A direction other than
// Inbound and Outbound is labelled "unknown". The first MaxUpstreams
// upstreams of a direction get a Route of their own; later ones share the
// OverflowUpstream route.
//
// Safe for concurrent use. Repeated calls return the same *Route after a
// sync.Map lookup; callers on the hot path keep the result.
func (m *Metrics) Route(dir Direction, upstream string) *Route {
	if dir != Inbound && dir != Outbound {
		dir = "unknown"
	}
	k := routeKey{dir, upstream}
	if r, ok := m.routes.Load(k); ok {
		return r.(*Route)
	}
	m.routesMu.Lock()
	defer m.routesMu.Unlock()
	if r, ok := m.routes.Load(k); ok {
		return r.(*Route)
	}
	if m.routesPer[dir] >= MaxUpstreams {
		k.upstream = OverflowUpstream
		if r, ok := m.routes.Load(k); ok {
			return r.(*Route)
		}
	} else {
		m.routesPer[dir]++
	}
	r := m.newRoute(k)
	m.routes.Store(k, r)
	return r
}

// Route records the traffic of one (direction, upstream). All methods are
// safe for concurrent use, never block and do not allocate once the label
// children they use exist: a request costs a few atomic operations.
//
// The HTTP and L4 series of a route are created on first use, so a route
// that only ever carries TCP exposes no HTTP series and vice versa.
type Route struct {
	m             *Metrics
	dir, upstream string

	retries    prometheus.Counter
	connActive prometheus.Gauge
	connTotal  prometheus.Counter

	http atomic.Pointer[httpSeries]
	tcp  atomic.Pointer[tcpSeries]
}

// httpSeries are a route's L7 children. requests is indexed by
// requestIndex and filled on first use of each combination, so only the
// combinations that occur are exposed.
type httpSeries struct {
	duration, upstream      prometheus.Observer
	requestBytes, respBytes prometheus.Counter
	inFlight                prometheus.Gauge
	requests                [numMethods * numStatuses * numFlags]atomic.Pointer[counterRef]
}

type counterRef struct{ c prometheus.Counter }

type tcpSeries struct {
	received, sent prometheus.Counter
	duration       prometheus.Observer
}

func (m *Metrics) newRoute(k routeKey) *Route {
	r := &Route{
		m:        m,
		dir:      string(k.dir),
		upstream: labelValue(k.upstream),
	}
	r.retries = m.retries.WithLabelValues(r.dir, r.upstream)
	r.connActive = m.connActive.WithLabelValues(r.dir, r.upstream)
	r.connTotal = m.connTotal.WithLabelValues(r.dir, r.upstream)
	return r
}

func (r *Route) httpSeries() *httpSeries {
	if h := r.http.Load(); h != nil {
		return h
	}
	m := r.m
	h := &httpSeries{
		duration:     m.duration.WithLabelValues(r.dir, r.upstream),
		upstream:     m.upstreamDuration.WithLabelValues(r.dir, r.upstream),
		requestBytes: m.requestBytes.WithLabelValues(r.dir, r.upstream),
		respBytes:    m.responseBytes.WithLabelValues(r.dir, r.upstream),
		inFlight:     m.inFlight.WithLabelValues(r.dir, r.upstream),
	}
	if !r.http.CompareAndSwap(nil, h) {
		return r.http.Load() // another goroutine won; the children are the same
	}
	return h
}

func (r *Route) tcpSeries() *tcpSeries {
	if t := r.tcp.Load(); t != nil {
		return t
	}
	m := r.m
	t := &tcpSeries{
		received: m.tcpReceived.WithLabelValues(r.dir, r.upstream),
		sent:     m.tcpSent.WithLabelValues(r.dir, r.upstream),
		duration: m.tcpDuration.WithLabelValues(r.dir, r.upstream),
	}
	if !r.tcp.CompareAndSwap(nil, t) {
		return r.tcp.Load()
	}
	return t
}

// requestCounter returns the requests_total child of one class combination.
func (r *Route) requestCounter(h *httpSeries, method, status, flag int) prometheus.Counter {
	slot := &h.requests[(method*numStatuses+status)*numFlags+flag]
	if ref := slot.Load(); ref != nil {
		return ref.c
	}
	c := r.m.requests.WithLabelValues(r.dir, r.upstream, methods[method], statuses[status], flags[flag])
	slot.CompareAndSwap(nil, &counterRef{c}) // a loser stored the same child
	return c
}

// Request records one finished HTTP request.
//
// method is the request method, classed by MethodClass (the string is not
// retained, so it may alias a reused buffer). status is the status sent
// downstream, 0 when none was (StatusClass). flag is the request's
// Envoy-style response flag, "" for none (FlagClass). rxBytes and txBytes
// are the body bytes received from and sent to the downstream. total is
// the request's duration; upstream is the time from the first upstream
// attempt to the response head, negative when there was no upstream
// response.
func (r *Route) Request(method string, status int, flag string, rxBytes, txBytes int64, total, upstream time.Duration) {
	h := r.httpSeries()
	r.requestCounter(h, methodIndex(method), statusIndex(status), flagIndex(flag)).Inc()
	h.duration.Observe(total.Seconds())
	if upstream >= 0 {
		h.upstream.Observe(upstream.Seconds())
	}
	if rxBytes > 0 {
		h.requestBytes.Add(float64(rxBytes))
	}
	if txBytes > 0 {
		h.respBytes.Add(float64(txBytes))
	}
}

// InFlight adds delta to the route's in-flight requests: +1 when a request
// starts being proxied, -1 when it is done.
func (r *Route) InFlight(delta int64) {
	r.httpSeries().inFlight.Add(float64(delta))
}

// Retry counts one upstream attempt after the first, whether a retry or
// an attempt on another endpoint.
func (r *Route) Retry() { r.retries.Inc() }

// Connection adds delta to the route's open downstream connections (L4
// and L7): +1 on accept, which also counts a connection in
// outrider_connections_total, and -1 on close.
func (r *Route) Connection(delta int64) {
	r.connActive.Add(float64(delta))
	if delta > 0 {
		r.connTotal.Add(float64(delta))
	}
}

// ConnectionClosed records a closed L4 connection: bytes received from and
// sent to the downstream, and how long it was open. It does not change the
// active connections gauge; call Connection(-1) for that.
func (r *Route) ConnectionClosed(rxBytes, txBytes int64, d time.Duration) {
	t := r.tcpSeries()
	if rxBytes > 0 {
		t.received.Add(float64(rxBytes))
	}
	if txBytes > 0 {
		t.sent.Add(float64(txBytes))
	}
	t.duration.Observe(d.Seconds())
}

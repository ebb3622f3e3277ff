package sidecar

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/outrider-mesh/outrider/discovery"
	"github.com/outrider-mesh/outrider/mtls"
	"github.com/outrider-mesh/outrider/sidecar/balance"
	"github.com/outrider-mesh/outrider/sidecar/http1"
	"github.com/outrider-mesh/outrider/telemetry/metrics"
)

// maxDialAttempts bounds how many distinct endpoints one connection tries.
const maxDialAttempts = 3

// outbound is one upstream listener: plaintext from the application, mTLS
// to endpoints of the destination. A tcp destination gets one endpoint per
// connection; an HTTP destination gets one per request, over pooled
// connections (HTTP/1.1 for http, HTTP/2 for http2 and grpc, and HTTP/2
// whenever the application itself speaks HTTP/2).
type outbound struct {
	ln     net.Listener
	dialer *mtls.Dialer // L4: one stream per connection
	log    *slog.Logger
	stat   *counters
	loops  *loops
	conns  *tracker

	// cfg is the listener's configuration; fields other than the key
	// (protocol, timeouts) change in place and apply to new connections.
	cfg atomic.Pointer[Upstream]

	bal *balance.Balancer
	// mu serializes balancer updates from the endpoint and discovery-chain
	// watches; the snapshot and load-balancer config are the last seen.
	mu   sync.Mutex
	snap *discovery.Snapshot
	lb   balance.Config
	seen atomic.Bool // a first snapshot arrived

	// HTTP/1.1 pools per endpoint, and the HTTP/2 transport.
	h1       *endpointPools
	h2       *http.Transport
	h2Server *h2Server
	ids      atomic.Pointer[map[string]spiffeid.ID] // endpoint address -> identity, for the HTTP/2 dialer

	tel   *telemetry
	route *metrics.Route
	brk   *breaker // the upstream's Limits
}

func newOutbound(u Upstream, ln net.Listener, src mtls.Source, s *Sidecar) *outbound {
	var common []mtls.DialerOption
	if s.opts.PostQuantum {
		common = append(common, mtls.WithCurves(mtls.PostQuantumCurves))
	}
	// L4 streams may be handed to the event loop, which needs the raw
	// connection under TLS to be a loopConn.
	l4 := append([]mtls.DialerOption{mtls.WithConnWrapper(func(c net.Conn) net.Conn { return newLoopConn(c) })}, common...)
	o := &outbound{
		ln:     ln,
		dialer: mtls.NewDialer(src, u.ConnectTimeout, l4...),
		log:    s.log,
		stat:   &s.stat,
		loops:  s.loops,
		conns:  s.conns,
		bal:    balance.NewBalancer(balance.RoundRobin),
		tel:    s.tel,
		route:  s.tel.metrics.Route(metrics.Outbound, u.DestinationName),
		brk:    newBreaker(u.Limits),
	}
	o.cfg.Store(&u)
	o.bal.OnEject(func(addr string, d time.Duration) {
		o.tel.metrics.OutlierEjection(u.DestinationName)
		o.log.Warn("endpoint ejected by outlier detection", "upstream", u.DestinationName, "endpoint", addr, "for", d)
	})
	o.bal.SetOutlier(u.Outlier)
	empty := map[string]spiffeid.ID{}
	o.ids.Store(&empty)
	// Pooled L7 connections are long-lived: no session resumption.
	h1Opts := append([]mtls.DialerOption{mtls.WithALPN("http/1.1"), mtls.WithoutResumption()}, common...)
	h1Dialer := mtls.NewDialer(src, u.ConnectTimeout, h1Opts...)
	o.h1 = &endpointPools{released: o.brk.wake}
	o.h1.dial = func(ctx context.Context, ep discovery.Endpoint) (net.Conn, error) {
		limited := o.brk.limits.Load().MaxConnections > 0
		if limited {
			// At MaxConnections: close an idle connection to another
			// endpoint, else wait (bounded) for one to be released.
			wctx, cancel := context.WithTimeout(ctx, o.cfg.Load().ConnectTimeout)
			err := o.brk.conn(wctx, true, o.h1.evictIdle)
			cancel()
			if err != nil {
				return nil, err
			}
		}
		c, err := h1Dialer.Dial(ctx, ep.Address, ep.Identity)
		if err != nil {
			if limited {
				o.brk.connDone()
			}
			return nil, err
		}
		if limited {
			return &countedConn{Conn: c, b: o.brk}, nil
		}
		return c, nil
	}
	h2Opts := append([]mtls.DialerOption{mtls.WithALPN("h2"), mtls.WithoutResumption()}, common...)
	h2Dialer := mtls.NewDialer(src, u.ConnectTimeout, h2Opts...)
	var protos http.Protocols
	protos.SetHTTP2(true)
	o.h2 = &http.Transport{
		Protocols:          &protos,
		DisableCompression: true,
		MaxIdleConns:       1024,
		IdleConnTimeout:    poolIdleTimeout,
		HTTP2:              &http.HTTP2Config{MaxConcurrentStreams: 1000},
		DialTLSContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			id, ok := (*o.ids.Load())[addr]
			if !ok {
				return nil, &dialError{errors.New("sidecar: endpoint " + addr + " left discovery")}
			}
			c, err := h2Dialer.Dial(ctx, addr, id)
			if err != nil {
				return nil, &dialError{err}
			}
			if p := c.ConnectionState().NegotiatedProtocol; p != "h2" {
				c.Close()
				return nil, &dialError{errors.New("sidecar: endpoint " + addr + " did not negotiate h2 (got " + p + ")")}
			}
			return c, nil
		},
	}
	o.h2Server = newH2Server(reverseProxy(&meshTransport{o: o}, u.DestinationName, false, o.stat, o.log, o.tel, o.route), u.MaxHeaderBytes, o.log)
	return o
}

// name is the destination, for logs.
func (o *outbound) name() string { return o.cfg.Load().DestinationName }

// update publishes a new snapshot; called on the endpoint watch goroutine.
func (o *outbound) update(snap *discovery.Snapshot) {
	o.mu.Lock()
	o.snap = snap
	o.rebalanceLocked()
	o.mu.Unlock()
	ids := make(map[string]spiffeid.ID, len(snap.Endpoints))
	keep := make(map[poolKey]bool, len(snap.Endpoints))
	for _, e := range snap.Endpoints {
		ids[e.Address] = e.Identity
		keep[poolKey{e.Address, e.Identity}] = true
	}
	o.ids.Store(&ids)
	o.h1.retain(keep)
	o.seen.Store(true)
	o.log.Info("upstream endpoints updated", "upstream", o.name(), "endpoints", len(snap.Endpoints), "index", snap.Index)
}

// setLoadBalancer applies a service-resolver LoadBalancer; called on the
// discovery-chain watch goroutine.
func (o *outbound) setLoadBalancer(cfg balance.Config) {
	o.mu.Lock()
	o.lb = cfg
	o.rebalanceLocked()
	o.mu.Unlock()
}

// rebalanceLocked rebuilds the balancer from the latest snapshot, load
// balancer config and protocol (least request is the L7 default, round
// robin the L4 one, as in Envoy).
func (o *outbound) rebalanceLocked() {
	cfg := o.lb
	if cfg.Policy == "" {
		cfg.Policy = balance.RoundRobin
		if o.cfg.Load().Protocol.L7() {
			cfg.Policy = balance.LeastRequest
		}
	}
	o.bal.Update(o.snap, cfg)
}

// setConfig applies in-place changes to the listener's configuration.
func (o *outbound) setConfig(u Upstream) {
	prev := o.cfg.Swap(&u)
	if !reflect.DeepEqual(prev.Outlier, u.Outlier) {
		o.bal.SetOutlier(u.Outlier)
		o.log.Info("upstream passive health check changed", "upstream", u.DestinationName, "max_failures", u.Outlier.MaxFailures)
	}
	if prev.Limits != u.Limits {
		o.brk.set(u.Limits)
		o.log.Info("upstream limits changed", "upstream", u.DestinationName, "max_connections", u.Limits.MaxConnections,
			"max_pending_requests", u.Limits.MaxPendingRequests, "max_concurrent_requests", u.Limits.MaxConcurrentRequests)
	}
	if prev.Protocol != u.Protocol {
		o.log.Info("upstream protocol changed; applies to new connections", "upstream", u.DestinationName, "was", prev.Protocol, "now", u.Protocol)
		o.mu.Lock()
		o.rebalanceLocked()
		o.mu.Unlock()
	}
}

// close releases pooled connections once the listener is closed.
func (o *outbound) close() {
	o.h2Server.shutdown()
	o.h1.closeAll()
	o.h2.CloseIdleConnections()
}

func (o *outbound) handle(c net.Conn) {
	cfg := o.cfg.Load()
	if !cfg.Protocol.L7() {
		if !o.seen.Load() {
			o.stat.upstreamFailures.Add(1)
			o.log.Error("no endpoints discovered yet; closing connection", "upstream", cfg.DestinationName)
			return
		}
		o.handleL4(c, cfg)
		return
	}
	o.route.Connection(1)
	defer o.route.Connection(-1)
	br := getReader(c)
	c.SetReadDeadline(time.Now().Add(clientIdleTimeout))
	first, err := br.Peek(3)
	if err != nil {
		putReader(br)
		return
	}
	if cfg.Protocol != HTTP || string(first) == "PRI" {
		// The HTTP server owns br from here on; it is not pooled.
		c.SetReadDeadline(time.Time{})
		o.h2Server.serveConn(&bufferedConn{Conn: c, r: br}, connInfo{src: remoteIP(c)})
		return
	}
	p := &h1Proxy{target: o, log: o.log, stat: o.stat, maxHeaderBytes: cfg.MaxHeaderBytes, tel: o.tel, route: o.route, brk: o.brk}
	p.serve(c, br, o.conns, c)
	putReader(br)
}

// remoteIP is c's peer address, IPv4-mapped addresses unmapped.
func remoteIP(c net.Conn) netip.Addr {
	switch a := c.RemoteAddr().(type) {
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap()
	case nil:
		return netip.Addr{}
	}
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// acquire implements h1Target: pick an endpoint for the request, then a
// pooled connection to it.
func (o *outbound) acquire(ctx context.Context, req *http1.RequestHead, src netip.Addr, tried []string) (*upConn, *balance.Endpoint, *balance.SetCookie, error) {
	var hash uint64
	var hashed bool
	var cookie *balance.SetCookie
	if hp := o.bal.Config().HashPolicies; len(hp) > 0 {
		hash, hashed, cookie = balance.Hash(hp, requestHash{req: req, src: src})
	}
	ep, err := o.bal.Pick(hash, hashed, tried)
	if err != nil {
		return nil, nil, nil, err
	}
	uc, err := o.h1.get(ep.Endpoint).get(ctx)
	if err != nil {
		return nil, ep, nil, err
	}
	return uc, ep, cookie, nil
}

func (o *outbound) handleL4(c net.Conn, cfg *Upstream) {
	start := time.Now()
	o.route.Connection(1)
	defer o.route.Connection(-1)
	var span trace.Span
	if o.tel.tracer != nil {
		_, span = o.tel.tracer.Start(context.Background(), "tcp "+cfg.DestinationName, trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(attribute.String("outrider.upstream", cfg.DestinationName), attribute.String("client.address", c.RemoteAddr().String())))
	}
	if err := o.brk.conn(context.Background(), false, nil); err != nil {
		o.log.Warn("upstream max_connections reached; closing connection", "upstream", cfg.DestinationName,
			"max_connections", o.brk.limits.Load().MaxConnections)
		o.tel.connectionDone(span, "outbound", cfg.DestinationName, "", c, start, 0, 0, "UO", "", err)
		return
	}
	defer o.brk.connDone()
	tc, ep, err := o.dial()
	if err != nil {
		o.stat.upstreamFailures.Add(1)
		o.log.Error("upstream unavailable; closing connection", "upstream", cfg.DestinationName, "error", err)
		flag := "UF"
		if errors.Is(err, balance.ErrNoEndpoint) {
			flag = "UH"
		}
		o.tel.connectionDone(span, "outbound", cfg.DestinationName, "", c, start, 0, 0, flag, "", err)
		return
	}
	defer tc.Close()
	defer ep.DoneWith(balance.Success)
	if span != nil {
		span.SetAttributes(attribute.String("network.peer.address", ep.Address), attribute.String("outrider.endpoint.spiffe_id", ep.Identity.String()))
	}
	o.stat.active.Add(1)
	recv, sent, err := forward(o.loops, tc, tc.NetConn().(*loopConn), c, o.conns, c)
	o.stat.active.Add(-1)
	if err != nil {
		o.log.Debug("outbound connection aborted", "upstream", cfg.DestinationName, "endpoint", ep.Address, "reason", err)
	}
	o.stat.connections.Add(1)
	o.route.ConnectionClosed(sent, recv, time.Since(start))
	o.tel.connectionDone(span, "outbound", cfg.DestinationName, "", c, start, sent, recv, "", ep.Address, nil)
	if o.log.Enabled(context.Background(), slog.LevelDebug) {
		o.log.Debug("outbound connection closed", "upstream", cfg.DestinationName, "endpoint", ep.Address,
			"bytes_out", sent, "bytes_in", recv, "duration", time.Since(start))
	}
}

// dial tries up to maxDialAttempts distinct endpoints, in balancer order.
func (o *outbound) dial() (*tls.Conn, *balance.Endpoint, error) {
	var errs []error
	var tried []string
	for range maxDialAttempts {
		ep, err := o.bal.Pick(0, false, tried)
		if err != nil {
			break
		}
		tc, err := o.dialer.Dial(context.Background(), ep.Address, ep.Identity)
		if err == nil {
			return tc, ep, nil
		}
		ep.DoneWith(balance.LocalFailure) // at L4 connect failures count (outlier detection)
		o.log.Warn("upstream endpoint failed; trying another", "upstream", o.name(), "endpoint", ep.Address, "error", err)
		errs = append(errs, err)
		tried = append(tried, ep.Address)
	}
	if len(errs) == 0 {
		return nil, nil, balance.ErrNoEndpoint
	}
	return nil, nil, errors.Join(errs...)
}

// meshTransport balances each HTTP/2 request over the destination's
// endpoints: it picks one (hash policies included), sends the request on
// the pooled HTTP/2 connection to it, and tries another endpoint when the
// connection cannot be made (nothing was sent yet then).
type meshTransport struct{ o *outbound }

func (m *meshTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	o := m.o
	rec := h2RecordFrom(r.Context())
	if rec == nil {
		rec = &h2Record{}
	}
	var hash uint64
	var hashed bool
	if hp := o.bal.Config().HashPolicies; len(hp) > 0 {
		hash, hashed, rec.cookie = balance.Hash(hp, httpRequestHash{r: r, src: connInfoFrom(r.Context()).src})
	}
	if !o.brk.request() {
		return nil, errOverflow
	}
	admitted := true
	defer func() {
		if admitted {
			o.brk.requestDone()
		}
	}()
	var tried []string
	var lastErr error
	for attempt := range maxPickAttempts {
		ep, err := o.bal.Pick(hash, hashed, tried)
		if err != nil {
			if lastErr != nil {
				return nil, lastErr
			}
			return nil, err
		}
		rec.attempts++
		rec.endpoint = ep.Address
		if attempt > 0 {
			o.route.Retry()
		}
		var span trace.Span
		if rec.parent != nil {
			span = o.tel.startClientSpan(rec.parent, propagation.HeaderCarrier(r.Header), r.Method, func() []attribute.KeyValue {
				return clientAttrs(r.Method, r.URL.Path, o.name(), ep.Address, ep.Identity.String(), attempt+1)
			})
		}
		out := *r
		u := *r.URL
		u.Scheme, u.Host = "https", ep.Address
		out.URL = &u
		if r.Body != nil && r.Body != http.NoBody {
			// The transport closes the body it was given, also when the dial
			// fails; the next endpoint still needs it (nothing was read:
			// the body is read only once a stream is open). The server
			// closes the real body when the handler returns.
			out.Body = io.NopCloser(r.Body)
		}
		sent := time.Now()
		resp, err := o.h2.RoundTrip(&out)
		rec.upstreamDur = time.Since(sent)
		if err != nil {
			if r.Context().Err() != nil {
				ep.Done() // the client went away: nothing learnt of the endpoint
			} else {
				ep.DoneWith(balance.LocalFailure)
			}
			var de *dialError
			if errors.As(err, &de) {
				if span != nil {
					endSpan(span, 0, "UF", err)
				}
				o.log.Warn("upstream endpoint failed; trying another", "upstream", o.name(), "endpoint", ep.Address, "error", err)
				tried = append(tried, ep.Address)
				lastErr = err
				continue
			}
			if span != nil {
				endSpan(span, 0, "UC", err)
			}
			return nil, err
		}
		status := resp.StatusCode
		// The status goes to outlier detection now, with the head (as
		// Envoy counts it), not when the body has been relayed: the next
		// request picked already knows of a failure.
		ep.Report(balance.OutcomeOf(status))
		done := func() {
			if span != nil {
				endSpan(span, status, "", nil)
			}
			ep.Done()
			o.brk.requestDone() // the request ends with its body
		}
		admitted = false
		resp.Body = &doneBody{ReadCloser: resp.Body, done: done}
		return resp, nil
	}
	return nil, lastErr
}

// doneBody calls done once, when the body is closed.
type doneBody struct {
	io.ReadCloser
	once sync.Once
	done func()
}

func (b *doneBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.done)
	return err
}

package sidecar

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/outrider-mesh/outrider/discovery"
	"github.com/outrider-mesh/outrider/discovery/consul"
	"github.com/outrider-mesh/outrider/mtls"
	"github.com/outrider-mesh/outrider/sidecar/balance"
	"github.com/outrider-mesh/outrider/sidecar/overload"
	"github.com/outrider-mesh/outrider/sidecar/route"
	"github.com/outrider-mesh/outrider/telemetry/metrics"
	"github.com/outrider-mesh/outrider/telemetry/tracing"
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
	// overload admits each request (nil: all).
	overload *overload.Manager

	// cfg is the listener's configuration; fields other than the key
	// (protocol, timeouts) change in place and apply to new connections.
	cfg atomic.Pointer[Upstream]

	// routes is the compiled discovery chain and its clusters; chainMu
	// serializes chain updates, epMu the recomputation of what the
	// clusters' endpoints share (ids, pools).
	routes  atomic.Pointer[routing]
	chainMu sync.Mutex
	epMu    sync.Mutex
	// watchCtx and newWatch start the endpoint watch of a cluster the
	// chain adds (nil newWatch: static endpoints, no chain).
	watchCtx context.Context
	newWatch func(*cluster) *consul.Watch[*discovery.Snapshot]

	// probeH1 and probeH2 dial for active health checks (ALPN http/1.1
	// and h2, no session resumption).
	probeH1, probeH2 *mtls.Dialer

	// HTTP/1.1 pools per endpoint, and the HTTP/2 transport.
	h1       *endpointPools
	h2       *http.Transport
	h2Server *h2Server
	ids      atomic.Pointer[map[string]spiffeid.ID] // endpoint address -> identity, for the HTTP/2 dialer

	tel   *telemetry
	route *metrics.Route
	brk   *breaker // the upstream's Limits
	// budget bounds the retries routes ask for.
	budget *retryBudget
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
		ln:       ln,
		dialer:   mtls.NewDialer(src, u.ConnectTimeout, l4...),
		log:      s.log,
		stat:     &s.stat,
		loops:    s.loops,
		conns:    s.conns,
		overload: s.overload,
		tel:      s.tel,
		route:    s.tel.metrics.Route(metrics.Outbound, u.DestinationName),
		brk:      newBreaker(u.Limits),
		budget:   newRetryBudget(u.RetryBudget),
	}
	o.cfg.Store(&u)
	// Pooled L7 connections are long-lived: no session resumption.
	h1Opts := append([]mtls.DialerOption{mtls.WithALPN("http/1.1"), mtls.WithoutResumption()}, common...)
	h1Dialer := mtls.NewDialer(src, u.ConnectTimeout, h1Opts...)
	h2Opts := append([]mtls.DialerOption{mtls.WithALPN("h2"), mtls.WithoutResumption()}, common...)
	h2Dialer := mtls.NewDialer(src, u.ConnectTimeout, h2Opts...)
	o.probeH1, o.probeH2 = h1Dialer, h2Dialer
	o.routes.Store(defaultRouting(newCluster(o, u.DestinationName, consul.Target{Service: u.DestinationName, Datacenter: u.Datacenter})))
	empty := map[string]spiffeid.ID{}
	o.ids.Store(&empty)
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
	var protos http.Protocols
	protos.SetHTTP2(true)
	o.h2 = &http.Transport{
		Protocols:          &protos,
		DisableCompression: true,
		MaxIdleConns:       1024,
		IdleConnTimeout:    poolIdleTimeout,
		HTTP2:              &http.HTTP2Config{MaxConcurrentStreams: 1000},
		DialTLSContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			if t, ok := ctx.Value(dialTimeoutKey{}).(time.Duration); ok {
				// The cluster's ConnectTimeout (service-resolver).
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, t)
				defer cancel()
			}
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
	o.h2Server = newH2Server(reverseProxy(&meshTransport{o: o}, u.DestinationName, false, o.stat, o.log, o.tel, o.route, nil), h2ServerConfig{
		maxHeaderBytes: u.MaxHeaderBytes, maxHeaders: u.MaxHeaders, idle: u.IdleTimeout, streams: u.MaxConcurrentStreams,
		streamWindow: u.InitialStreamWindowSize, connWindow: u.InitialConnectionWindowSize,
		overload: s.overload, log: o.log, abuse: abuseReporter(o.tel, o.log, u.DestinationName)})
	return o
}

// name is the destination, for logs.
func (o *outbound) name() string { return o.cfg.Load().DestinationName }

// def is the upstream's default cluster: the destination service's
// instances, with no subset.
func (o *outbound) def() *cluster { return o.routes.Load().def }

// update publishes a new snapshot of the default cluster; called on its
// endpoint watch goroutine (or once, for static endpoints).
func (o *outbound) update(snap *discovery.Snapshot) { o.updateCluster(o.def(), snap) }

// setLoadBalancer applies load-balancer settings to the default cluster
// (static configuration).
func (o *outbound) setLoadBalancer(cfg balance.Config) {
	c := o.def()
	c.mu.Lock()
	c.lb = cfg
	c.rebalanceLocked(o.cfg.Load().Protocol.L7())
	c.mu.Unlock()
}

// setConfig applies in-place changes to the listener's configuration.
func (o *outbound) setConfig(u Upstream) {
	prev := o.cfg.Swap(&u)
	if !reflect.DeepEqual(prev.Outlier, u.Outlier) {
		o.eachCluster(func(c *cluster) { c.bal.SetOutlier(u.Outlier) })
		o.log.Info("upstream passive health check changed", "upstream", u.DestinationName, "max_failures", u.Outlier.MaxFailures)
	}
	if prev.RetryBudget != u.RetryBudget {
		o.budget.set(u.RetryBudget)
		o.log.Info("upstream retry budget changed", "upstream", u.DestinationName,
			"budget_percent", u.RetryBudget.Percent, "min_retry_concurrency", u.RetryBudget.MinRetries)
	}
	if prev.Limits != u.Limits {
		o.brk.set(u.Limits)
		o.log.Info("upstream limits changed", "upstream", u.DestinationName, "max_connections", u.Limits.MaxConnections,
			"max_pending_requests", u.Limits.MaxPendingRequests, "max_concurrent_requests", u.Limits.MaxConcurrentRequests)
	}
	if !prev.HealthCheck.Equal(u.HealthCheck) || (u.HealthCheck.Enabled() && prev.Protocol != u.Protocol) {
		// The protocol decides the probes' transport.
		o.eachCluster(o.restartHealth)
		o.log.Info("upstream active health check changed", "upstream", u.DestinationName, "type", string(u.HealthCheck.Type),
			"interval", u.HealthCheck.Interval)
	}
	if prev.Protocol != u.Protocol {
		o.log.Info("upstream protocol changed; applies to new connections", "upstream", u.DestinationName, "was", prev.Protocol, "now", u.Protocol)
		o.eachCluster(func(c *cluster) {
			c.mu.Lock()
			c.rebalanceLocked(u.Protocol.L7())
			c.mu.Unlock()
		})
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
		if !o.def().seen.Load() {
			o.stat.upstreamFailures.Add(1)
			o.log.Error("no endpoints discovered yet; closing connection", "upstream", cfg.DestinationName)
			return
		}
		o.handleL4(c, cfg)
		return
	}
	o.route.Connection(1)
	defer o.route.Connection(-1)
	ir := &idleReader{c: c}
	br := getReader(ir)
	c.SetReadDeadline(time.Now().Add(cmp.Or(cfg.IdleTimeout, clientIdleTimeout)))
	first, err := br.Peek(3)
	if err != nil {
		putReader(br)
		return
	}
	if cfg.Protocol != HTTP || string(first) == "PRI" {
		// The HTTP server owns br from here on; it is not pooled.
		c.SetReadDeadline(time.Time{})
		o.h2Server.serveConn(&bufferedConn{Conn: c, r: br}, connInfo{src: remoteIP(c), bodyIdle: cfg.BodyIdleTimeout})
		return
	}
	p := &h1Proxy{target: o, retryBudget: o.budget, log: o.log, stat: o.stat, maxHeaderBytes: cfg.MaxHeaderBytes, maxHeaders: cfg.MaxHeaders, tel: o.tel, route: o.route, brk: o.brk, overload: o.overload,
		lim: cfg.HTTPLimits}
	p.serve(c, br, ir, o.conns, c) // serve puts br back
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

// plan implements h1Target: the discovery chain's route and split for the
// request, whose target and headers it rewrites as they say, and the
// request's hash for the chosen clusters' hash policies.
func (o *outbound) plan(hc *h1Conn) {
	req, d := &hc.req, &hc.dest
	d.reset()
	rg := o.routes.Load()
	if rg.table == nil {
		d.cs = rg.defOnly
	} else {
		start, end, ok := splitTarget(req.Target)
		path, query := req.Target[start:end], req.Target[end:] // absolute form too: route on the path
		if ok && len(path) == 0 {
			path = rootPath // "http://web": the path is "/"
		}
		hc.routeReq = route.Request{Method: unsafeString(req.Method), Path: unsafeString(path), RawQuery: unsafeString(query),
			Header: h1Headers{&req.Header}}
		rg.choose(d, &hc.routeReq)
		hc.routeReq = route.Request{}
		if d.rt != nil {
			if np := d.rt.Rewrite(unsafeString(path)); np != unsafeString(path) {
				hc.targetBuf = append(append(append(hc.targetBuf[:0], req.Target[:start]...), np...), query...)
				req.Target = hc.targetBuf
			}
			d.rt.ApplyRequest(d.sp, &req.Header)
		}
	}
	if hp := d.cs[0].bal.Config().HashPolicies; len(hp) > 0 {
		d.hash, d.hashed, d.cookie = balance.Hash(hp, requestHash{req: req, src: hc.src})
	}
}

// acquire implements h1Target: pick an endpoint of the planned clusters,
// then a pooled connection to it.
func (o *outbound) acquire(ctx context.Context, d *dest, tried []string) (*upConn, *balance.Endpoint, error) {
	c, ep, err := pick(d.cs, d.hash, d.hashed, tried)
	if err != nil {
		return nil, nil, err
	}
	uc, err := o.h1.get(ep.Endpoint).get(ctx, time.Duration(c.connectTimeout.Load()))
	if err != nil {
		return nil, ep, err
	}
	return uc, ep, nil
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
		tracing.SetAttributes(span, attribute.String("network.peer.address", ep.Address), attribute.String("outrider.endpoint.spiffe_id", ep.Identity.String()))
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
	cs := o.routes.Load().l4()
	var errs []error
	var tried []string
	for range maxDialAttempts {
		c, ep, err := pick(cs, 0, false, tried)
		if err != nil {
			break
		}
		ctx, cancel := context.Background(), context.CancelFunc(func() {})
		if t := c.connectTimeout.Load(); t > 0 {
			ctx, cancel = context.WithTimeout(ctx, time.Duration(t))
		}
		tc, err := o.dialer.Dial(ctx, ep.Address, ep.Identity)
		cancel()
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
	limitInterim(r, o.cfg.Load().MaxInterim)
	rec := h2RecordFrom(r.Context())
	if rec == nil {
		rec = &h2Record{}
	}
	var d dest
	rg := o.routes.Load()
	d.cs = rg.defOnly
	if rg.table != nil {
		rg.choose(&d, &route.Request{Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Header: h2Headers(r.Header)})
	}
	if d.rt != nil {
		// r is the reverse proxy's copy of the request: ours to change.
		if np := d.rt.Rewrite(r.URL.Path); np != r.URL.Path {
			u := *r.URL
			u.Path, u.RawPath = np, ""
			r.URL = &u
		}
		d.rt.ApplyRequest(d.sp, h2Headers(r.Header))
	}
	if hp := d.cs[0].bal.Config().HashPolicies; len(hp) > 0 {
		d.hash, d.hashed, rec.cookie = balance.Hash(hp, httpRequestHash{r: r, src: connInfoFrom(r.Context()).src})
	}
	if !o.brk.request() {
		return nil, errOverflow
	}
	admitted := true
	ctx := r.Context()
	cancel := context.CancelFunc(func() {})
	if d.rt != nil && d.rt.RequestTimeout > 0 {
		// The route's RequestTimeout bounds the whole exchange, body
		// included (as Envoy's route timeout).
		ctx, cancel = context.WithTimeout(ctx, d.rt.RequestTimeout)
	}
	defer func() {
		if admitted {
			cancel()
			o.brk.requestDone()
		}
	}()
	attempts := maxPickAttempts
	if d.rt != nil && d.rt.Retry.Enabled() {
		attempts = max(attempts, 1+d.rt.Retry.NumRetries)
	}
	// The route's retries apply to idempotent methods and to gRPC calls
	// (whose retry conditions are their statuses); a body is kept for the
	// next attempt while it fits in maxReplayBody (replayBody).
	retryOK := d.rt != nil && d.rt.Retry.Enabled() && (idempotent([]byte(r.Method)) || isGRPC(r))
	retries := 0
	var replay *replayBody
	if retryOK && r.Body != nil && r.Body != http.NoBody {
		replay = newReplayBody(r.Body) // the server closes r.Body when the handler returns
	}
	canRetry := func() bool {
		return retryOK && retries < d.rt.Retry.NumRetries && ctx.Err() == nil && (replay == nil || replay.replayable())
	}
	o.budget.start()
	defer func() {
		o.budget.end(retries)
		o.budget.done()
	}()
	var tried []string
	var lastErr error
	for attempt := range attempts {
		c, ep, err := pick(d.cs, d.hash, d.hashed, tried)
		if err != nil && retries > 0 && len(tried) > 0 {
			tried = tried[:0] // a retry may go back to an endpoint tried
			c, ep, err = pick(d.cs, d.hash, d.hashed, tried)
		}
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
			span = o.tel.startClientSpan(rec.parent, propagation.HeaderCarrier(r.Header), r.Method, func(span trace.Span) {
				clientAttrs(span, r.Method, r.URL.Path, o.name(), ep.Address, ep.Identity.String(), attempt+1)
			})
		}
		out := *r
		u := *r.URL
		u.Scheme, u.Host = "https", ep.Address
		out.URL = &u
		actx := ctx
		if t := c.connectTimeout.Load(); t > 0 {
			actx = context.WithValue(ctx, dialTimeoutKey{}, time.Duration(t))
		}
		var idle *idleWatch
		if d.rt != nil && d.rt.IdleTimeout > 0 {
			// The route's IdleTimeout: the stream may carry no byte, either
			// way, for at most that long (as Envoy's route idle_timeout).
			var cancelIdle context.CancelCauseFunc
			actx, cancelIdle = context.WithCancelCause(actx)
			idle = newIdleWatch(d.rt.IdleTimeout, func() { cancelIdle(errIdleTimeout) }, func() { cancelIdle(nil) })
		}
		out = *out.WithContext(actx)
		switch {
		case replay != nil:
			out.Body = replay.attempt()
		case r.Body != nil && r.Body != http.NoBody:
			// The transport closes the body it was given, also when the dial
			// fails; the next endpoint still needs it (nothing was read:
			// the body is read only once a stream is open). The server
			// closes the real body when the handler returns.
			out.Body = io.NopCloser(r.Body)
		}
		if idle != nil && out.Body != nil && out.Body != http.NoBody {
			out.Body = &idleBody{ReadCloser: out.Body, w: idle}
		}
		sent := time.Now()
		resp, err := o.h2.RoundTrip(&out)
		rec.upstreamDur = time.Since(sent)
		if err != nil && idle != nil {
			if idle.stop(); context.Cause(actx) == errIdleTimeout {
				err = errIdleTimeout
			}
		}
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
			if canRetry() && d.rt.Retry.OnReset() && o.budget.begin() {
				retries++
				tried = append(tried, ep.Address)
				lastErr = err
				sleepBackoff(retries, deadlineOf(ctx))
				continue
			}
			return nil, err
		}
		status := resp.StatusCode
		// The status goes to outlier detection now, with the head (as
		// Envoy counts it), not when the body has been relayed: the next
		// request picked already knows of a failure.
		ep.Report(balance.OutcomeOf(status))
		if canRetry() && d.rt.Retry.OnResponse(status, grpcStatusOf(resp.Header), resp.Header.Get("X-Envoy-Ratelimited") != "") && o.budget.begin() {
			resp.Body.Close()
			ep.Done()
			if idle != nil {
				idle.stop()
			}
			if span != nil {
				endSpan(span, status, "", nil)
			}
			retries++
			tried = append(tried, ep.Address)
			lastErr = fmt.Errorf("%w (last answer %d)", errRetriesExhausted, status)
			o.log.Warn("upstream answer retried", "upstream", o.name(), "endpoint", ep.Address, "status", status, "retry", retries)
			sleepBackoff(retries, deadlineOf(ctx))
			continue
		}
		if d.rt != nil {
			d.rt.ApplyResponse(d.sp, h2Headers(resp.Header))
		}
		done := func() {
			if span != nil {
				endSpan(span, status, "", nil)
			}
			if idle != nil {
				idle.stop()
			}
			ep.Done()
			cancel()
			o.brk.requestDone() // the request ends with its body
		}
		admitted = false
		body := resp.Body
		if idle != nil {
			body = &idleBody{ReadCloser: body, w: idle}
		}
		resp.Body = &doneBody{ReadCloser: body, done: done}
		return resp, nil
	}
	return nil, lastErr
}

// errIdleTimeout ends a stream that was idle for its route's IdleTimeout:
// a deadline, answered 504 (gRPC DEADLINE_EXCEEDED) before the response
// head and a reset after it.
var errIdleTimeout = fmt.Errorf("sidecar: route idle timeout: %w", context.DeadlineExceeded)

// idleWatch calls fire once no activity (touch) was seen for d. touch is
// one atomic store, for every read of a body; the timer re-arms itself for
// what is left of d instead of being reset per read. stop ends the watch
// and calls release (which frees what fire would have used).
type idleWatch struct {
	d       time.Duration
	base    time.Time
	last    atomic.Int64 // time since base of the last activity
	stopped atomic.Bool
	t       *time.Timer
	fire    func()
	release func()
}

func newIdleWatch(d time.Duration, fire, release func()) *idleWatch {
	w := &idleWatch{d: d, base: time.Now(), fire: fire, release: release}
	w.t = time.AfterFunc(d, w.check)
	return w
}

func (w *idleWatch) touch() { w.last.Store(int64(time.Since(w.base))) }

func (w *idleWatch) check() {
	if w.stopped.Load() {
		return
	}
	idleFor := time.Since(w.base) - time.Duration(w.last.Load())
	if idleFor >= w.d {
		w.fire()
		return
	}
	w.t.Reset(w.d - idleFor)
}

// stop is idempotent.
func (w *idleWatch) stop() {
	if w.stopped.CompareAndSwap(false, true) {
		w.t.Stop()
		w.release()
	}
}

// idleBody touches its watch on every read.
type idleBody struct {
	io.ReadCloser
	w *idleWatch
}

func (b *idleBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.w.touch()
	return n, err
}

// dialTimeoutKey carries a cluster's connect timeout from a request to the
// HTTP/2 transport's dial.
type dialTimeoutKey struct{}

// Add, Set and Del make h2Headers a route.HeaderEditor.
func (h h2Headers) Add(name, value string) { http.Header(h).Add(name, value) }
func (h h2Headers) Set(name, value string) { http.Header(h).Set(name, value) }
func (h h2Headers) Del(name string)        { http.Header(h).Del(name) }

// grpcStatusOf is the grpc-status of a response head (a trailers-only
// answer), or -1.
func grpcStatusOf(h http.Header) int {
	v, ok := h["Grpc-Status"]
	if !ok || len(v) == 0 {
		return -1
	}
	return parseGRPCStatus(v[0])
}

// parseGRPCStatus reads a grpc-status value; -1 when it is not a number.
func parseGRPCStatus(v string) int {
	n, err := strconv.Atoi(v)
	if err != nil {
		return -1
	}
	return n
}

// deadlineOf is ctx's deadline, zero when it has none.
func deadlineOf(ctx context.Context) time.Time {
	t, _ := ctx.Deadline()
	return t
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

package sidecar

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"reflect"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/propagation"

	"github.com/outrider-mesh/outrider/gateway"
	"github.com/outrider-mesh/outrider/gateway/certs"
	"github.com/outrider-mesh/outrider/gateway/filter"
	"github.com/outrider-mesh/outrider/gateway/reqinfo"
	"github.com/outrider-mesh/outrider/sidecar/http1"
)

// gatewaySlot is a listener's current gateway (nil: none), swapped when
// its configuration changes. The gateway runs after authorization and in
// front of inner, the listener's net/http proxy: on the net/http path
// (HTTP/2, ingress listeners), and on the HTTP/1.1 loop for the requests
// it handles (h1gateway.go); the loop forwards the others itself.
type gatewaySlot struct {
	cur   atomic.Pointer[gateway.Gateway]
	cfg   gateway.Config // what cur was built from; guarded by Sidecar.mu
	inner http.Handler   // set once by reverseProxy
}

// enabled reports whether a gateway is installed.
func (g *gatewaySlot) enabled() bool { return g != nil && g.cur.Load() != nil }

// serve runs r through the gateway when one is installed, else straight
// to the proxy. ci describes the connection, claims any verified token.
func (g *gatewaySlot) serve(w http.ResponseWriter, r *http.Request, ci connInfo, rec *h2Record) {
	g.serveWith(g.cur.Load(), w, r, ci, rec)
}

// serveWith is serve with gw, the gateway a caller already consulted
// (nil: none).
func (g *gatewaySlot) serveWith(gw *gateway.Gateway, w http.ResponseWriter, r *http.Request, ci connInfo, rec *h2Record) {
	if gw == nil {
		g.inner.ServeHTTP(w, r)
		return
	}
	info := &reqinfo.Info{Peer: ci.peer, Remote: ci.src, Claims: rec.claims}
	gw.ServeHTTP(w, r.WithContext(reqinfo.With(r.Context(), info)))
}

// preflightRule stands for the authorization decision in the access log
// of a CORS preflight the gateway answered without one.
const preflightRule = "cors-preflight"

func isPreflight(r *http.Request) bool {
	return filter.IsPreflight(r.Method, func(name string) bool { return len(r.Header[name]) > 0 })
}

// preflight returns the current gateway when it answers r, a CORS
// preflight whose path is normalized, itself (see
// gateway.AnswersPreflight); nil otherwise. The caller serves r with it.
func (g *gatewaySlot) preflight(r *http.Request) *gateway.Gateway {
	if gw := g.cur.Load(); gw != nil && gw.AnswersPreflight(r.URL.Path) {
		return gw
	}
	return nil
}

// set builds and installs the gateway for cfg, unless cfg is what the
// current one was built from. On error the current gateway stays. The
// caller holds Sidecar.mu.
func (s *Sidecar) setGateway(slot *gatewaySlot, cfg gateway.Config, where string, lim headerLimits) error {
	if reflect.DeepEqual(cfg, slot.cfg) && (slot.cur.Load() != nil) == cfg.Enabled() {
		return nil
	}
	var next *gateway.Gateway
	if cfg.Enabled() {
		opts := []gateway.Option{gateway.WithName(where), gateway.WithLogger(s.log.With("gateway", where)), gateway.WithMetrics(s.gatewayMetrics()),
			gateway.WithUpstreams(s.partResolver(slot, where == "public"))}
		if s.tel.tracer != nil {
			opts = append(opts, gateway.WithTracer(s.tel.tracer))
		}
		g, err := gateway.New(cfg, slot.inner, opts...)
		if err != nil {
			return err
		}
		next = g
	}
	old := slot.cur.Swap(next)
	slot.cfg = cfg
	if old != nil {
		// Requests may still run on the old gateway: its shared state
		// (Redis connections) goes once they are done.
		time.AfterFunc(s.opts.DrainTimeout+time.Second, func() { old.Close() })
	}
	if next != nil {
		s.log.Info("gateway configured", "listener", where, "routes", len(cfg.Routes))
		for _, w := range lim.looser(cfg) {
			s.log.Warn("gateway route header limit looser than the listener's: the listener's applies", "listener", where, "limit", w)
		}
	} else if old != nil {
		s.log.Info("gateway removed", "listener", where)
	}
	return nil
}

// headerLimits are a listener's bounds on request header fields (0: the
// HTTP/1.1 codec's defaults).
type headerLimits struct{ fields, bytes int }

// looser names the route filter limits cfg sets above the listener's:
// the listener refuses such requests first, so they have no effect.
func (l headerLimits) looser(cfg gateway.Config) []string {
	fields, bytes := cmp.Or(l.fields, http1.DefaultMaxFields), cmp.Or(l.bytes, http1.DefaultMaxHeaderBytes)
	var out []string
	for i, rt := range cfg.Routes {
		if n := rt.Filter.MaxHeaders; n > fields {
			out = append(out, fmt.Sprintf("routes[%d].filter.max_headers %d > %d", i, n, fields))
		}
		if n := int(rt.Filter.MaxHeaderBytes); n > bytes {
			out = append(out, fmt.Sprintf("routes[%d].filter.max_header_bytes %d > %d", i, n, bytes))
		}
	}
	return out
}

// gatewayMetrics is the process's gateway collectors, registered on
// first use.
func (s *Sidecar) gatewayMetrics() *gateway.Metrics {
	s.gwMetricsOnce.Do(func() { s.gwMetrics = gateway.NewMetrics(s.metrics.Registry()) })
	return s.gwMetrics
}

// certsMetrics is the process's ingress certificate collectors.
func (s *Sidecar) certsMetrics() *certs.Metrics {
	s.certsMetricsOnce.Do(func() { s.certsMetricsV = certs.NewMetrics(s.metrics.Registry()) })
	return s.certsMetricsV
}

// localApp names the local application as a composite endpoint's
// upstream (public listener only).
const localApp = "local_app"

// partResolver returns what composite endpoints call: the sidecar's
// upstreams by destination name (each call balanced, retried and traced
// as the application's own calls are: the part's span context goes into
// its headers, where the upstream handler finds its parent) and, on the
// public listener, local_app, the application itself (the composite
// request was authorized already). names are the known ones.
func (s *Sidecar) partResolver(slot *gatewaySlot, public bool) (func(string) (http.Handler, bool), []string) {
	var names []string
	if cfg := s.config.Load(); cfg != nil {
		for _, u := range cfg.Upstreams {
			names = append(names, u.DestinationName)
		}
	}
	if public {
		names = append(names, localApp)
	}
	resolve := func(name string) (http.Handler, bool) {
		if public && name == localApp {
			// Parts run concurrently: each gets its own record, not the
			// composite request's.
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				slot.inner.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), h2RecordKey{}, &h2Record{upstreamDur: -1})))
			}), true
		}
		h, ok := s.upstreamHandler(name)
		if !ok {
			return nil, false
		}
		if s.tel.tracer == nil {
			return h, true
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.tel.inject(r.Context(), propagation.HeaderCarrier(r.Header))
			h.ServeHTTP(w, r)
		}), true
	}
	return resolve, names
}

package sidecar

import (
	"net/http"
	"reflect"
	"sync/atomic"
	"time"

	"github.com/outrider-mesh/outrider/gateway"
	"github.com/outrider-mesh/outrider/gateway/certs"
	"github.com/outrider-mesh/outrider/gateway/reqinfo"
)

// gatewaySlot is a listener's current gateway (nil: none), swapped when
// its configuration changes. The gateway runs after authorization and in
// front of inner, the listener's proxy, on the net/http path: a listener
// with a gateway serves every request there (the lean HTTP/1.1 loop has
// no place for response filters).
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
	gw := g.cur.Load()
	if gw == nil {
		g.inner.ServeHTTP(w, r)
		return
	}
	info := &reqinfo.Info{Peer: ci.peer, Remote: ci.src, Claims: rec.claims}
	gw.ServeHTTP(w, r.WithContext(reqinfo.With(r.Context(), info)))
}

// set builds and installs the gateway for cfg, unless cfg is what the
// current one was built from. On error the current gateway stays. The
// caller holds Sidecar.mu.
func (s *Sidecar) setGateway(slot *gatewaySlot, cfg gateway.Config, where string) error {
	if reflect.DeepEqual(cfg, slot.cfg) && (slot.cur.Load() != nil) == cfg.Enabled() {
		return nil
	}
	var next *gateway.Gateway
	if cfg.Enabled() {
		g, err := gateway.New(cfg, slot.inner, gateway.WithLogger(s.log.With("gateway", where)), gateway.WithMetrics(s.gatewayMetrics()))
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
	} else if old != nil {
		s.log.Info("gateway removed", "listener", where)
	}
	return nil
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

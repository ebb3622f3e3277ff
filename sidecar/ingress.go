package sidecar

import (
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
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"

	"github.com/outrider-mesh/outrider/gateway"
	"github.com/outrider-mesh/outrider/gateway/certs"
	"github.com/outrider-mesh/outrider/gateway/clientip"
	"github.com/outrider-mesh/outrider/gateway/reqinfo"
	"github.com/outrider-mesh/outrider/telemetry/metrics"
	"github.com/outrider-mesh/outrider/telemetry/tracing"
	"go.opentelemetry.io/otel/trace"
)

// ingress is one ingress listener: HTTP(S) from clients outside the mesh,
// routed by host and path to the sidecar's upstreams, which carry each
// request over mesh mTLS as they do the application's. It is served by
// net/http (HTTP/1.1, and HTTP/2 by ALPN); its gateway runs before
// routing.
type ingress struct {
	cfg gateway.Ingress
	ln  net.Listener
	tls *tls.Config // nil: plain HTTP
	// hsts is the Strict-Transport-Security value ("" for none).
	hsts string
	srv  *h2Server
	gw   gatewaySlot
	// trust is the gateway's trusted proxies: their X-Forwarded-For is
	// kept and extended, anyone else's replaced.
	trust clientip.Resolver
	log   *slog.Logger
	done  chan struct{}
	// closers release what the listener's TLS needs (certificate
	// watchers), after the server stopped.
	closers []func()
}

// upstreamHandler returns the request handler of the upstream named
// name, looked up (lock-free) when each request arrives, so that an
// upstream replaced by a configuration change is found.
func (s *Sidecar) upstreamHandler(name string) (http.Handler, bool) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		out := (*s.outbounds.Load())[name]
		if out == nil {
			w.Header().Set(headerError, errNoHealthyUpstream)
			http.Error(w, "upstream "+name+" is not configured", http.StatusServiceUnavailable)
			return
		}
		out.h2Server.srv.Handler.ServeHTTP(w, r)
	})
	return h, s.hasUpstream(name)
}

// publishOutbounds records the running upstreams by destination name,
// for request-time lookups. The caller holds s.mu.
func (s *Sidecar) publishOutbounds() {
	m := make(map[string]*outbound, len(s.upstreams))
	for _, r := range s.upstreams {
		m[r.out.name()] = r.out
	}
	s.outbounds.Store(&m)
}

// hasUpstream reports whether the current configuration has an upstream
// named name.
func (s *Sidecar) hasUpstream(name string) bool {
	cfg := s.config.Load()
	if cfg == nil {
		return false
	}
	for _, u := range cfg.Upstreams {
		if u.DestinationName == name {
			return true
		}
	}
	return false
}

// startIngress listens on cfg.Bind and serves it; tlsCfg nil serves plain
// HTTP (a listener behind a load balancer that terminates TLS). The
// caller holds s.mu.
func (s *Sidecar) startIngress(cfg gateway.Ingress, tlsCfg *tls.Config, hsts string, closers []func()) (*ingress, error) {
	router, err := gateway.NewRouter(cfg.Routes, s.upstreamHandler)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Bind)
	if err != nil {
		return nil, err
	}
	ig := &ingress{cfg: cfg, ln: ln, tls: tlsCfg, hsts: hsts, log: s.log.With("ingress", cfg.Name), done: make(chan struct{}), closers: closers}
	ig.gw.inner = ig.forwarded(router)
	if ig.trust, err = clientip.New(cfg.Gateway.TrustedProxies); err != nil {
		ln.Close()
		return nil, err
	}
	if err := s.setGateway(&ig.gw, cfg.Gateway, cfg.Name, headerLimits{cfg.MaxHeaders, cfg.MaxHeaderBytes}); err != nil {
		ln.Close()
		return nil, err
	}
	ig.srv = newH2Server(ig.handler(s), h2ServerConfig{maxHeaderBytes: cfg.MaxHeaderBytes, maxHeaders: cfg.MaxHeaders,
		readHeader: cfg.ReadHeaderTimeout, idle: cfg.IdleTimeout, bodyIdle: cfg.BodyIdleTimeout,
		streams: cfg.MaxConcurrentStreams, streamWindow: cfg.InitialStreamWindowSize, connWindow: cfg.InitialConnectionWindowSize,
		overload: s.overload, log: ig.log, abuse: abuseReporter(s.tel, ig.log, cfg.Name)})
	go func() {
		defer close(ig.done)
		serve(ln, s.conns, s.overload, ig.log, func(c net.Conn) { ig.handle(c, s) })
	}()
	ig.log.Info("ingress listener up", "address", ln.Addr().String(), "tls", tlsCfg != nil, "routes", len(cfg.Routes))
	return ig, nil
}

// forwarded sets X-Forwarded-For and X-Forwarded-Proto on requests the
// gateway passed, for the upstream: a client that is not a trusted proxy
// has its own X-Forwarded-For replaced by the address the ingress saw.
// (The gateway sees the client's headers as sent: its cache treats
// X-Forwarded-* as unkeyed input, its limits resolve the client itself.)
func (ig *ingress) forwarded(next http.Handler) http.Handler {
	proto := "http"
	if ig.tls != nil {
		proto = "https"
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		remote := reqinfo.From(r.Context()).Remote
		ip := remote.String()
		// A copy: the filters above (the cache) still judge the request
		// the client sent.
		r = r.WithContext(r.Context())
		r.Header = r.Header.Clone()
		if prior := r.Header.Values("X-Forwarded-For"); len(prior) > 0 && ig.trust.Trusted(remote) {
			r.Header.Set("X-Forwarded-For", strings.Join(prior, ", ")+", "+ip)
		} else {
			r.Header.Set("X-Forwarded-For", ip)
		}
		r.Header.Set("X-Forwarded-Proto", proto)
		// Never an identity from outside the mesh (the upstream sidecar
		// sets the ingress's own).
		r.Header.Del(headerClientCert)
		next.ServeHTTP(w, r)
	})
}

// handle serves one client connection: the TLS handshake (bounded by
// ReadHeaderTimeout, before anything else is read), then HTTP/1.1 or
// HTTP/2 (by ALPN, or the preface on plain HTTP) on the HTTP server, with
// the HTTP/2 guard watching.
func (ig *ingress) handle(c net.Conn, s *Sidecar) {
	conn := c
	if ig.tls != nil {
		tc := tls.Server(c, ig.tls)
		ctx, cancel := context.WithTimeout(context.Background(), ig.cfg.ReadHeaderTimeout)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				s.stat.handshakeFailures.Add(1)
				s.tel.metrics.HandshakeFailure(metrics.ClassifyHandshakeError(err))
				ig.log.Debug("ingress TLS handshake failed", "remote", c.RemoteAddr().String(), "reason", err)
			}
			return
		}
		conn = tc
	}
	ig.srv.serveConn(conn, connInfo{src: remoteIP(c)})
}

// handler is the listener's request path: the path normalized (a
// malformed one is refused), X-Forwarded-* set, a server span, then the
// gateway and the router.
func (ig *ingress) handler(s *Sidecar) http.Handler {
	tel := s.tel
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodConnect {
			http.Error(w, "CONNECT is not enabled", http.StatusMethodNotAllowed)
			return
		}
		path, err := normalizeH2(r, s.opts.PathNormalization)
		if err != nil {
			s.stat.badRequests.Add(1)
			logBadPath(ig.log, "", r.Method, r.RequestURI, err)
			w.Header().Set(headerError, errBadPath)
			http.Error(w, "malformed request path", http.StatusBadRequest)
			return
		}
		r.URL.Path, r.URL.RawPath = path, ""
		remote := netip.Addr{}
		if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
			remote = ap.Addr().Unmap()
		}
		ip := remote.String()
		ctx := r.Context()
		sw := &statusWriter{ResponseWriter: w}
		if tel.tracer != nil {
			// The span's context goes into the request's headers, where the
			// upstream's handler finds its parent.
			_, span := tel.startServerSpan(context.Background(), propagation.HeaderCarrier(r.Header), r.Method, func(span trace.Span) {
				serverAttrs(span, r.Method, r.URL.Path, r.Host, ip, "")
				tracing.SetAttributes(span, attribute.String("outrider.ingress", ig.cfg.Name))
			})
			defer func() { endSpan(span, sw.status, "", nil) }()
		}
		if ig.hsts != "" {
			sw.Header().Set("Strict-Transport-Security", ig.hsts)
		}
		ctx = reqinfo.With(ctx, &reqinfo.Info{Remote: remote})
		if g := ig.gw.cur.Load(); g != nil {
			g.ServeHTTP(sw, r.WithContext(ctx))
			return
		}
		ig.gw.inner.ServeHTTP(sw, r.WithContext(ctx))
	})
}

// stop stops accepting; drain then lets in-flight requests finish
// within timeout and releases the rest. stop must come first.
func (ig *ingress) stop() {
	ig.ln.Close()
	<-ig.done
	ig.srv.ln.Close()
}

func (ig *ingress) drain(timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	ig.srv.srv.Shutdown(ctx)
	if g := ig.gw.cur.Swap(nil); g != nil {
		g.Close()
	}
	for _, c := range ig.closers {
		c()
	}
}

// setIngresses reconciles the ingress listeners with cfg: unchanged ones
// stay, changed ones are restarted. The caller holds s.mu.
func (s *Sidecar) setIngresses(cfg gateway.Ingresses) error {
	want := map[string]gateway.Ingress{}
	for i, l := range cfg {
		l.ApplyDefaults(i)
		want[l.Name] = l
	}
	for name, ig := range s.ingresses {
		if w, ok := want[name]; !ok || !reflect.DeepEqual(w, ig.cfg) {
			// The port is free again at once; the old listener's
			// requests finish in the background.
			ig.stop()
			go ig.drain(s.opts.DrainTimeout)
			delete(s.ingresses, name)
		}
	}
	var errs []error
	for name, l := range want {
		if _, ok := s.ingresses[name]; ok {
			continue
		}
		tlsCfg, hsts, closers, err := s.ingressTLS(l)
		if err == nil {
			var ig *ingress
			if ig, err = s.startIngress(l, tlsCfg, hsts, closers); err == nil {
				if s.ingresses == nil {
					s.ingresses = map[string]*ingress{}
				}
				s.ingresses[name] = ig
				continue
			}
			for _, c := range closers {
				c()
			}
		}
		errs = append(errs, fmt.Errorf("sidecar: ingress %s: %w", name, err))
	}
	return errors.Join(errs...)
}

// ingressTLS builds the listener's TLS configuration (nil: plain HTTP),
// starts its certificate watch and its HTTP-to-HTTPS redirect listener;
// closers stop them.
func (s *Sidecar) ingressTLS(l gateway.Ingress) (*tls.Config, string, []func(), error) {
	if l.TLS == nil {
		return nil, "", nil, nil
	}
	log := s.log.With("ingress", l.Name)
	store, err := certs.New(*l.TLS, certs.WithLogger(log), certs.WithMetrics(s.certsMetrics(), l.Name))
	if err != nil {
		return nil, "", nil, fmt.Errorf("tls.%w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		if err := store.Run(ctx); err != nil {
			log.Error("ingress certificates are not watched; changes need a restart", "error", err)
		}
	}()
	closers := []func(){func() { cancel(); <-watched }}
	if rd := store.Config().Redirect; rd.HTTPAddress != "" {
		_, port, _ := net.SplitHostPort(l.Bind)
		ln, err := net.Listen("tcp", rd.HTTPAddress)
		if err != nil {
			closers[0]()
			return nil, "", nil, fmt.Errorf("tls.redirect.http_address: %w", err)
		}
		srv := &http.Server{Handler: certs.RedirectHandler(rd.Status, port), ReadHeaderTimeout: l.ReadHeaderTimeout, IdleTimeout: l.IdleTimeout,
			MaxHeaderBytes: l.MaxHeaderBytes, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
		go srv.Serve(ln)
		closers = append(closers, func() { srv.Close() })
		log.Info("ingress HTTP redirect listener up", "address", ln.Addr().String())
	}
	return store.TLSConfig(), store.Config().HSTS.Value(), closers, nil
}

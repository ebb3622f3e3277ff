package sidecar

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
)

// Limits is an upstream's circuit breaking, as Consul users write it in
// the source service's service-defaults UpstreamConfig (Defaults or
// Overrides) Limits; the agent merges it into the upstream's
// Config["limits"]. Zero means unlimited. When a limit is reached the
// sidecar fails fast: 503 upstream_overflow (flag UO) for a request, a
// closed connection for tcp; nothing queues without bound.
type Limits struct {
	// MaxConnections bounds the connections to the upstream's endpoints:
	// for tcp, the connections proxied at once; for http, the HTTP/1.1
	// connections opened (busy or pooled). HTTP/2 connections, which
	// multiplex, are not counted.
	MaxConnections int `json:"max_connections,omitempty"`
	// MaxPendingRequests bounds the HTTP/1.1 requests waiting for a
	// connection while MaxConnections are open (each waits at most the
	// connect timeout). 0 with MaxConnections set: requests do not wait.
	MaxPendingRequests int `json:"max_pending_requests,omitempty"`
	// MaxConcurrentRequests bounds the requests in flight to the upstream
	// (http, http2, grpc).
	MaxConcurrentRequests int `json:"max_concurrent_requests,omitempty"`
}

// errOverflow: a limit is reached; the request is answered 503 without
// trying other endpoints (the limit is the upstream's, not an endpoint's).
var errOverflow = errors.New("sidecar: upstream limits reached")

// limitsValue reads Config["limits"] as the agent writes it.
func limitsValue(m map[string]any) (Limits, error) {
	v, ok := m["limits"]
	if !ok || v == nil {
		return Limits{}, nil
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return Limits{}, fmt.Errorf("want an object, got %v", v)
	}
	var l Limits
	for key, dst := range map[string]*int{"MaxConnections": &l.MaxConnections, "MaxPendingRequests": &l.MaxPendingRequests,
		"MaxConcurrentRequests": &l.MaxConcurrentRequests} {
		raw, ok := obj[key]
		if !ok || raw == nil {
			continue
		}
		n, err := intValue(raw)
		if err != nil {
			return Limits{}, fmt.Errorf("%s: %w", key, err)
		}
		if n < 0 {
			return Limits{}, fmt.Errorf("%s: want 0 or more, got %d", key, n)
		}
		*dst = n
	}
	for key := range obj {
		switch key {
		case "MaxConnections", "MaxPendingRequests", "MaxConcurrentRequests":
		default:
			return Limits{}, fmt.Errorf("unknown field %q", key)
		}
	}
	return l, nil
}

// breaker enforces one upstream's Limits. Counting costs an atomic add
// per connection or request; waiting (pending requests) happens only at
// MaxConnections. Safe for concurrent use.
type breaker struct {
	limits atomic.Pointer[Limits]

	conns, requests, pending atomic.Int64
	overflows                atomic.Int64

	mu       sync.Mutex
	released chan struct{} // closed (and replaced) when a connection is released while requests wait
}

func newBreaker(l Limits) *breaker {
	b := &breaker{released: make(chan struct{})}
	b.limits.Store(&l)
	return b
}

func (b *breaker) set(l Limits) { b.limits.Store(&l) }

// request admits one request; false means MaxConcurrentRequests is
// reached. An admitted request must call requestDone.
func (b *breaker) request() bool {
	n := b.requests.Add(1)
	if max := b.limits.Load().MaxConcurrentRequests; max > 0 && n > int64(max) {
		b.requests.Add(-1)
		b.overflows.Add(1)
		return false
	}
	return true
}

func (b *breaker) requestDone() { b.requests.Add(-1) }

// conn reserves a connection slot. With wait, a request at
// MaxConnections waits (one of at most MaxPendingRequests) until a
// connection is released, calling evict first to free an idle one, or
// until ctx ends. A reserved slot is released with connDone.
func (b *breaker) conn(ctx context.Context, wait bool, evict func() bool) error {
	counted := false
	for {
		l := b.limits.Load()
		if l.MaxConnections <= 0 || b.conns.Add(1) <= int64(l.MaxConnections) {
			if l.MaxConnections <= 0 {
				b.conns.Add(1)
			}
			if counted {
				b.pending.Add(-1)
			}
			return nil
		}
		b.conns.Add(-1)
		if evict != nil && evict() {
			continue // an idle connection was closed: its slot is free
		}
		if !counted {
			if !wait || l.MaxPendingRequests <= 0 || b.pending.Add(1) > int64(l.MaxPendingRequests) {
				if wait && l.MaxPendingRequests > 0 {
					b.pending.Add(-1)
				}
				b.overflows.Add(1)
				return errOverflow
			}
			counted = true
		}
		b.mu.Lock()
		ch := b.released
		b.mu.Unlock()
		// A release may have happened between the check and taking ch:
		// check again once before sleeping.
		if l.MaxConnections <= 0 || b.conns.Load() < int64(l.MaxConnections) {
			continue
		}
		select {
		case <-ch:
		case <-ctx.Done():
			b.pending.Add(-1)
			b.overflows.Add(1)
			return errOverflow
		}
	}
}

// connDone releases a connection slot.
func (b *breaker) connDone() {
	b.conns.Add(-1)
	b.wake()
}

// wake tells waiting requests that a connection was released (closed, or
// returned to a pool, where a waiter may evict it).
func (b *breaker) wake() {
	if b.pending.Load() == 0 {
		return
	}
	b.mu.Lock()
	close(b.released)
	b.released = make(chan struct{})
	b.mu.Unlock()
}

// countedConn releases its breaker slot once, when closed.
type countedConn struct {
	net.Conn
	b    *breaker
	once sync.Once
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.b.connDone)
	return err
}

// CloseWrite half-closes like the wrapped connection (TLS close_notify,
// then FIN), for Upgrade tunnels.
func (c *countedConn) CloseWrite() error { return closeWrite(c.Conn) }

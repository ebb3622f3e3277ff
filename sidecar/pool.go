package sidecar

import (
	"bufio"
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/outrider-mesh/outrider/discovery"
)

// Upstream HTTP/1.1 connections are pooled per endpoint so the TLS
// handshake (outbound) or TCP connect (inbound, to the application) is paid
// once per pooled connection, not per request.

const (
	// poolIdleTimeout closes pooled connections unused for this long; it
	// stays below the idle timeouts of common servers (nginx 75 s, Outrider
	// 90 s) so a pooled connection is rarely closed under a request.
	poolIdleTimeout = 60 * time.Second
	// poolMaxIdle bounds idle connections kept per endpoint.
	poolMaxIdle = 256
	// probeAfter: a connection idle longer than this is probed (a
	// zero-timeout read) before reuse, to catch a server that closed it.
	probeAfter = time.Second
)

// errPoolClosed is returned by get once the pool has been closed.
var errPoolClosed = errors.New("sidecar: connection pool closed")

// upConn is one HTTP/1.1 connection to an upstream endpoint or to the
// local application, with its buffers. It belongs to one request at a time.
type upConn struct {
	net.Conn
	// idle reads Conn for br, under a route's IdleTimeout.
	idle     idleReader
	br       *bufio.Reader
	bw       *bufio.Writer
	pool     *connPool
	reused   bool // served an earlier request
	deadline bool // a read deadline may be armed (see clearDeadline)
	// routeDeadline: a route's RequestTimeout is armed as the read
	// deadline, over the body too; put clears it.
	routeDeadline bool
	lastUsed      time.Time // when it was last returned to the pool
}

// connPool keeps idle connections to one address, most recently used
// first. Safe for concurrent use.
type connPool struct {
	dial func(ctx context.Context) (net.Conn, error)
	// released, when set, is called after a connection went back idle.
	released func()

	mu     sync.Mutex
	idle   []*upConn
	closed bool
}

func newConnPool(dial func(ctx context.Context) (net.Conn, error)) *connPool {
	return &connPool{dial: dial}
}

// get returns an idle connection that still looks alive, or dials a new
// one. It reports whether the connection is fresh.
func (p *connPool) get(ctx context.Context, connectTimeout time.Duration) (*upConn, error) {
	now := time.Now()
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, errPoolClosed
		}
		n := len(p.idle)
		if n == 0 {
			p.mu.Unlock()
			break
		}
		uc := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		if now.Sub(uc.lastUsed) > poolIdleTimeout || (now.Sub(uc.lastUsed) > probeAfter && !uc.alive()) {
			uc.Conn.Close()
			continue
		}
		return uc, nil
	}
	if connectTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, connectTimeout)
		defer cancel()
	}
	c, err := p.dial(ctx)
	if err != nil {
		return nil, err
	}
	uc := &upConn{Conn: c, idle: idleReader{c: c}, bw: bufio.NewWriterSize(c, bufSize), pool: p}
	uc.br = bufio.NewReaderSize(&uc.idle, bufSize)
	return uc, nil
}

// idleReader reads a connection for its bufio.Reader: an upstream one
// (upConn), or a client one in the HTTP/1.1 loop, where timeout is set
// while a request body is read (slow POST). Under a
// route's IdleTimeout (timeout > 0) every read first re-arms the read
// deadline to now + timeout, capped at limit (the exchange's absolute
// deadline, if any): the response may take as long as it likes as long as
// bytes keep coming. Only the exchange's goroutine uses it.
type idleReader struct {
	c       net.Conn
	timeout time.Duration
	limit   time.Time
	// one holds a byte read before the bufio.Reader existed (the HTTP/1.1
	// loop's idle wait); pending says the next Read returns it first.
	one     [1]byte
	pending bool
}

func (r *idleReader) Read(p []byte) (int, error) {
	if r.pending && len(p) > 0 {
		r.pending = false
		p[0] = r.one[0]
		if len(p) == 1 {
			return 1, nil
		}
		// The rest of the head has usually arrived with the first byte:
		// read it in the same fill (this blocks only until some of it
		// comes, which the head's parser would wait for anyway).
		n, err := r.read(p[1:])
		return n + 1, err
	}
	return r.read(p)
}

func (r *idleReader) read(p []byte) (int, error) {
	if r.timeout > 0 {
		d := time.Now().Add(r.timeout)
		if !r.limit.IsZero() && r.limit.Before(d) {
			d = r.limit
		}
		r.c.SetReadDeadline(d)
	}
	return r.c.Read(p)
}

// alive reads with an expired deadline: a timeout means the peer has said
// nothing (alive); anything else (EOF, data, reset) means the connection
// cannot carry a new request.
func (uc *upConn) alive() bool {
	if uc.br.Buffered() > 0 {
		return false
	}
	uc.Conn.SetReadDeadline(time.Now())
	_, err := uc.br.Peek(1)
	uc.Conn.SetReadDeadline(time.Time{})
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// clearDeadline disarms a read deadline set while waiting for a response
// head; a connection returned to the pool may keep one, since the next
// exchange re-arms it before reading.
func (uc *upConn) clearDeadline() {
	if uc.deadline {
		uc.Conn.SetReadDeadline(time.Time{})
		uc.deadline = false
		uc.idle.limit = time.Time{}
	}
}

// put returns a connection that finished a request cleanly.
func (p *connPool) put(uc *upConn) {
	if uc.routeDeadline || uc.idle.timeout > 0 {
		uc.Conn.SetReadDeadline(time.Time{})
		uc.routeDeadline = false
		uc.idle = idleReader{c: uc.idle.c}
	}
	uc.reused = true
	uc.lastUsed = time.Now()
	p.mu.Lock()
	if p.closed || len(p.idle) >= poolMaxIdle {
		p.mu.Unlock()
		uc.Conn.Close()
		return
	}
	p.idle = append(p.idle, uc)
	p.mu.Unlock()
	if p.released != nil {
		p.released()
	}
}

// evictOne closes the least recently used idle connection, if any.
func (p *connPool) evictOne() bool {
	p.mu.Lock()
	if len(p.idle) == 0 {
		p.mu.Unlock()
		return false
	}
	uc := p.idle[0]
	p.idle = p.idle[1:]
	p.mu.Unlock()
	uc.Conn.Close()
	return true
}

// idleCount is the number of idle connections, for /config_dump.
func (p *connPool) idleCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}

// closeIdle closes the idle connections; the pool stays usable.
func (p *connPool) closeIdle() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, uc := range idle {
		uc.Conn.Close()
	}
}

// close closes the idle connections and makes later puts close theirs.
func (p *connPool) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.closeIdle()
}

// endpointPools maps endpoints to their pools. Lookups on the request
// path take no lock; pools of endpoints that left discovery are closed by
// retain.
type endpointPools struct {
	dial func(ctx context.Context, ep discovery.Endpoint) (net.Conn, error)
	// released, when set, is called when a connection goes back idle.
	released func()
	m        sync.Map // poolKey -> *connPool
}

// poolKey identifies a pool: the same address with another identity (an
// instance replaced by another service) gets a new pool.
type poolKey struct {
	addr string
	id   spiffeid.ID
}

func (ps *endpointPools) get(ep discovery.Endpoint) *connPool {
	key := poolKey{ep.Address, ep.Identity}
	if p, ok := ps.m.Load(key); ok {
		return p.(*connPool)
	}
	np := newConnPool(func(ctx context.Context) (net.Conn, error) { return ps.dial(ctx, ep) })
	np.released = ps.released
	p, _ := ps.m.LoadOrStore(key, np)
	return p.(*connPool)
}

// evictIdle closes one idle connection of any endpoint, to make room
// under MaxConnections; it reports whether there was one.
func (ps *endpointPools) evictIdle() bool {
	evicted := false
	ps.m.Range(func(_, v any) bool {
		evicted = v.(*connPool).evictOne()
		return !evicted
	})
	return evicted
}

// idleFor is the idle count of ep's pool, without creating one.
func (ps *endpointPools) idleFor(ep discovery.Endpoint) int {
	if p, ok := ps.m.Load(poolKey{ep.Address, ep.Identity}); ok {
		return p.(*connPool).idleCount()
	}
	return 0
}

// retain closes and forgets the pools whose key is not in keep.
func (ps *endpointPools) retain(keep map[poolKey]bool) {
	ps.m.Range(func(k, v any) bool {
		if !keep[k.(poolKey)] {
			ps.m.Delete(k)
			v.(*connPool).close()
		}
		return true
	})
}

func (ps *endpointPools) closeAll() { ps.retain(nil) }

// idle sums idle connections across endpoints.
func (ps *endpointPools) idle() int {
	n := 0
	ps.m.Range(func(_, v any) bool { n += v.(*connPool).idleCount(); return true })
	return n
}

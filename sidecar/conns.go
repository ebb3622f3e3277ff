package sidecar

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// tracker owns the open connections of a sidecar so shutdown can drain them:
// wait up to a deadline, then close whatever is left.
type tracker struct {
	mu    sync.Mutex
	conns map[net.Conn]func() error // how drain force-closes each connection
	// graceful holds, for keep-alive HTTP connections, how to close them
	// at their next idle moment; drain calls these first (drainInbound,
	// for the public listener's, earlier).
	graceful map[net.Conn]gracefulClose
	wg       sync.WaitGroup
	// closing is set once drain started force-closing: later hand-overs
	// are refused so nothing escapes the force close.
	closing bool
	// draining is set once drain started; inboundDraining once
	// drainInbound (or drain) did.
	draining, inboundDraining bool
	// told is set once drain has called every graceful func it found.
	told atomic.Bool
}

func newTracker() *tracker {
	return &tracker{conns: map[net.Conn]func() error{}, graceful: map[net.Conn]gracefulClose{}}
}

// gracefulClose ends a keep-alive connection at its next idle moment;
// inbound: it came through the public listener.
type gracefulClose struct {
	f       func()
	inbound bool
}

// add registers c for the lifetime of one handler; the handler calls the
// returned func when it is done with c (it closes c). Once drain started
// it closes c and reports false: an accept loop can still hand over a
// connection accepted just before its listener closed, and drain's wait
// must not miss it (nor may the WaitGroup grow from zero during Wait).
func (t *tracker) add(c net.Conn) (func(), bool) {
	t.mu.Lock()
	if t.draining {
		t.mu.Unlock()
		c.Close()
		return nil, false
	}
	t.conns[c] = c.Close
	t.wg.Add(1) // under mu, so ordered before drain's Wait
	t.mu.Unlock()
	return func() {
		c.Close()
		t.mu.Lock()
		delete(t.conns, c)
		delete(t.graceful, c)
		t.mu.Unlock()
		t.wg.Done()
	}, true
}

// closeWith changes how drain force-closes c: a connection handed to the
// event loop is closed by aborting its relay. It reports false when c is
// no longer tracked or drain is already force-closing.
func (t *tracker) closeWith(c net.Conn, f func() error) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.conns[c]; !ok || t.closing {
		return false
	}
	t.conns[c] = f
	return true
}

// onDrain registers how to end c gracefully (between two requests) once
// draining starts (for an inbound connection: once drainInbound is
// called); f runs at once when that already happened.
func (t *tracker) onDrain(c net.Conn, f func(), inbound bool) {
	t.mu.Lock()
	_, ok := t.conns[c]
	now := t.draining || (inbound && t.inboundDraining)
	if ok && !now {
		t.graceful[c] = gracefulClose{f: f, inbound: inbound}
	}
	t.mu.Unlock()
	if ok && now {
		f()
	}
}

// drainInbound ends the public listener's keep-alive connections
// gracefully, as drain does: called when that listener closes, so that a
// request answered after it carries Connection: close, while the
// application's outbound connections stay in use until drain.
func (t *tracker) drainInbound() {
	t.mu.Lock()
	t.inboundDraining = true
	var fs []func()
	for c, g := range t.graceful {
		if g.inbound {
			fs = append(fs, g.f)
			delete(t.graceful, c)
		}
	}
	t.mu.Unlock()
	for _, f := range fs {
		f()
	}
}

func (t *tracker) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.conns)
}

// drain waits until every tracked connection's handler has returned or ctx
// is done; then it closes the rest and waits for their handlers. It reports
// how many connections had to be closed.
func (t *tracker) drain(ctx context.Context) int {
	t.mu.Lock()
	t.draining, t.inboundDraining = true, true
	graceful := t.graceful
	t.graceful = map[net.Conn]gracefulClose{}
	t.mu.Unlock()
	for _, g := range graceful {
		g.f()
	}
	t.told.Store(true)
	done := make(chan struct{})
	go func() { t.wg.Wait(); close(done) }()
	select {
	case <-done:
		return 0
	case <-ctx.Done():
	}
	t.mu.Lock()
	t.closing = true
	n := len(t.conns)
	for _, closeConn := range t.conns {
		closeConn()
	}
	t.mu.Unlock()
	<-done
	return n
}

// acceptBackoff is how long an accept loop sleeps after a temporary error
// (e.g. out of file descriptors): doubling from 5ms to 1s.
func acceptBackoff(prev time.Duration) time.Duration {
	if prev == 0 {
		return 5 * time.Millisecond
	}
	return min(2*prev, time.Second)
}

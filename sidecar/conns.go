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
	// at their next idle moment; drain calls these first.
	graceful map[net.Conn]func()
	wg       sync.WaitGroup
	// closing is set once drain started force-closing: later hand-overs
	// are refused so nothing escapes the force close.
	closing bool
	// draining is set once drain started.
	draining bool
	// told is set once drain has called every graceful func it found.
	told atomic.Bool
}

func newTracker() *tracker {
	return &tracker{conns: map[net.Conn]func() error{}, graceful: map[net.Conn]func(){}}
}

// add registers c for the lifetime of one handler; the handler calls the
// returned func when it is done with c (it closes c).
func (t *tracker) add(c net.Conn) func() {
	t.mu.Lock()
	t.conns[c] = c.Close
	t.mu.Unlock()
	t.wg.Add(1)
	return func() {
		c.Close()
		t.mu.Lock()
		delete(t.conns, c)
		delete(t.graceful, c)
		t.mu.Unlock()
		t.wg.Done()
	}
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
// draining starts; f runs at once when draining already started.
func (t *tracker) onDrain(c net.Conn, f func()) {
	t.mu.Lock()
	_, ok := t.conns[c]
	if ok && !t.draining {
		t.graceful[c] = f
	}
	draining := t.draining
	t.mu.Unlock()
	if ok && draining {
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
	t.draining = true
	graceful := t.graceful
	t.graceful = map[net.Conn]func(){}
	t.mu.Unlock()
	for _, f := range graceful {
		f()
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

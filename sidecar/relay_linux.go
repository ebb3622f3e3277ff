//go:build linux

package sidecar

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
)

// The event loop relays bytes between the two connections of an
// established L4 stream (after the TLS handshake and the dial, which stay
// on their goroutine). It exists for CPU per request: with Go's netpoller
// every read of a request/response stream first returns EAGAIN, parks the
// goroutine and is retried once the data arrives; the loop waits on a
// level-triggered epoll and reads only sockets the kernel reported
// readable, so each relayed message costs one read and one write.
//
// Ownership: a connection handed to the loop is detached from Go's
// netpoller (its fd is duplicated and the net.Conn closed); from then on
// only the loop goroutine touches it, until the relay finishes or aborts.

// errWouldBlock is what a detached connection returns when the kernel has
// no more bytes for it right now. It is a temporary net.Error, which
// crypto/tls treats as retryable: a partial record stays buffered.
var errWouldBlock error = wouldBlock{}

type wouldBlock struct{}

func (wouldBlock) Error() string   { return "sidecar: would block" }
func (wouldBlock) Timeout() bool   { return true }
func (wouldBlock) Temporary() bool { return true }

// loopConn is the net.Conn under a relayed stream (and under its tls.Conn).
// Before detach it is the TCP connection itself; after detach reads and
// writes are non-blocking syscalls on the duplicated fd.
type loopConn struct {
	net.Conn
	fd       int    // -1 until detached
	readable bool   // the loop saw the fd readable and no read drained it yet
	out      []byte // bytes the kernel did not take yet (detached only)
}

func newLoopConn(c net.Conn) *loopConn { return &loopConn{Conn: c, fd: -1} }

func (c *loopConn) Read(p []byte) (int, error) {
	if c.fd < 0 {
		return c.Conn.Read(p)
	}
	if !c.readable || len(p) == 0 {
		return 0, errWouldBlock
	}
	n, err := ignoringEINTR(func() (int, error) { return syscall.Read(c.fd, p) })
	switch {
	case err == syscall.EAGAIN:
		c.readable = false
		return 0, errWouldBlock
	case err != nil:
		return 0, err
	case n == 0:
		return 0, io.EOF
	case n < len(p):
		// A short read emptied the socket: do not ask again until epoll
		// says there is more.
		c.readable = false
	}
	return n, nil
}

// Write never blocks: what the kernel does not take now is queued in out
// and flushed when the fd is writable. The caller stops reading the other
// side while out is not empty, which bounds out to one read buffer plus
// one TLS record.
func (c *loopConn) Write(p []byte) (int, error) {
	if c.fd < 0 {
		return c.Conn.Write(p)
	}
	if len(c.out) > 0 {
		c.out = append(c.out, p...)
		return len(p), nil
	}
	n, err := ignoringEINTR(func() (int, error) { return syscall.Write(c.fd, p) })
	if err == syscall.EAGAIN {
		n, err = 0, nil
	}
	if err != nil {
		return 0, err
	}
	if n < len(p) {
		c.out = append(c.out[:0], p[n:]...)
	}
	return len(p), nil
}

// flush writes queued bytes; it reports whether the queue is empty.
func (c *loopConn) flush() (bool, error) {
	for len(c.out) > 0 {
		n, err := ignoringEINTR(func() (int, error) { return syscall.Write(c.fd, c.out) })
		if err == syscall.EAGAIN {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		c.out = c.out[n:]
	}
	c.out = nil
	return true, nil
}

// detach moves the connection off Go's netpoller: the loop gets a
// duplicate of the fd and the original is closed (which unregisters it
// from the runtime without shutting the socket down).
func (c *loopConn) detach() error {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return fmt.Errorf("sidecar: %T has no file descriptor", c.Conn)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	fd := -1
	var derr error
	if err := raw.Control(func(s uintptr) { fd, derr = syscall.Dup(int(s)) }); err != nil {
		return err
	}
	if derr != nil {
		return fmt.Errorf("sidecar: dup: %w", derr)
	}
	syscall.CloseOnExec(fd)
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return err
	}
	c.Conn.Close()
	c.fd = fd
	return nil
}

func ignoringEINTR(f func() (int, error)) (int, error) {
	for {
		n, err := f()
		if err != syscall.EINTR {
			return n, err
		}
	}
}

// end is one side of a relay.
type end struct {
	c     *loopConn
	rw    io.ReadWriter // the tls.Conn on the mTLS side, c on the plaintext side
	tls   *tls.Conn
	peer  *end
	relay *relay

	registered bool   // in the epoll set
	eof        bool   // read side finished cleanly
	shutWant   bool   // write side should be shut once c.out is flushed
	shut       bool   // write side shut
	events     uint32 // current epoll interest
	bytes      int64  // bytes read from this end
}

// relay is an established stream between two ends, run by one loop.
type relay struct {
	a, b    *end
	done    chan struct{}
	aborted atomic.Bool
	err     error // why the relay aborted, if it did (loop goroutine only, read after done)
}

// loop is one epoll event loop goroutine.
type loop struct {
	epfd   int
	wakefd int // eventfd: new relays and aborts
	// epf is epfd registered with Go's netpoller: the loop goroutine parks
	// in the scheduler until the epoll set has events, instead of blocking
	// its thread (and the only P, with one thread) in epoll_wait.
	epf *os.File

	mu      sync.Mutex
	adds    []*relay
	aborts  []*relay
	byFD    map[int]*end
	closing atomic.Bool
	stopped chan struct{}
}

// loops is the set of event loops of a sidecar, one per thread.
type loops struct {
	all  []*loop
	next atomic.Uint32
}

// newLoops starts n event loops; close stops them.
func newLoops(n int) (*loops, error) {
	ls := &loops{}
	for range max(n, 1) {
		l, err := newLoop()
		if err != nil {
			ls.close()
			return nil, err
		}
		ls.all = append(ls.all, l)
		go l.run()
	}
	return ls, nil
}

// close aborts every relay still running and stops the loops; it returns
// once their goroutines have exited. The sidecar calls it after draining.
func (ls *loops) close() {
	for _, l := range ls.all {
		l.closing.Store(true)
		l.wake()
	}
	for _, l := range ls.all {
		<-l.stopped
	}
}

func (ls *loops) pick() *loop {
	return ls.all[int(ls.next.Add(1))%len(ls.all)]
}

func newLoop() (*loop, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("sidecar: epoll_create1: %w", err)
	}
	wfd, _, errno := syscall.Syscall(syscall.SYS_EVENTFD2, 0, syscall.O_CLOEXEC|syscall.O_NONBLOCK, 0)
	if errno != 0 {
		syscall.Close(epfd)
		return nil, fmt.Errorf("sidecar: eventfd: %w", errno)
	}
	if err := syscall.SetNonblock(epfd, true); err != nil {
		syscall.Close(epfd)
		syscall.Close(int(wfd))
		return nil, err
	}
	l := &loop{epfd: epfd, wakefd: int(wfd), byFD: map[int]*end{}, stopped: make(chan struct{})}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(l.wakefd)}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, l.wakefd, &ev); err != nil {
		syscall.Close(epfd)
		syscall.Close(l.wakefd)
		return nil, fmt.Errorf("sidecar: epoll_ctl eventfd: %w", err)
	}
	l.epf = os.NewFile(uintptr(epfd), "epoll")
	return l, nil
}

// relayStream hands an established stream to a loop and blocks until it
// ends. tlsSide is the mTLS connection (whose underlying conn must be
// tlsRaw) and plain the plaintext one. It returns the bytes read from each.
// If the connections cannot be detached, it falls back to splice.
func (ls *loops) relayStream(tlsSide *tls.Conn, tlsRaw *loopConn, plain net.Conn, conns *tracker, tracked net.Conn) (fromTLS, fromPlain int64, err error) {
	pc := newLoopConn(plain)
	if err := tlsRaw.detach(); err != nil {
		return 0, 0, err
	}
	if err := pc.detach(); err != nil {
		syscall.Close(tlsRaw.fd)
		return 0, 0, err
	}
	a := &end{c: tlsRaw, rw: tlsSide, tls: tlsSide}
	b := &end{c: pc, rw: pc}
	a.peer, b.peer = b, a
	l := ls.pick()
	r := &relay{a: a, b: b, done: make(chan struct{})}
	a.relay, b.relay = r, r
	if !conns.closeWith(tracked, func() error { l.abort(r); return nil }) {
		syscall.Close(tlsRaw.fd)
		syscall.Close(pc.fd)
		return 0, 0, errors.New("sidecar: shutting down")
	}
	l.mu.Lock()
	l.adds = append(l.adds, r)
	l.mu.Unlock()
	l.wake()
	<-r.done
	return a.bytes, b.bytes, r.err
}

func (l *loop) wake() {
	one := [8]byte{1}
	syscall.Write(l.wakefd, one[:])
}

// abort closes a relay from another goroutine (drain timeout).
func (l *loop) abort(r *relay) {
	l.mu.Lock()
	l.aborts = append(l.aborts, r)
	l.mu.Unlock()
	l.wake()
}

func (l *loop) run() {
	events := make([]syscall.EpollEvent, 128)
	buf := make([]byte, bufSize)
	rc, err := l.epf.SyscallConn()
	if err != nil {
		panic(fmt.Sprintf("sidecar: epoll fd: %v", err))
	}
	var n int
	wait := func(fd uintptr) bool {
		n, err = syscall.EpollWait(int(fd), events, 0)
		return n > 0 || (err != nil && err != syscall.EINTR)
	}
	for {
		if rerr := rc.Read(wait); rerr != nil {
			panic(fmt.Sprintf("sidecar: waiting on epoll: %v", rerr))
		}
		if err != nil {
			panic(fmt.Sprintf("sidecar: epoll_wait: %v", err))
		}
		for _, ev := range events[:n] {
			fd := int(ev.Fd)
			if fd == l.wakefd {
				l.takeCommands(buf)
				if l.closing.Load() {
					l.stop()
					return
				}
				continue
			}
			e := l.byFD[fd]
			if e == nil {
				continue // closed earlier in this batch
			}
			l.handle(e, ev.Events, buf)
		}
	}
}

// stop aborts what is left and releases the loop's descriptors.
func (l *loop) stop() {
	l.mu.Lock()
	pending := l.adds
	l.adds = nil
	l.mu.Unlock()
	for _, r := range pending {
		l.finish(r, errors.New("sidecar stopped"))
	}
	for _, e := range l.byFD {
		l.finish(e.relay, errors.New("sidecar stopped"))
	}
	l.epf.Close() // closes epfd
	syscall.Close(l.wakefd)
	close(l.stopped)
}

func (l *loop) takeCommands(buf []byte) {
	var drain [8]byte
	syscall.Read(l.wakefd, drain[:])
	l.mu.Lock()
	adds, aborts := l.adds, l.aborts
	l.adds, l.aborts = nil, nil
	l.mu.Unlock()
	for _, r := range adds {
		if err := l.register(r.a); err != nil {
			l.finish(r, err)
			continue
		}
		if err := l.register(r.b); err != nil {
			l.finish(r, err)
			continue
		}
		// Bytes may already wait in the kernel or in the TLS buffer.
		r.a.c.readable, r.b.c.readable = true, true
		l.pump(r, r.a, buf)
		if !r.aborted.Load() {
			l.pump(r, r.b, buf)
		}
	}
	for _, r := range aborts {
		l.finish(r, errors.New("closed by drain"))
	}
}

func (l *loop) register(e *end) error {
	e.events = syscall.EPOLLIN | syscall.EPOLLRDHUP
	ev := syscall.EpollEvent{Events: e.events, Fd: int32(e.c.fd)}
	if err := syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, e.c.fd, &ev); err != nil {
		return fmt.Errorf("sidecar: epoll_ctl add: %w", err)
	}
	e.registered = true
	l.byFD[e.c.fd] = e
	return nil
}

// setEvents changes e's epoll interest. An end with nothing to wait for is
// taken out of the set: epoll reports hang-ups whatever the interest, and a
// hung-up end that waits for nothing would wake the loop forever.
func (l *loop) setEvents(e *end, events uint32) {
	if e.c.fd < 0 || (e.events == events && e.registered == (events != 0)) {
		return
	}
	ev := syscall.EpollEvent{Events: events, Fd: int32(e.c.fd)}
	switch {
	case events == 0:
		syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_DEL, e.c.fd, nil)
		e.registered = false
	case !e.registered:
		syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, e.c.fd, &ev)
		e.registered = true
	default:
		syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_MOD, e.c.fd, &ev)
	}
	e.events = events
}

func (l *loop) handle(e *end, events uint32, buf []byte) {
	r := e.relay
	// A hang-up or error is reported whatever the interest: with output
	// queued, the flush surfaces it; with the read side open, the read does.
	if events&(syscall.EPOLLOUT|syscall.EPOLLERR|syscall.EPOLLHUP) != 0 && len(e.c.out) > 0 {
		done, err := e.c.flush()
		if err != nil {
			l.finish(r, err)
			return
		}
		if done {
			l.afterFlush(r, e, buf)
			if r.aborted.Load() {
				return
			}
		}
	}
	if events&(syscall.EPOLLIN|syscall.EPOLLRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) != 0 {
		e.c.readable = true
		l.pump(r, e, buf) // also re-derives e's interest, dropping it if there is nothing to wait for
	}
}

// afterFlush runs once e's queued output drained: shut its write side if
// that was waiting, and resume reading its peer.
func (l *loop) afterFlush(r *relay, e *end, buf []byte) {
	if e.shutWant && !e.shut {
		l.shutWrite(r, e)
		if r.aborted.Load() {
			return
		}
	}
	l.updateEvents(e)
	if !e.peer.eof {
		l.pump(r, e.peer, buf)
	}
}

// pump relays from src to its peer until src would block, the peer's queue
// fills, or src ends.
func (l *loop) pump(r *relay, src *end, buf []byte) {
	dst := src.peer
	for !src.eof {
		if len(dst.c.out) > 0 {
			break // backpressure: wait for dst to drain
		}
		n, err := src.rw.Read(buf)
		if n > 0 {
			src.bytes += int64(n)
			if _, werr := dst.rw.Write(buf[:n]); werr != nil {
				l.finish(r, werr)
				return
			}
		}
		if err == nil {
			continue
		}
		if err == errWouldBlock {
			break
		}
		if errors.Is(err, io.EOF) {
			src.eof = true
			dst.shutWant = true
			if len(dst.c.out) == 0 {
				l.shutWrite(r, dst)
				if r.aborted.Load() {
					return
				}
			}
			break
		}
		l.finish(r, err)
		return
	}
	l.updateEvents(src)
	l.updateEvents(dst)
	if src.eof && dst.eof && src.shut && dst.shut {
		l.finish(r, nil)
	}
}

// updateEvents sets e's epoll interest: read while the stream from e is
// open and its peer is not backed up; write while e has queued output.
func (l *loop) updateEvents(e *end) {
	var ev uint32
	if !e.eof && len(e.peer.c.out) == 0 {
		ev |= syscall.EPOLLIN | syscall.EPOLLRDHUP
	}
	if len(e.c.out) > 0 {
		ev |= syscall.EPOLLOUT
	}
	l.setEvents(e, ev)
}

// shutWrite ends the stream towards e: close_notify on TLS, then a FIN.
func (l *loop) shutWrite(r *relay, e *end) {
	if e.tls != nil && !e.shut {
		e.tls.CloseWrite() // queued through e.c like any write
		if len(e.c.out) > 0 {
			if ok, err := e.c.flush(); err != nil {
				l.finish(r, err)
				return
			} else if !ok {
				l.updateEvents(e)
				return // afterFlush finishes the shutdown
			}
		}
	}
	syscall.Shutdown(e.c.fd, syscall.SHUT_WR)
	e.shut = true
	if e.eof && e.peer.eof && e.peer.shut {
		l.finish(r, nil)
	}
}

// finish closes both ends and releases the relay's waiter. err is nil for
// a stream that ended cleanly in both directions.
func (l *loop) finish(r *relay, err error) {
	if r.aborted.Swap(true) {
		return
	}
	for _, e := range []*end{r.a, r.b} {
		if e.c.fd >= 0 {
			delete(l.byFD, e.c.fd)
			if e.registered {
				syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_DEL, e.c.fd, nil)
			}
			syscall.Close(e.c.fd)
			e.c.fd = -2
		}
	}
	r.err = err
	close(r.done)
}

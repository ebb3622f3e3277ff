package sidecar

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/outrider-mesh/outrider/sidecar/overload"
)

// workerIdle is how long a connection goroutine waits for another
// connection before it exits.
const workerIdle = 30 * time.Second

// accepted is a connection handed to a worker, with its tracker release.
type accepted struct {
	c       net.Conn
	release func()
}

// serve accepts on ln until ln is closed, running handle for each
// connection on a worker goroutine, tracked by conns (which closes the
// connection when handle returns). Temporary accept errors (such as running
// out of file descriptors) back off instead of spinning.
//
// Workers are reused: a goroutine that finished a connection waits up to
// workerIdle for the next one. A new goroutine starts with a small stack
// that grows (copying) on every connection; a reused one has grown already,
// which matters when every request comes on a new connection.
//
// Each accepted connection is first admitted by ov (the overload
// manager): one beyond its budget is closed at once, before any byte is
// read.
func serve(ln net.Listener, conns *tracker, ov *overload.Manager, log *slog.Logger, handle func(net.Conn)) {
	work := make(chan accepted)
	// Idle workers exit at once; busy ones after their connection, which
	// the tracker owns (drained on shutdown), so serve does not wait.
	defer close(work)
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			delay = acceptBackoff(delay)
			log.Warn("accept failed; backing off", "listener", ln.Addr().String(), "retry_in", delay, "error", err)
			time.Sleep(delay)
			continue
		}
		delay = 0
		if reason := ov.AdmitConnection(); reason != overload.ReasonNone {
			c.Close()
			if ov.LogRefusal() {
				log.Warn("overloaded: new connections refused", "listener", ln.Addr().String(), "reason", string(reason))
			}
			continue
		}
		release, ok := conns.add(c)
		if !ok { // the sidecar is draining: c was accepted as ln closed
			ov.ConnectionDone()
			continue
		}
		a := accepted{c: c, release: func() { release(); ov.ConnectionDone() }}
		select {
		case work <- a: // an idle worker took it
		default:
			go worker(a, work, handle)
		}
	}
}

// worker runs handle for a, then for connections from work until work is
// closed or none comes for workerIdle.
func worker(a accepted, work <-chan accepted, handle func(net.Conn)) {
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		run(a, handle)
		idle.Reset(workerIdle)
		select {
		case next, ok := <-work:
			if !ok {
				return
			}
			a = next
		case <-idle.C:
			return
		}
	}
}

func run(a accepted, handle func(net.Conn)) {
	defer a.release()
	handle(a.c)
}

// Client-side buffers are pooled: a connection that carries one request
// would otherwise allocate (and clear) two 16 KiB buffers.
var (
	readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, bufSize) }}
	writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, bufSize) }}
)

func getReader(r io.Reader) *bufio.Reader {
	br := readerPool.Get().(*bufio.Reader)
	br.Reset(r)
	return br
}

// putReader returns br; the caller must not use it (or anything reading
// through it) again.
func putReader(br *bufio.Reader) {
	br.Reset(nil)
	readerPool.Put(br)
}

func getWriter(w io.Writer) *bufio.Writer {
	bw := writerPool.Get().(*bufio.Writer)
	bw.Reset(w)
	return bw
}

func putWriter(bw *bufio.Writer) {
	bw.Reset(nil)
	writerPool.Put(bw)
}

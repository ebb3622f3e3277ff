package sidecar

import (
	"cmp"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
)

// bufSize matches the largest TLS record, so one read fills one record.
const bufSize = 16 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

// splice copies bytes both ways between a and b until both directions have
// finished, propagating each direction's end of stream as a half-close so
// protocols that shut down one side (request then response) keep working.
// It returns the bytes copied a->b and b->a, and the first error if a
// direction did not end cleanly; then both connections are closed at once
// so the other direction cannot hang. Otherwise it closes neither.
func splice(a, b net.Conn) (ab, ba int64, err error) {
	type result struct {
		n   int64
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := copyHalf(b, a)
		if err != nil {
			a.Close()
			b.Close()
		}
		done <- result{n, err}
	}()
	ba, err = copyHalf(a, b)
	if err != nil {
		a.Close()
		b.Close()
	}
	r := <-done
	return r.n, ba, cmp.Or(err, r.err)
}

// copyHalf copies src to dst with a pooled buffer, then half-closes dst's
// write side. It returns a non-nil error only when the stream did not end
// cleanly.
func copyHalf(dst, src net.Conn) (int64, error) {
	bp := bufPool.Get().(*[]byte)
	buf := *bp
	var n int64
	var err error
	for {
		nr, rerr := src.Read(buf)
		if nr > 0 {
			nw, werr := dst.Write(buf[:nr])
			n += int64(nw)
			if werr != nil {
				err = werr
				break
			}
		}
		if rerr != nil {
			if !errors.Is(rerr, io.EOF) {
				err = rerr
			}
			break
		}
	}
	bufPool.Put(bp)
	if err != nil {
		return n, err
	}
	return n, closeWrite(dst)
}

// closeWrite shuts down the write side: for TLS a close_notify alert and
// then a TCP FIN (tls.Conn.CloseWrite sends only the alert).
func closeWrite(c net.Conn) error {
	if tc, ok := c.(*tls.Conn); ok {
		if err := tc.CloseWrite(); err != nil {
			return err
		}
		c = tc.NetConn()
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}

// forward runs an established stream between the mTLS connection tc (built
// over raw) and the plaintext connection plain until both directions end.
// With loops it hands the stream to an event loop; otherwise, or if the
// connections cannot be handed over, it splices with two goroutines. It
// returns the bytes read from tc and from plain, and why the stream was
// aborted, if it was.
func forward(ls *loops, tc *tls.Conn, raw *loopConn, plain net.Conn, conns *tracker, tracked net.Conn) (fromTLS, fromPlain int64, err error) {
	if ls != nil {
		return ls.relayStream(tc, raw, plain, conns, tracked)
	}
	fromPlain, fromTLS, err = splice(plain, tc)
	return fromTLS, fromPlain, err
}

// CloseWrite half-closes a connection that has not been handed to an
// event loop (the goroutine data path splices through loopConn too).
func (c *loopConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

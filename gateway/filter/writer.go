package filter

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
)

// writer is the ResponseWriter next writes through: it edits the
// response's header fields when they are sent, and replaces the response
// with 413 when the request body went over max_body_bytes before
// anything was sent. It lives on the handler's goroutine, from the
// request's start until ServeHTTP returns, and is pooled.
type writer struct {
	rw   http.ResponseWriter
	f    *Filter
	echo []string // Access-Control-Allow-Origin for this request; nil: none
	body *body    // the bounded body, when one was installed

	preflight bool // the filter answers a preflight: its CORS fields stand
	wrote     bool // the final header went out (ours or next's)
	replaced  bool // the response is our 413: next's writes are dropped
	hijacked  bool
}

var writerPool = sync.Pool{New: func() any { return new(writer) }}

func getWriter(f *Filter, rw http.ResponseWriter, r *http.Request) *writer {
	w := writerPool.Get().(*writer)
	w.rw, w.f = rw, f
	if f.cors {
		w.echo = f.allowedOrigin(r)
	}
	return w
}

// release returns w to the pool. Header values it set stay in the
// response's map: they are the Filter's shared slices or fresh ones,
// never w's own memory.
func (w *writer) release() {
	*w = writer{}
	writerPool.Put(w)
}

func (w *writer) Header() http.Header { return w.rw.Header() }

// WriteHeader edits the header fields of a final response (informational
// 1xx ones pass as they are) and sends it, or sends the 413 instead when
// the body was cut off.
func (w *writer) WriteHeader(code int) {
	if w.wrote {
		if !w.replaced {
			w.rw.WriteHeader(code) // net/http logs the superfluous call
		}
		return
	}
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		w.rw.WriteHeader(code)
		return
	}
	w.wrote = true
	if w.body != nil && w.body.tripped.Load() {
		w.replace()
		return
	}
	w.f.edit(w.rw.Header(), w.echo, w.preflight)
	w.rw.WriteHeader(code)
}

func (w *writer) Write(p []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	if w.replaced {
		return len(p), nil // dropped: the client gets our answer
	}
	return w.rw.Write(p)
}

// Flush sends the header (edited) and what was written.
func (w *writer) Flush() {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	if w.replaced {
		return
	}
	_ = http.NewResponseController(w.rw).Flush()
}

// Hijack is http.Hijacker, so that a protocol upgrade taking the
// connection is known: nothing is written for it afterwards.
func (w *writer) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.rw).Hijack()
	if err == nil {
		w.hijacked = true
	}
	return c, brw, err
}

// Unwrap gives http.ResponseController the underlying writer.
func (w *writer) Unwrap() http.ResponseWriter { return w.rw }

// finish runs after next returns: a response next did not write is sent
// now (edited, or the 413), rather than by net/http without the edits.
func (w *writer) finish() {
	if !w.wrote && !w.hijacked {
		w.WriteHeader(http.StatusOK)
	}
}

// representation are the fields that describe next's answer, dropped
// when it is replaced by the 413.
var representation = []string{
	"Content-Encoding", "Content-Length", "Content-Range", "Content-Type",
	"Content-Disposition", "Content-Language", "Content-Location", "Etag",
	"Last-Modified", "Accept-Ranges", "Expires", "Cache-Control", "Vary", "Trailer",
}

// replace sends the 413 in place of next's response.
func (w *writer) replace() {
	w.replaced = true
	h := w.rw.Header()
	for _, k := range representation {
		delete(h, k)
	}
	ans := refusals[bodyTooLarge]
	h["Content-Type"] = []string{"text/plain; charset=utf-8"}
	h["Content-Length"] = []string{strconv.Itoa(len(ans.body))}
	w.f.edit(h, w.echo, false)
	h["X-Content-Type-Options"] = valNosniff
	w.rw.WriteHeader(ans.status)
	_, _ = io.WriteString(w.rw, ans.body)
}

// body bounds a request body of unknown length: next reads at most limit
// bytes, then an *http.MaxBytesError. It may be read on another
// goroutine than the handler's (a transport writing the request
// upstream), even after the handler returned; tripped is how the
// handler's writer learns of the limit.
type body struct {
	src     io.ReadCloser
	limit   int64
	n       int64 // read so far; reader's goroutine only
	tripped atomic.Bool
	f       *Filter
	r       *http.Request
}

func (b *body) Read(p []byte) (int, error) {
	if b.tripped.Load() {
		return 0, &http.MaxBytesError{Limit: b.limit}
	}
	// Read at most one byte past the limit, to tell "exactly the limit"
	// from "over it" without handing the extra byte on.
	if rem := b.limit - b.n + 1; int64(len(p)) > rem {
		p = p[:rem]
	}
	n, err := b.src.Read(p)
	b.n += int64(n)
	if b.n > b.limit {
		n -= int(b.n - b.limit)
		b.n = b.limit
		if b.tripped.CompareAndSwap(false, true) {
			b.f.refused(b.r, bodyTooLarge, netip.Addr{})
		}
		return n, &http.MaxBytesError{Limit: b.limit}
	}
	return n, err
}

func (b *body) Close() error { return b.src.Close() }

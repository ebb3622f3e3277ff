package sidecar

import (
	"bufio"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/outrider-mesh/outrider/gateway"
	"github.com/outrider-mesh/outrider/gateway/filter"
	"github.com/outrider-mesh/outrider/sidecar/http1"
)

// The gateway on the HTTP/1.1 loop. A public listener with a gateway
// serves HTTP/1.1 connections on the lean loop like one without: a
// request none of the gateway's routes or composite endpoints handles is
// forwarded there, unchanged; one the gateway handles is turned into an
// *http.Request, served by the gateway's handlers (in front of the same
// proxy to the application as on the net/http path) and answered through
// h1Writer, an http.ResponseWriter onto the client connection. The
// connection stays on the loop either way.

// maxDiscardBody bounds what is read of a request body the gateway left
// unread (an early answer: 413, 429, a cache hit) to keep the connection
// (net/http reads up to 256 KiB too); beyond it the connection closes.
const maxDiscardBody = 256 << 10

// gatewayFor returns the listener's gateway and the current request's
// URL when the gateway handles the request (its target already
// normalized); nil otherwise. The request must be served with that
// gateway: a preflight decided on it may skip authorization.
func (hc *h1Conn) gatewayFor() (*gateway.Gateway, *url.URL) {
	gw := hc.p.gw.cur.Load()
	if gw == nil {
		return nil, nil
	}
	u, err := url.ParseRequestURI(string(hc.req.Target))
	if err != nil || !gw.Handles(string(hc.req.Method), u.Path) {
		return nil, nil
	}
	return gw, u
}

// isPreflight reports whether the current request is a CORS preflight.
func (hc *h1Conn) isPreflight() bool {
	return filter.IsPreflight(string(hc.req.Method), hc.req.Header.Has)
}

// serveGateway serves the current request, whose URL is u, through gw,
// the listener's gateway; it reports whether the connection stays open.
func (hc *h1Conn) serveGateway(gw *gateway.Gateway, u *url.URL) bool {
	p, req := hc.p, &hc.req
	r := &http.Request{
		Method: string(req.Method), URL: u, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: make(http.Header, len(req.Header.Fields)), Host: string(req.Host),
		RequestURI: string(req.Target), RemoteAddr: hc.c.RemoteAddr().String(), Close: hc.clientClose,
	}
	if req.Minor == 0 {
		r.Proto, r.ProtoMinor = "HTTP/1.0", 0
	}
	if r.Host == "" {
		r.Host = u.Host
	}
	for _, f := range req.Header.Fields {
		// Framing and hop-by-hop fields are the loop's; what net/http's
		// server keeps in Header otherwise is kept.
		if http1.HopByHop(f.Name) || http1.NameIs(f.Name, "host") || http1.NameIs(f.Name, "expect") {
			if http1.NameIs(f.Name, "te") && httpguts.HeaderValuesContainsToken([]string{string(f.Value)}, "trailers") {
				r.Header["Te"] = []string{"trailers"} // the one TE a proxy forwards; ReverseProxy does
			}
			continue
		}
		k := http.CanonicalHeaderKey(string(f.Name))
		r.Header[k] = append(r.Header[k], string(f.Value))
	}
	if req.Upgrade != nil {
		r.Header["Connection"] = []string{"Upgrade"}
		r.Header["Upgrade"] = []string{string(req.Upgrade)}
	}
	if tc, ok := hc.c.(*tls.Conn); ok {
		if hc.tlsState == nil {
			cs := tc.ConnectionState()
			hc.tlsState = &cs
		}
		r.TLS = hc.tlsState
	}
	rec := &h2Record{upstreamDur: -1, rule: hc.rec.rule}
	body := &h1Body{hc: hc, rec: rec}
	switch req.Body {
	case http1.BodyNone:
		r.Body = http.NoBody
	case http1.BodyLength:
		r.ContentLength, body.left = req.ContentLength, req.ContentLength
		r.Body = body
	default:
		r.ContentLength, body.chunked = -1, true
		r.Body = body
	}
	if !hc.ciSet {
		hc.ci = connInfo{src: hc.src, peer: p.peer, authz: p.authz, norm: p.norm, jwt: p.jwt}
		hc.ciSet = true
	}
	if p.jwt != nil {
		rec.claims = hc.tokens.verified()
	}
	ctx := context.WithValue(context.WithValue(context.Background(), connInfoKey{}, hc.ci), h2RecordKey{}, rec)
	w := &h1Writer{hc: hc, head: string(req.Method) == http.MethodHead}
	aborted := hc.runGateway(gw, w, r.WithContext(ctx), rec)
	keep := false
	if aborted {
		// As net/http's server does: what was written goes out, then the
		// connection closes, so the client sees the answer cut short.
		w.fail(hc.bw.Flush())
		if rec.flag == "" {
			rec.flag = "UC"
		}
	} else {
		keep = w.finish()
	}
	readAll := body.finish()

	hc.rec.status, hc.rec.tx, hc.rec.rx = w.status, w.tx, body.count()
	hc.rec.flag = rec.flag
	hc.rec.upstreamDur, hc.rec.attempts, hc.rec.endpoint = rec.upstreamDur, rec.attempts, rec.endpoint
	return keep && readAll && !w.hijacked
}

// runGateway runs the gateway's handlers for r and reports whether they
// panicked: http.ErrAbortHandler is how ReverseProxy gives up on an
// answer whose body failed after its head was sent; any other panic is
// logged with its stack. Either way only this request's connection
// pays, as on the net/http path.
func (hc *h1Conn) runGateway(gw *gateway.Gateway, w *h1Writer, r *http.Request, rec *h2Record) (aborted bool) {
	defer func() {
		if v := recover(); v != nil {
			aborted = true
			if v != http.ErrAbortHandler {
				hc.p.log.Error("gateway handler panicked; closing the connection", "listener", hc.p.target.name(),
					"method", r.Method, "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
			}
		}
	}()
	hc.p.gw.serveWith(gw, w, r, hc.ci, rec)
	return false
}

// h1Body is the request body the gateway reads, framed by the loop's
// codec: a Content-Length body straight from the connection's reader, a
// chunked one decoded (and its framing checked) by http1.CopyBody on a
// goroutine of its own into a pipe. The first read of a body whose client
// expects 100-continue sends the 100 first.
//
// net/http's transport reads a request body on a goroutine of its own,
// which may still be reading when the handler has returned (an answer
// that came before the whole body was sent): mu serializes the reads
// with finish, which stops such a reader before the loop takes the
// connection's reader back.
type h1Body struct {
	hc  *h1Conn
	rec *h2Record // told when the body's framing or idle bound failed it

	mu      sync.Mutex
	left    int64 // Content-Length body: bytes not read yet
	chunked bool
	n       int64 // body bytes read
	started bool
	err     error // sticky: the body ended (io.EOF) or failed
	closed  bool  // finish ran: reads fail

	pr   *io.PipeReader
	done chan error // the chunked copy's end
}

func (b *h1Body) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, errGatewayBodyAbandoned
	}
	return b.read(p)
}

// read is Read with mu held.
func (b *h1Body) read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if !b.started {
		b.started = true
		if hc := b.hc; hc.req.Expect100 {
			// Another transport goroutine may be relaying the
			// application's 1xx answers.
			hc.interimMu.Lock()
			_, _ = hc.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
			err := hc.bw.Flush()
			hc.interimMu.Unlock()
			if err != nil {
				b.err = err
				return 0, err
			}
		}
		if b.chunked {
			pr, pw := io.Pipe()
			b.pr, b.done = pr, make(chan error, 1)
			go func() {
				bw := bufio.NewWriterSize(pw, 4<<10)
				_, err := http1.CopyBody(bw, b.hc.br, http1.BodyChunked, -1, http1.BodyUntilClose)
				if err == nil {
					err = bw.Flush()
				}
				b.done <- err
				pw.CloseWithError(err) // nil: io.EOF for the reader
			}()
		}
	}
	var n int
	var err error
	if b.chunked {
		n, err = b.pr.Read(p)
	} else {
		if b.left == 0 {
			b.err = io.EOF
			return 0, io.EOF
		}
		if int64(len(p)) > b.left {
			p = p[:b.left]
		}
		n, err = b.hc.br.Read(p)
		b.left -= int64(n)
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		if err == nil && b.left == 0 {
			err = io.EOF
		}
	}
	b.n += int64(n)
	if err != nil {
		b.err = err
		switch {
		case b.closed:
		case errors.Is(err, http1.ErrBodyFraming):
			b.rec.bodyMalformed.Store(true)
		case isTimeout(err):
			b.rec.bodyTimedOut.Store(true)
		}
	}
	return n, err
}

// Close implements io.Closer; the handler's close changes nothing (finish
// settles the body).
func (b *h1Body) Close() error { return nil }

// count is the body bytes read so far.
func (b *h1Body) count() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.n
}

// finish settles the body once the handler returned, and reports whether
// the connection may carry another request: the body was read to its
// end. A body nobody is reading is read on, up to maxDiscardBody, to get
// there; one a transport goroutine is still reading is cut (its read
// interrupted), and the connection closes.
func (b *h1Body) finish() bool {
	if b.hc.req.Body == http1.BodyNone {
		return true
	}
	cut := false
	if !b.mu.TryLock() {
		cut = true
		b.interrupt(b.mu.TryLock)
	}
	defer b.mu.Unlock()
	b.closed = true
	if !cut && b.err == nil && !(b.hc.req.Expect100 && !b.started) {
		// (A client that expects 100-continue and was not told to send
		// its body sends none.)
		_, _ = io.CopyN(io.Discard, readerFunc(b.read), maxDiscardBody)
	}
	if b.chunked && b.started {
		if b.err != io.EOF {
			// The copy may still be reading the client: stop it before
			// the loop (or the reader's pool) gets the reader back.
			cut = true
			b.pr.CloseWithError(errGatewayBodyAbandoned)
			b.interrupt(func() bool {
				select {
				case <-b.done:
					return true
				default:
					return false
				}
			})
		} else {
			<-b.done
		}
	}
	return !cut && b.err == io.EOF
}

// interrupt moves the connection's read deadline to the past until
// stopped reports that the read it aimed at returned (a read re-arms the
// deadline under the body idle bound, so once is not enough). The
// connection cannot be read after it.
func (b *h1Body) interrupt(stopped func() bool) {
	for !stopped() {
		b.hc.c.SetReadDeadline(time.Unix(1, 0))
		time.Sleep(time.Millisecond)
	}
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

var errGatewayBodyAbandoned = errors.New("sidecar: request body left unread by the gateway")

// h1Writer is the gateway's http.ResponseWriter on the HTTP/1.1 loop.
// As net/http's server does, it holds the head back until the handler
// writes more than smallBody bytes, flushes or returns: a handler that
// returns having written little gets a Content-Length; otherwise the
// body is framed by the handler's Content-Length, else with chunks (an
// HTTP/1.0 client: by closing). It writes the declared trailers and adds
// Date when the handler did not.
type h1Writer struct {
	hc     *h1Conn
	header http.Header
	head   bool // a HEAD request: no body is written

	status    int // the final status, once WriteHeader was called
	committed bool
	small     []byte // body held back until the head is written
	interim   int    // 1xx responses written
	tx        int64  // body bytes written
	chunked   bool
	left      int64 // Content-Length framing: bytes still owed; -1 otherwise
	noBody    bool
	close     bool // the head said Connection: close
	err       error
	hijacked  bool
	trailers  []string // declared trailer names
}

// smallBody is what h1Writer holds back to give a short answer a
// Content-Length (net/http: its 2 KiB buffer).
const smallBody = 2 << 10

func (w *h1Writer) Header() http.Header {
	if w.header == nil {
		w.header = make(http.Header)
	}
	return w.header
}

func (w *h1Writer) WriteHeader(code int) {
	if w.status != 0 || w.hijacked {
		return
	}
	if code < 100 || code > 999 {
		panic("sidecar: invalid WriteHeader code " + strconv.Itoa(code))
	}
	hc := w.hc
	bw := hc.bw
	if code < 200 && code != 101 {
		// Interim responses carry the fields set so far (ReverseProxy
		// clears them after each); bounded as on the lean loop.
		// Never to an HTTP/1.0 client (RFC 9110 section 15.2).
		if w.interim >= cmp.Or(hc.p.lim.MaxInterim, maxInterim) || (code == 100 && hc.req.Expect100) || hc.req.Minor == 0 {
			return
		}
		w.interim++
		hc.interimMu.Lock()
		http1.WriteStatusLine(bw, code)
		w.writeFields(nil)
		_, _ = bw.WriteString("\r\n")
		w.fail(bw.Flush())
		hc.interimMu.Unlock()
		return
	}
	w.status = code
	h := w.Header()
	w.left = -1
	w.noBody = w.head || code == 204 || code == 304 || code == 101
	if cl := h.Get("Content-Length"); cl != "" {
		if n, err := strconv.ParseInt(cl, 10, 64); err == nil && n >= 0 && code != 204 && code != 304 {
			if !w.head {
				w.left = n
			}
		} else {
			h.Del("Content-Length")
		}
	}
}

// commit writes the head. known is the whole body's length when the
// handler is done (-1 while it is still writing).
func (w *h1Writer) commit(known int) {
	if w.committed {
		return
	}
	w.committed = true
	hc, h := w.hc, w.Header()
	req := &hc.req
	if known >= 0 && w.left < 0 && !w.noBody {
		h.Set("Content-Length", strconv.Itoa(known))
		w.left = int64(known)
	}
	w.close = hc.clientClose || req.Minor == 0 || hc.drain.isDraining() || !hc.p.overload.KeepAlive() ||
		httpguts.HeaderValuesContainsToken(h["Connection"], "close")
	if !w.noBody && w.left < 0 {
		if req.Minor == 0 {
			w.close = true // an HTTP/1.0 client: the body ends with the connection
		} else {
			w.chunked = true
		}
	}
	if w.chunked {
		for _, v := range h["Trailer"] {
			for _, name := range strings.Split(v, ",") {
				if name = http.CanonicalHeaderKey(strings.TrimSpace(name)); name != "" {
					w.trailers = append(w.trailers, name)
				}
			}
		}
	}
	bw := hc.bw
	http1.WriteStatusLine(bw, w.status)
	if _, ok := h["Date"]; !ok {
		_, _ = bw.WriteString("Date: ")
		_, _ = bw.WriteString(httpDate())
		_, _ = bw.WriteString("\r\n")
	}
	w.writeFields(map[string]bool{"Trailer": !w.chunked})
	if w.chunked {
		_, _ = bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	if w.close {
		_, _ = bw.WriteString("Connection: close\r\n")
	}
	_, _ = bw.WriteString("\r\n")
	if len(w.small) > 0 {
		held := w.small
		w.small = nil
		w.send(held)
	}
}

// writeFields writes the header's fields, less the loop's own framing
// and connection fields and those in skip: names that are not tokens are
// left out and CR, LF and NUL in values become spaces, as net/http does.
func (w *h1Writer) writeFields(skip map[string]bool) {
	bw := w.hc.bw
	for k, vs := range w.header {
		switch {
		case k == "Connection" || k == "Transfer-Encoding" || k == "Keep-Alive" || skip[k],
			strings.HasPrefix(k, http.TrailerPrefix), !httpguts.ValidHeaderFieldName(k):
			continue
		}
		for _, v := range vs {
			writeField(bw, k, v)
		}
	}
}

func writeField(bw *bufio.Writer, name, v string) {
	_, _ = bw.WriteString(name)
	_, _ = bw.WriteString(": ")
	_, _ = bw.WriteString(fieldValueReplacer.Replace(v))
	_, _ = bw.WriteString("\r\n")
}

var fieldValueReplacer = strings.NewReplacer("\r", " ", "\n", " ", "\x00", " ")

func (w *h1Writer) fail(err error) {
	if err != nil && w.err == nil {
		w.err = err
	}
}

func (w *h1Writer) Write(p []byte) (int, error) {
	if w.hijacked {
		return 0, http.ErrHijacked
	}
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return 0, w.err
	}
	if w.noBody {
		if w.head {
			return len(p), nil
		}
		return 0, http.ErrBodyNotAllowed
	}
	var tooLong error
	if w.left >= 0 && int64(len(p)) > w.left { // (nothing is held back then)
		p, tooLong = p[:w.left], http.ErrContentLength
	}
	if len(p) == 0 {
		return 0, tooLong
	}
	if !w.committed {
		if w.left < 0 && len(w.small)+len(p) <= smallBody {
			w.small = append(w.small, p...)
			return len(p), tooLong
		}
		w.commit(-1)
	}
	n, err := w.send(p)
	if err == nil {
		err = tooLong
	}
	return n, err
}

// send writes p as body, framed (the head is out).
func (w *h1Writer) send(p []byte) (int, error) {
	bw := w.hc.bw
	if w.chunked {
		_, _ = bw.Write(strconv.AppendUint(bw.AvailableBuffer(), uint64(len(p)), 16))
		_, _ = bw.WriteString("\r\n")
	}
	n, err := bw.Write(p)
	if w.chunked && err == nil {
		_, err = bw.WriteString("\r\n")
	}
	w.tx += int64(n)
	if w.left >= 0 {
		w.left -= int64(n)
	}
	w.fail(err)
	return n, err
}

// Flush sends what was written so far (http.Flusher).
func (w *h1Writer) Flush() {
	if w.hijacked {
		return
	}
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	w.commit(-1)
	w.fail(w.hc.bw.Flush())
}

// Hijack hands the connection to the handler for a protocol upgrade
// (ReverseProxy relays a 101 this way); the loop is done with it after.
func (w *h1Writer) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.status != 0 || w.hijacked {
		return nil, nil, errors.New("sidecar: hijack after the response started")
	}
	if w.hc.req.Upgrade == nil {
		return nil, nil, errors.New("sidecar: hijack of a request that asked for no upgrade")
	}
	w.hijacked = true
	w.status = http.StatusSwitchingProtocols
	return w.hc.c, bufio.NewReadWriter(w.hc.br, w.hc.bw), nil
}

// finish completes the response after the handler returned and reports
// whether it was whole and the connection may carry another request.
func (w *h1Writer) finish() bool {
	if w.hijacked {
		return false
	}
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	w.commit(len(w.small))
	bw := w.hc.bw
	if w.chunked && w.err == nil {
		_, _ = bw.WriteString("0\r\n")
		for _, name := range w.trailers {
			for _, v := range w.header[name] {
				writeTrailer(bw, name, v)
			}
		}
		for k, vs := range w.header {
			if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
				for _, v := range vs {
					writeTrailer(bw, http.CanonicalHeaderKey(name), v)
				}
			}
		}
		_, _ = bw.WriteString("\r\n")
	}
	w.fail(bw.Flush())
	whole := w.left <= 0 // Content-Length framing: every byte owed was sent
	return w.err == nil && whole && !w.close
}

func writeTrailer(bw *bufio.Writer, name, v string) {
	if httpguts.ValidHeaderFieldName(name) {
		writeField(bw, name, v)
	}
}

// httpDate is the current time as an HTTP-date, formatted once a second.
func httpDate() string {
	now := time.Now().Unix()
	if d := dateCache.Load(); d != nil && d.sec == now {
		return d.text
	}
	d := &cachedDate{sec: now, text: time.Unix(now, 0).UTC().Format(http.TimeFormat)}
	dateCache.Store(d)
	return d.text
}

type cachedDate struct {
	sec  int64
	text string
}

var dateCache atomic.Pointer[cachedDate]

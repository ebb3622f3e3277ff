package compress

import (
	"io"
	"log/slog"
	"net/http"
	"strings"
)

// Request decompression. The body is decoded as the handler reads it,
// never buffered: memory stays at one decoder per request, and a handler
// that streams the body upstream (a reverse proxy) has sent at most
// max_bytes when the limit trips. The handler's Read then fails with an
// *http.MaxBytesError (as with http.MaxBytesReader), or with the decoder's
// error for corrupt data, and whatever response the handler then writes
// is replaced by 413 (or 400) as long as nothing was sent downstream yet;
// a handler that sent its response before reading the whole body keeps
// it, and only sees the Read error.

// decodeRequest checks r's Content-Encoding. It answers 415 itself (ok
// false) for a coding it will not decode; otherwise it returns the writer
// and request to pass on, and done to call after the handler.
func (c *Compressor) decodeRequest(w http.ResponseWriter, r *http.Request) (http.ResponseWriter, *http.Request, func(), bool) {
	alg, identity, ok := c.requestCoding(r.Header["Content-Encoding"])
	if !ok {
		c.m.request(none, oUnsupported)
		if c.log.Enabled(r.Context(), slog.LevelDebug) {
			c.log.Debug("compress: unsupported request Content-Encoding", "content_encoding", strings.Join(r.Header["Content-Encoding"], ", "))
		}
		w.Header().Set("Accept-Encoding", c.decAccept)
		http.Error(w, "unsupported Content-Encoding: want "+c.decAccept, http.StatusUnsupportedMediaType)
		return nil, nil, nil, false
	}
	r2 := r.WithContext(r.Context())
	r2.Header = r.Header.Clone()
	r2.Header.Del("Content-Encoding")
	if identity || r.Body == nil || r.Body == http.NoBody {
		return w, r2, func() {}, true
	}
	r2.Header.Del("Content-Length")
	r2.ContentLength = -1
	b := &boundedBody{c: c, alg: alg, src: r.Body, limit: c.maxBytes}
	r2.Body = b
	g := &guardWriter{rw: w, body: b}
	return g, r2, func() {
		g.finish()
		b.release()
	}, true
}

// requestCoding reads a request's Content-Encoding lines: one coding this
// Compressor decodes, possibly with "identity" around it (identity true
// when that is all there is). More than one real coding, or one not
// enabled, is not ok.
func (c *Compressor) requestCoding(lines []string) (alg algorithm, identity, ok bool) {
	for _, line := range lines {
		for line != "" {
			var name string
			name, line, _ = strings.Cut(line, ",")
			name = trimOWS(name)
			if name == "" || strings.EqualFold(name, "identity") {
				continue
			}
			a := parseAlgorithm(name)
			if a == none || !c.decAlgs[a] || alg != none {
				return none, false, false
			}
			alg = a
		}
	}
	return alg, alg == none, true
}

// boundedBody decodes src and fails once more than limit decoded bytes
// would be read.
type boundedBody struct {
	c     *Compressor
	alg   algorithm
	src   io.ReadCloser
	wire  wireReader // src, remembering its errors
	dec   decoder
	limit int64
	n     int64
	err   error   // sticky
	fail  outcome // why err, when set by the limit or the data
	done  bool    // counted in metrics
}

// errCorrupt wraps a decoder's failure, so the guard can tell it from a
// client that went away.
type errCorrupt struct{ err error }

func (e *errCorrupt) Error() string { return "compress: corrupt request body: " + e.err.Error() }
func (e *errCorrupt) Unwrap() error { return e.err }

func (b *boundedBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.dec == nil {
		b.wire.r = b.src
		d, err := b.c.dec.get(b.alg, &b.wire)
		if err == io.EOF && b.wire.err == nil {
			b.count(oDecompressed) // an empty body
			b.err = io.EOF
			return 0, io.EOF
		}
		if err != nil {
			return 0, b.setErr(err)
		}
		b.dec = d
	}
	// Read at most one byte past the limit, to tell "exactly the limit"
	// from "over it" without handing the extra byte on.
	if rem := b.limit - b.n + 1; int64(len(p)) > rem {
		p = p[:rem]
	}
	n, err := b.dec.Read(p)
	b.n += int64(n)
	if b.n > b.limit {
		n -= int(b.n - b.limit)
		b.n = b.limit
		b.err = &http.MaxBytesError{Limit: b.limit}
		b.fail = oTooLarge
		b.count(oTooLarge)
		return n, b.err
	}
	if err == io.EOF {
		b.count(oDecompressed)
		return n, io.EOF
	}
	if err != nil {
		return n, b.setErr(err)
	}
	return n, nil
}

func (b *boundedBody) setErr(err error) error {
	if b.wire.err != nil {
		// The client's connection (or a limit in front of us), not the
		// data: passed on as it is.
		b.err = b.wire.err
		return b.err
	}
	b.err = &errCorrupt{err}
	b.fail = oInvalid
	b.count(oInvalid)
	return b.err
}

// wireReader reads the encoded body and keeps the first error other than
// io.EOF, so that a failing connection is not taken for corrupt data.
type wireReader struct {
	r   io.Reader
	err error
}

func (w *wireReader) Read(p []byte) (int, error) {
	n, err := w.r.Read(p)
	if err != nil && err != io.EOF && w.err == nil {
		w.err = err
	}
	return n, err
}

func (b *boundedBody) count(o outcome) {
	if !b.done {
		b.done = true
		b.c.m.request(b.alg, o)
	}
}

func (b *boundedBody) Close() error { return b.src.Close() }

func (b *boundedBody) release() {
	if b.dec != nil {
		b.c.dec.put(b.alg, b.dec)
		b.dec = nil
	}
}

// tripped is the status that replaces the handler's response: 413 or
// 400, or 0 when the body is fine so far.
func (b *boundedBody) tripped() int {
	if b.err == nil {
		return 0
	}
	switch b.fail {
	case oTooLarge:
		return http.StatusRequestEntityTooLarge
	case oInvalid:
		return http.StatusBadRequest
	}
	return 0
}

// guardWriter replaces a handler's response with 413/400 when the body
// it read was refused, provided nothing has been sent yet.
type guardWriter struct {
	rw       http.ResponseWriter
	body     *boundedBody
	sent     bool // the handler's own response went out
	replaced bool // ours did
}

func (g *guardWriter) Header() http.Header { return g.rw.Header() }

func (g *guardWriter) replace() bool {
	if g.replaced {
		return true
	}
	if g.sent {
		return false
	}
	code := g.body.tripped()
	if code == 0 {
		return false
	}
	g.replaced = true
	// Drop what described the handler's representation; keep the rest
	// (CORS, security headers set by other filters).
	h := g.rw.Header()
	for _, k := range representationHeaders {
		delete(h, k)
	}
	msg := "request body exceeds the decompressed size limit"
	if code == http.StatusBadRequest {
		msg = "request body could not be decompressed"
	}
	http.Error(g.rw, msg, code)
	return true
}

var representationHeaders = []string{
	"Content-Encoding", "Content-Length", "Content-Range", "Content-Type",
	"Content-Disposition", "Content-Language", "Content-Location", "Etag",
	"Last-Modified", "Accept-Ranges", "Expires", "Cache-Control", "Vary", "Trailer",
}

func (g *guardWriter) WriteHeader(code int) {
	if g.replace() {
		return
	}
	if code >= 200 || code == http.StatusSwitchingProtocols {
		g.sent = true
	}
	g.rw.WriteHeader(code)
}

func (g *guardWriter) Write(p []byte) (int, error) {
	if g.replace() {
		return len(p), nil // swallowed: the client gets our answer
	}
	g.sent = true
	return g.rw.Write(p)
}

func (g *guardWriter) Flush() {
	if g.replace() {
		return
	}
	g.sent = true
	_ = http.NewResponseController(g.rw).Flush()
}

func (g *guardWriter) Unwrap() http.ResponseWriter { return g.rw }

// finish answers for a handler that returned without writing after its
// body was refused.
func (g *guardWriter) finish() { g.replace() }

package compress

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
)

// Compressor is one route's compression filter, built by New. It is
// immutable and safe for concurrent use.
type Compressor struct {
	enabled  bool
	prefs    []algorithm
	minSize  int
	patterns []pattern
	enc      *encoderPools

	decompress bool
	maxBytes   int64
	decAlgs    [numAlgorithms]bool
	decAccept  string // Accept-Encoding of a 415 answer
	dec        *decoderPools

	log *slog.Logger
	m   *routeMetrics
}

// Option configures New.
type Option func(*Compressor)

// WithLogger logs refused request bodies and encoder failures at debug
// level. The default discards.
func WithLogger(l *slog.Logger) Option {
	return func(c *Compressor) {
		if l != nil {
			c.log = l
		}
	}
}

// WithMetrics counts this route's responses and request bodies in m (nil:
// none) under the route label.
func WithMetrics(m *Metrics, route string) Option {
	return func(c *Compressor) { c.m = m.forRoute(route) }
}

// New validates cfg, applies its defaults and builds the filter.
func New(cfg Config, opts ...Option) (*Compressor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Compressor{
		enabled:    cfg.Enabled,
		minSize:    int(cfg.MinSize),
		decompress: cfg.DecompressRequests.Enabled,
		maxBytes:   int64(cfg.DecompressRequests.MaxBytes),
		log:        slog.New(slog.DiscardHandler),
	}
	algs := cfg.Algorithms
	if len(algs) == 0 {
		algs = defaultAlgorithms
	}
	for _, s := range algs {
		c.prefs = append(c.prefs, parseAlgorithm(s))
	}
	if c.minSize == 0 {
		c.minSize = defaultMinSize
	}
	types := cfg.ContentTypes
	if len(types) == 0 {
		types = defaultContentTypes
	}
	for _, s := range types {
		p, _ := parsePattern(s) // checked by Validate
		c.patterns = append(c.patterns, p)
	}
	var err error
	if c.enc, err = newEncoderPools(cfg.Levels); err != nil {
		return nil, err
	}
	if c.maxBytes == 0 {
		c.maxBytes = defaultMaxBytes
	}
	dalgs := cfg.DecompressRequests.Algorithms
	if len(dalgs) == 0 {
		dalgs = defaultAlgorithms
	}
	names := make([]string, 0, len(dalgs))
	for _, s := range dalgs {
		a := parseAlgorithm(s)
		c.decAlgs[a] = true
		names = append(names, a.String())
	}
	c.decAccept = strings.Join(names, ", ")
	c.dec = newDecoderPools()
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// Wrap returns the middleware in front of next: request bodies are
// decoded (when decompress_requests is on) before next reads them, and
// next's responses are compressed (when enabled) as it writes them. With
// both off it returns next. gRPC requests (Content-Type application/grpc*)
// and protocol upgrades (Upgrade, CONNECT) pass through untouched.
func (c *Compressor) Wrap(next http.Handler) http.Handler {
	if !c.enabled && !c.decompress {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isGRPC(r.Header.Get("Content-Type")) || r.Header.Get("Upgrade") != "" || r.Method == http.MethodConnect {
			next.ServeHTTP(w, r)
			return
		}
		if c.decompress && len(r.Header["Content-Encoding"]) > 0 {
			var done func()
			var ok bool
			if w, r, done, ok = c.decodeRequest(w, r); !ok {
				return
			}
			defer done()
		}
		if !c.enabled {
			next.ServeHTTP(w, r)
			return
		}
		cw := writerPool.Get().(*responseWriter)
		cw.init(c, w, r)
		defer cw.release()
		next.ServeHTTP(cw, r)
		cw.finish()
	})
}

func isGRPC(ct string) bool {
	typ, sub, ok := mediaType(ct)
	return ok && typ == "application" && (sub == "grpc" || strings.HasPrefix(sub, "grpc+") || strings.HasPrefix(sub, "grpc-"))
}

// allowed reports whether the Content-Type value ct is in the allow list.
func (c *Compressor) allowed(ct string) bool {
	typ, sub, ok := mediaType(ct)
	if !ok || typ == "application" && (sub == "grpc" || strings.HasPrefix(sub, "grpc+") || strings.HasPrefix(sub, "grpc-")) {
		return false
	}
	for _, p := range c.patterns {
		if p.match(typ, sub) {
			return true
		}
	}
	return false
}

var writerPool = sync.Pool{New: func() any { return new(responseWriter) }}

// responseWriter compresses what a handler writes. It lives for one
// request, on the handler's goroutine (as http.ResponseWriter does).
//
// States: before the handler's status is known nothing is sent; then,
// if the choice cannot be made from the headers alone (no Content-Length,
// or no Content-Type to sniff yet), up to minSize body bytes are held in
// buf; once decided, bytes go to enc (compressing) or straight to rw.
type responseWriter struct {
	c      *Compressor
	rw     http.ResponseWriter
	alg    algorithm // the coding the client accepts best; none if none
	method string
	noTx   bool // request Cache-Control: no-transform

	status   int  // status the handler chose; 0 before WriteHeader
	decided  bool // headers sent downstream
	reason   reason
	enc      encoder
	out      countingWriter
	in       int64
	buf      []byte
	bufShelf *[]byte
}

func (w *responseWriter) init(c *Compressor, rw http.ResponseWriter, r *http.Request) {
	acc := parseAcceptEncoding(r.Header["Accept-Encoding"])
	alg, _ := acc.choose(c.prefs)
	*w = responseWriter{
		c:      c,
		rw:     rw,
		alg:    alg,
		method: r.Method,
		noTx:   hasToken(r.Header["Cache-Control"], "no-transform"),
	}
	w.out.w = rw
}

func (w *responseWriter) release() {
	if w.enc != nil {
		// The handler panicked mid-body; the encoder is reset on reuse.
		w.c.enc.put(w.alg, w.enc)
	}
	if w.bufShelf != nil {
		*w.bufShelf = w.buf[:0]
		bufPool.Put(w.bufShelf)
	}
	*w = responseWriter{}
	writerPool.Put(w)
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// Header returns the downstream header map: until the response is
// decided, the handler and this writer edit the same headers.
func (w *responseWriter) Header() http.Header { return w.rw.Header() }

// WriteHeader records the status. Informational answers (103 Early
// Hints, 100 Continue) go out at once; 101 ends any compression.
func (w *responseWriter) WriteHeader(code int) {
	if w.status != 0 {
		if w.decided {
			w.rw.WriteHeader(code) // let net/http report the superfluous call
		}
		return
	}
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		w.rw.WriteHeader(code)
		return
	}
	w.status = code
	w.decideFromHeaders()
}

// decideFromHeaders makes every choice the headers allow; it leaves the
// response undecided only when the body must be seen first.
func (w *responseWriter) decideFromHeaders() {
	h := w.rw.Header()
	ct, hasCT := h["Content-Type"]
	switch {
	case w.status == http.StatusSwitchingProtocols:
		w.skip(rUpgrade, false)
	case w.status < 200 || w.status == http.StatusNoContent || w.status == http.StatusNotModified:
		w.skip(rStatus, false)
	case len(h["Content-Encoding"]) > 0:
		w.skip(rEncoded, false)
	case w.status == http.StatusPartialContent || len(h["Content-Range"]) > 0:
		w.skip(rRange, false)
	case w.noTx || hasToken(h["Cache-Control"], "no-transform"):
		w.skip(rNoTransform, false)
	case hasCT && (len(ct) == 0 || !w.c.allowed(ct[0])):
		// An explicit nil Content-Type stops net/http's sniffing: unknown.
		w.skip(rType, false)
	case hasCT && w.method == http.MethodHead:
		w.skip(rMethod, true)
	case hasCT && w.alg == none:
		w.skip(rClient, true)
	default:
		if cl := h.Get("Content-Length"); cl != "" {
			n, ok := parseLength(cl)
			if ok && n < int64(w.c.minSize) {
				w.skip(rSize, false)
				return
			}
			if ok && hasCT {
				w.start()
				return
			}
		}
		// Undecided: wait for minSize bytes (or the end, or a Flush), and
		// for them to sniff a Content-Type from when there is none.
	}
}

// decideFromBody makes the remaining choice once the first body bytes
// (b, possibly all of them when final) are known.
func (w *responseWriter) decideFromBody(b []byte, final bool) {
	h := w.rw.Header()
	if _, ok := h["Content-Type"]; !ok {
		// What net/http would do on the first Write; done here because it
		// must look at the uncompressed bytes.
		h.Set("Content-Type", http.DetectContentType(b))
		if !w.c.allowed(h.Get("Content-Type")) {
			w.skip(rType, false)
			return
		}
		switch {
		case w.method == http.MethodHead:
			w.skip(rMethod, true)
			return
		case w.alg == none:
			w.skip(rClient, true)
			return
		}
	}
	if final && len(b) < w.c.minSize {
		w.skip(rSize, false)
		return
	}
	w.start()
}

// skip sends the response as is; vary adds Vary: Accept-Encoding because
// another request's Accept-Encoding would have got it compressed.
func (w *responseWriter) skip(r reason, vary bool) {
	if vary {
		addVary(w.rw.Header())
	}
	w.reason = r
	w.decided = true
	w.rw.WriteHeader(w.status)
	w.c.m.response(none, r, 0, 0)
}

// start sends the headers of a compressed response and takes an encoder.
func (w *responseWriter) start() {
	h := w.rw.Header()
	h.Del("Content-Length")
	// Byte ranges of the compressed form cannot be served by the backend.
	h.Del("Accept-Ranges")
	h["Content-Encoding"] = []string{w.alg.String()}
	addVary(h)
	if et := h.Get("Etag"); et != "" && !strings.HasPrefix(et, "W/") {
		// A different byte sequence: no longer strongly equal (as nginx).
		h.Set("Etag", "W/"+et)
	}
	w.reason = compressed
	w.decided = true
	w.rw.WriteHeader(w.status)
	w.enc = w.c.enc.get(w.alg, &w.out)
}

func (w *responseWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.decided {
		return w.writeBody(p)
	}
	if len(w.buf) == 0 && len(p) >= w.c.minSize {
		w.decideFromBody(p, false)
		return w.writeBody(p)
	}
	if w.bufShelf == nil {
		w.bufShelf = bufPool.Get().(*[]byte)
		w.buf = (*w.bufShelf)[:0]
	}
	w.buf = append(w.buf, p...)
	if len(w.buf) >= w.c.minSize {
		if err := w.drain(false); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// drain decides on what is buffered and writes it out.
func (w *responseWriter) drain(final bool) error {
	w.decideFromBody(w.buf, final)
	_, err := w.writeBody(w.buf)
	w.buf = w.buf[:0]
	return err
}

func (w *responseWriter) writeBody(p []byte) (int, error) {
	if w.enc == nil {
		return w.rw.Write(p)
	}
	w.in += int64(len(p))
	return w.enc.Write(p)
}

// Flush sends what was written so far: a response still undecided is
// treated as a stream and compressed when eligible, the encoder emits
// its pending block, and the connection is flushed.
func (w *responseWriter) Flush() {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if !w.decided {
		if len(w.buf) == 0 {
			// Nothing to sniff from or measure: a stream that has not
			// started. Compress only with a known allowed type.
			if _, ok := w.rw.Header()["Content-Type"]; ok {
				w.start()
			} else {
				w.skip(rType, false)
			}
		} else if err := w.drain(false); err != nil {
			return
		}
	}
	if w.enc != nil {
		if err := w.enc.Flush(); err != nil {
			return
		}
	}
	_ = http.NewResponseController(w.rw).Flush()
}

// Unwrap lets http.ResponseController reach the connection's writer
// (deadlines; Flush comes here first).
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.rw }

// finish runs after the handler returns: a buffered body is decided on
// with its full length known, and the encoder is closed.
func (w *responseWriter) finish() {
	if w.status == 0 {
		return // nothing written: net/http sends 200 with no body
	}
	if !w.decided {
		if len(w.buf) == 0 {
			// WriteHeader without a body: nothing to compress.
			w.skip(rSize, false)
			return
		}
		if err := w.drain(true); err != nil {
			w.c.logf("compress: writing response", err)
			return
		}
	}
	if w.enc != nil {
		err := w.enc.Close()
		w.c.enc.put(w.alg, w.enc)
		w.enc = nil
		if err != nil {
			w.c.logf("compress: closing encoder", err)
		}
		w.c.m.response(w.alg, compressed, w.in, w.out.n)
	}
}

func (c *Compressor) logf(msg string, err error) {
	if c.log.Enabled(context.Background(), slog.LevelDebug) {
		c.log.Debug(msg, "err", err)
	}
}

// countingWriter counts the compressed bytes sent.
type countingWriter struct {
	w io.Writer
	n int64
}

func (cw *countingWriter) Write(p []byte) (int, error) {
	n, err := cw.w.Write(p)
	cw.n += int64(n)
	return n, err
}

func parseLength(s string) (int64, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

package http1

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
)

// Byte classes (RFC 9110 section 5.6.2 and 5.5).
var (
	// tokenByte: tchar, the bytes of a method or field name.
	tokenByte [256]bool
	// valueByte: bytes allowed in a field value: VCHAR, SP, HTAB and
	// obs-text (net/textproto and httpguts.ValidHeaderFieldValue agree).
	valueByte [256]bool
	// hostByte: httpguts.ValidHostHeader's lenient set for Host values.
	hostByte [256]bool
)

func init() {
	for c := '0'; c <= '9'; c++ {
		tokenByte[c], hostByte[c] = true, true
	}
	for c := 'a'; c <= 'z'; c++ {
		tokenByte[c], hostByte[c] = true, true
		tokenByte[c-'a'+'A'], hostByte[c-'a'+'A'] = true, true
	}
	for _, c := range []byte("!#$%&'*+-.^_`|~") {
		tokenByte[c] = true
	}
	for _, c := range []byte("!$%&()*+,-.:;=['_]~") {
		hostByte[c] = true
	}
	for c := 0x20; c < 0x100; c++ {
		valueByte[c] = c != 0x7f
	}
	valueByte['\t'] = true
}

func isOWS(c byte) bool { return c == ' ' || c == '\t' }

// Head syntax errors; the callers turn them into *Error with their status.
var (
	errTooLarge     = errors.New("head too large")
	errEmptyLine    = errors.New("empty first line")
	errInitialSpace = errors.New("whitespace before the first field")
	errFieldName    = errors.New("invalid field name or no colon")
	errFieldValue   = errors.New("invalid field value")
	// Request-only strictness (see compat.go): net/http accepts these.
	errBareLF      = errors.New("line ending without CR")
	errRequestLine = errors.New("malformed request line")
	errObsFold     = errors.New("obsolete line folding")
)

// readHead appends one head (start line up to and including the empty
// line that ends the field section) from br to buf[:0] and returns it.
// Lines end at LF with an optional CR before it, as net/textproto reads
// them. It returns io.EOF if br ends before the first byte,
// io.ErrUnexpectedEOF if it ends inside the head, errEmptyLine if the
// first line is empty (net/http rejects it before reading on), and
// errTooLarge once the head exceeds limit bytes.
//
// A request head (request set) is held to RFC 9112 strictly: every line
// ends in CRLF (a bare LF is errBareLF), and the request line must hold
// its two spaces once it ends (else errRequestLine, returned at once: an
// HTTP/0.9 "GET /" line is refused without waiting for a head that will
// never come).
func readHead(br *bufio.Reader, buf []byte, limit int, request bool) ([]byte, error) {
	buf = buf[:0]
	lineStart := 0 // offset of the current line in the head
	first := true
	for {
		if br.Buffered() == 0 {
			if _, err := br.Peek(1); err != nil {
				if err == io.EOF {
					if len(buf) == 0 {
						return buf, io.EOF
					}
					err = io.ErrUnexpectedEOF
				}
				return buf, err
			}
		}
		b, _ := br.Peek(br.Buffered())
		base := len(buf)
		end := -1
		for i := 0; ; {
			j := bytes.IndexByte(b[i:], '\n')
			if j < 0 {
				break
			}
			nl := base + i + j
			n := nl - lineStart
			if request && (n == 0 || byteAt(buf, b, nl-1) != '\r') {
				if first && n == 0 {
					return buf, errEmptyLine
				}
				return buf, errBareLF
			}
			if n == 0 || n == 1 && byteAt(buf, b, lineStart) == '\r' {
				if first {
					return buf, errEmptyLine
				}
				end = i + j + 1
				break
			}
			if first && request && bytes.Count(buf, sp)+bytes.Count(b[:i+j], sp) < 2 {
				// While first is set buf holds only the request line's
				// start and b[:i] is empty.
				return buf, errRequestLine
			}
			first = false
			lineStart = nl + 1
			i += j + 1
		}
		take := len(b)
		if end >= 0 {
			take = end
		}
		if base+take > limit {
			return buf, errTooLarge
		}
		buf = append(buf, b[:take]...)
		_, _ = br.Discard(take) // cannot fail: take bytes are buffered
		if end >= 0 {
			return buf, nil
		}
	}
}

// byteAt returns byte i of the stream whose first len(buf) bytes are in
// buf and the rest in b.
func byteAt(buf, b []byte, i int) byte {
	if i < len(buf) {
		return buf[i]
	}
	return b[i-len(buf)]
}

// cutLine returns p's first line without its line ending, and the rest.
// p must contain a LF.
func cutLine(p []byte) (line, rest []byte) {
	i := bytes.IndexByte(p, '\n')
	line, rest = p[:i], p[i+1:]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	return line, rest
}

// fieldScanner walks the field lines of a header or trailer section, p,
// which ends with the section's empty line. It follows net/textproto's
// ReadMIMEHeader: the first line may not start with whitespace, a line
// starting with SP or HTAB continues the previous one (obs-fold: the
// pieces are trimmed and joined with one SP, rewriting p in place), the
// name ends at the first colon and leading whitespace of the value is
// dropped. Unlike textproto it keeps the name's case.
//
// It makes one pass over each line, validating as it looks for the colon
// and the line end: both are bytes the name and value may not contain.
type fieldScanner struct {
	p   []byte
	pos int
	// noFold makes obs-fold errObsFold (requests, RFC 9112 section 5.2).
	noFold bool
}

// next parses the next field into f. done is set at the empty line,
// after which s.pos is just past it. space reports a SP in the name
// (textproto accepts it, net/http's server then rejects the request).
func (s *fieldScanner) next(f *Field) (space, done bool, err error) {
	p := s.p
	start := s.pos
	switch p[start] {
	case '\n':
		s.pos = start + 1
		return false, true, nil
	case '\r':
		if p[start+1] == '\n' {
			s.pos = start + 2
			return false, true, nil
		}
	case ' ', '\t':
		if start == 0 {
			return false, false, errInitialSpace
		}
	}
	i := start
	for tokenByte[p[i]] {
		i++
	}
	if p[i] == ' ' {
		space = true
		for tokenByte[p[i]] || p[i] == ' ' {
			i++
		}
	}
	if p[i] != ':' || i == start {
		return false, false, errFieldName // or no colon: the same 400
	}
	colon := i
	vs := colon + 1
	le, nl, err := valueEnd(p, vs)
	if err != nil {
		return false, false, err
	}
	w := le
	for w > vs && isOWS(p[w-1]) {
		w--
	}
	s.pos = nl + 1
	if s.noFold && isOWS(p[s.pos]) {
		return false, false, errObsFold
	}
	for isOWS(p[s.pos]) {
		// obs-fold: join the continuation line with one SP.
		i := s.pos
		for isOWS(p[i]) {
			i++
		}
		e, nl, err := valueEnd(p, i)
		if err != nil {
			return false, false, err
		}
		for e > i && isOWS(p[e-1]) {
			e--
		}
		p[w] = ' '
		w++
		w += copy(p[w:], p[i:e])
		s.pos = nl + 1
	}
	for vs < w && isOWS(p[vs]) {
		vs++
	}
	f.Name = p[start:colon:colon]
	f.Value = p[vs:w:w]
	return space, false, nil
}

// valueEnd scans field-value bytes from p[i] to the line end and returns
// the index of the line end (its CR, or its LF) and of its LF. A byte not
// allowed in a value is errFieldValue. p must end with a LF.
func valueEnd(p []byte, i int) (le, nl int, err error) {
	// Eight bytes at a time while none is a control byte or DEL (the LF
	// that ends the line is one).
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	for i+8 <= len(p) {
		x := binary.LittleEndian.Uint64(p[i:])
		y := x ^ (0x7f * ones)
		if ((x-0x20*ones)&^x|(y-ones)&^y)&highs != 0 {
			break
		}
		i += 8
	}
	for valueByte[p[i]] {
		i++
	}
	switch {
	case p[i] == '\n':
		return i, i, nil
	case p[i] == '\r' && p[i+1] == '\n':
		return i, i + 1, nil
	}
	return 0, 0, errFieldValue
}

// parseVersion parses "HTTP/x.y" like net/http.ParseHTTPVersion.
func parseVersion(v []byte) (major, minor int, ok bool) {
	switch string(v) {
	case "HTTP/1.1":
		return 1, 1, true
	case "HTTP/1.0":
		return 1, 0, true
	}
	if len(v) != len("HTTP/x.y") || string(v[:5]) != "HTTP/" || v[6] != '.' ||
		!isDigit(v[5]) || !isDigit(v[7]) {
		return 0, 0, false
	}
	return int(v[5] - '0'), int(v[7] - '0'), true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// headFacts is what the framing rules need from a field section,
// gathered in one pass over the fields.
type headFacts struct {
	hosts      int
	host       []byte
	cls        int
	cl         []byte // first Content-Length value
	clConflict bool   // Content-Length values that differ
	tes        int
	te         []byte // first Transfer-Encoding value
	trailer    bool   // a Trailer field exists
	expect     []byte // first Expect value
	hasExpect  bool
	upgrade    []byte // first Upgrade value
	connClose  bool   // Connection lists close
	connKeep   bool   // Connection lists keep-alive
	connUpg    bool   // Connection lists upgrade
	conns      int    // Connection fields
	space      bool   // a field name contains SP
}

// parseFields parses the field section p (ending with its empty line)
// into fields and the facts about them.
func parseFields(p []byte, fields []Field, hf *headFacts, noFold bool) ([]Field, error) {
	s := fieldScanner{p: p, noFold: noFold}
	for {
		var f Field
		space, done, err := s.next(&f)
		if err != nil {
			return fields, err
		}
		if done {
			return fields, nil
		}
		hf.space = hf.space || space
		fields = append(fields, f)
		hf.note(f.Name, f.Value)
	}
}

// note records the framing-relevant facts of field n: v.
func (hf *headFacts) note(n, v []byte) {
	switch len(n) {
	case len("host"):
		if equalFold(n, "host") {
			hf.hosts++
			if hf.hosts == 1 {
				hf.host = v
			}
		}
	case len("expect"):
		if equalFold(n, "expect") && !hf.hasExpect {
			hf.hasExpect, hf.expect = true, v
		}
	case len("trailer"): // and "upgrade"
		if equalFold(n, "trailer") {
			hf.trailer = true
		} else if equalFold(n, "upgrade") && hf.upgrade == nil {
			hf.upgrade = v
		}
	case len("connection"):
		if equalFold(n, "connection") {
			hf.conns++
			hf.connClose = hf.connClose || hasListToken(v, "close")
			hf.connKeep = hf.connKeep || hasListToken(v, "keep-alive")
			hf.connUpg = hf.connUpg || hasListToken(v, "upgrade")
		}
	case len("content-length"):
		if equalFold(n, "content-length") {
			hf.cls++
			if hf.cls == 1 {
				hf.cl = v
			} else if !bytes.Equal(trimSpace(hf.cl), trimSpace(v)) {
				hf.clConflict = true
			}
		}
	case len("transfer-encoding"):
		if equalFold(n, "transfer-encoding") {
			hf.tes++
			if hf.tes == 1 {
				hf.te = v
			}
		}
	}
}

// transfer applies net/http's readTransfer rules (RFC 9112 section 6):
// Transfer-Encoding is honoured from HTTP/1.1 on and must be exactly one
// "chunked" (else errUnsupportedTE); Content-Length values must agree and
// be plain decimal (else errBadLength), and chunked overrides them.
// major.minor 0.0 counts as 1.1, as in net/http.
func (hf *headFacts) transfer(major, minor int) (chunked bool, cl int64, err error) {
	cl = -1
	if hf.tes > 0 && (major > 1 || major == 1 && minor >= 1 || major == 0 && minor == 0) {
		if hf.tes != 1 || !equalFold(hf.te, "chunked") {
			return false, 0, errUnsupportedTE
		}
		chunked = true
	}
	if hf.clConflict {
		return false, 0, errBadLength
	}
	if hf.cls > 0 {
		var ok bool
		if cl, ok = parseLength(trimSpace(hf.cl)); !ok {
			return false, 0, errBadLength
		}
	}
	return chunked, cl, nil
}

var (
	errUnsupportedTE = errors.New("unsupported transfer encoding")
	errBadLength     = errors.New("invalid or conflicting Content-Length")
	errBothLengths   = errors.New("both Content-Length and Transfer-Encoding")
	errBadTrailer    = errors.New("trailer declaration names a framing field")
)

// checkTrailerDecl rejects a Trailer field that announces
// Transfer-Encoding, Trailer or Content-Length, as net/http does for
// chunked messages.
func checkTrailerDecl(fields []Field) error {
	for _, f := range fields {
		if !equalFold(f.Name, "trailer") {
			continue
		}
		for v := f.Value; len(v) > 0; {
			var e []byte
			e, v = cutComma(v)
			e = trimSpace(e)
			if equalFold(e, "transfer-encoding") || equalFold(e, "trailer") || equalFold(e, "content-length") {
				return errBadTrailer
			}
		}
	}
	return nil
}

// parseLength parses a Content-Length value: 1 to 18 decimal digits or a
// value that fits in 63 bits (strconv.ParseUint(s, 10, 63)).
func parseLength(v []byte) (int64, bool) {
	if len(v) == 0 {
		return 0, false
	}
	var n uint64
	for _, c := range v {
		if !isDigit(c) {
			return 0, false
		}
		if n > (1<<63-1)/10 {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
		if n > 1<<63-1 {
			return 0, false
		}
	}
	return int64(n), true
}

// trimSpace trims ASCII whitespace like textproto.TrimString.
func trimSpace(b []byte) []byte {
	for len(b) > 0 && isASCIISpace(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isASCIISpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

func isASCIISpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// cutComma returns the list element before the first comma and the rest.
func cutComma(v []byte) (elem, rest []byte) {
	if i := bytes.IndexByte(v, ','); i >= 0 {
		return v[:i], v[i+1:]
	}
	return v, nil
}

// hasListToken reports whether the comma-separated list v contains token
// (ASCII case-insensitive, OWS around elements ignored), like
// httpguts.HeaderValuesContainsToken.
func hasListToken(v []byte, token string) bool {
	for len(v) > 0 {
		var e []byte
		e, v = cutComma(v)
		if equalFold(trimOWS(e), token) {
			return true
		}
	}
	return false
}

// hasToken reports whether token appears in v delimited by SP, HTAB,
// comma or the ends, like net/http's hasToken (used for Expect).
func hasToken(v []byte, token string) bool {
	for sp := 0; sp+len(token) <= len(v); sp++ {
		if sp > 0 && !isTokenBoundary(v[sp-1]) {
			continue
		}
		if end := sp + len(token); end != len(v) && !isTokenBoundary(v[end]) {
			continue
		}
		if equalFold(v[sp:sp+len(token)], token) {
			return true
		}
	}
	return false
}

func isTokenBoundary(c byte) bool { return c == ' ' || c == ',' || c == '\t' }

// trimOWS trims SP and HTAB.
func trimOWS(b []byte) []byte {
	for len(b) > 0 && isOWS(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isOWS(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

// equalFold reports whether b equals s, ASCII case-insensitively.
func equalFold[S string | []byte](b []byte, s S) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		x, y := b[i], s[i]
		if x == y {
			continue
		}
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// shouldClose is net/http's shouldClose: HTTP/0.x always closes, HTTP/1.0
// unless it asked for keep-alive, later versions when asked to.
func (hf *headFacts) shouldClose(major, minor int) bool {
	switch {
	case major < 1:
		return true
	case major == 1 && minor == 0:
		return hf.connClose || !hf.connKeep
	}
	return hf.connClose
}

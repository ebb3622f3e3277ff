package http1

import (
	"bufio"
	"bytes"
	"net/url"
	"strconv"
	"strings"
)

// Read parses one request head from br into h, reusing h's buffers: h's
// slices point into a buffer owned by h and stay valid until the next Read
// on h. maxHeaderBytes (<= 0 means DefaultMaxHeaderBytes) bounds the head
// from the request line through the empty line. The body, if any, is left
// in br for CopyBody.
//
// It returns io.EOF when br ends cleanly before any byte of a new request
// (a keep-alive connection closing), *Error for a malformed or
// unacceptable request (Status 400, 417, 431, 501 or 505, the status
// net/http's server answers with), io.ErrUnexpectedEOF if the head was cut
// short, and br's error for other I/O failures. On error h holds no
// request.
//
// Read blocks until a whole head has arrived; callers bound it with a
// read deadline on the connection.
func (h *RequestHead) Read(br *bufio.Reader, maxHeaderBytes int) error {
	return h.ReadLimits(br, maxHeaderBytes, 0)
}

// ReadLimits is Read with a bound on the number of header fields too:
// more than maxFields (<= 0 means DefaultMaxFields) is a 431.
func (h *RequestHead) ReadLimits(br *bufio.Reader, maxHeaderBytes, maxFields int) error {
	if maxHeaderBytes <= 0 {
		maxHeaderBytes = DefaultMaxHeaderBytes
	}
	if maxFields <= 0 {
		maxFields = DefaultMaxFields
	}
	// net/http tolerates up to four stray CR/LF bytes after a POST body
	// (RFC 9112 section 2.2: clients that add a CRLF after the body).
	if string(h.Method) == "POST" {
		peek, _ := br.Peek(4)
		n := 0
		for n < len(peek) && (peek[n] == '\r' || peek[n] == '\n') {
			n++
		}
		_, _ = br.Discard(n)
	}
	raw, err := readHead(br, h.raw, maxHeaderBytes, true)
	*h = RequestHead{raw: raw, Header: Header{Fields: h.Header.Fields[:0], arena: h.Header.arena[:0]}}
	switch err {
	case nil:
	case errTooLarge:
		return &Error{Status: 431, Reason: "request head too large"}
	case errEmptyLine:
		return &Error{Status: 400, Reason: "empty request line"}
	case errBareLF, errRequestLine:
		return badRequest(err.Error())
	default:
		return err
	}
	if err := h.parse(raw, maxFields); err != nil {
		h.Header.Fields = h.Header.Fields[:0]
		return err
	}
	return nil
}

func badRequest(reason string) *Error { return &Error{Status: 400, Reason: reason} }

// parse parses the head in raw, applying net/http's checks in the order
// net/http applies them, so a request with several faults gets the same
// status.
func (h *RequestHead) parse(raw []byte, maxFields int) error {
	line, fields := cutLine(raw)
	method, rest, ok1 := bytes.Cut(line, sp)
	target, proto, ok2 := bytes.Cut(rest, sp)
	if !ok1 || !ok2 {
		return badRequest("malformed request line")
	}
	if len(method) == 0 {
		return badRequest("invalid method")
	}
	for _, c := range method {
		if !tokenByte[c] {
			return badRequest("invalid method")
		}
	}
	major, minor, ok := parseVersion(proto)
	if !ok {
		return badRequest("malformed HTTP version")
	}
	if !validTarget(method, target) {
		return badRequest("invalid request target")
	}
	var authority []byte
	if len(target) > 0 && target[0] != '/' && string(target) != "*" && string(method) != "CONNECT" {
		if authority, ok = absoluteAuthority(target); !ok {
			return badRequest(reasonAbsoluteForm)
		}
	}

	var hf headFacts
	var err error
	h.Header.Fields, err = parseFields(fields, h.Header.Fields, &hf, true)
	if err != nil {
		return badRequest(err.Error())
	}
	if len(h.Header.Fields) > maxFields {
		return &Error{Status: 431, Reason: reasonTooManyFields}
	}
	if hf.hosts > 1 {
		return badRequest("too many Host fields")
	}
	if authority != nil && hf.hosts == 1 && !equalFold(trimOWS(hf.host), authority) {
		// RFC 9112 section 3.2.2 makes the target's authority the one that
		// counts; a Host that names another lets a request be routed or
		// authorized by one and served by the other.
		return badRequest(reasonHostMismatch)
	}
	if authority != nil && hf.hosts == 0 && major == 1 && minor == 0 {
		// HTTP/1.0 without Host: the authority becomes the Host the next
		// hop (which speaks HTTP/1.1) needs.
		h.Header.Add("Host", string(authority))
		hf.hosts, hf.host = 1, h.Header.Fields[len(h.Header.Fields)-1].Value
	}
	if hf.cls > 1 {
		// net/http merges identical values; a proxy that forwards what an
		// ambiguous message means to it is how smuggling starts.
		return badRequest(reasonDuplicateLength)
	}
	if hf.tes > 0 && major == 1 && minor == 0 {
		// RFC 9112 section 6.1: faulty framing, whatever Content-Length says.
		return badRequest(reasonTE10)
	}
	h.Close = hf.shouldClose(major, minor)
	chunked, cl, err := hf.transfer(major, minor)
	if err == nil && chunked && hf.cls > 0 {
		// Deliberately stricter than net/http (which drops the
		// Content-Length): a request framed both ways is the classic
		// smuggling vector, and RFC 9112 section 6.1 lets a server reject it.
		err = errBothLengths
	}
	switch {
	case err == errUnsupportedTE:
		return &Error{Status: 501, Reason: err.Error()}
	case err != nil:
		return badRequest(err.Error())
	case chunked:
		if hf.trailer {
			if err := checkTrailerDecl(h.Header.Fields); err != nil {
				return badRequest(err.Error())
			}
		}
		h.Body, h.ContentLength = BodyChunked, -1
	case cl >= 0:
		h.Body, h.ContentLength = BodyLength, cl
	}
	if major != 1 {
		// net/http also accepts "PRI * HTTP/2.0" (the h2c preface) for
		// handlers to take over; this codec is HTTP/1 only.
		return &Error{Status: 505, Reason: "unsupported HTTP version"}
	}
	if hf.hosts == 0 && minor >= 1 && string(method) != "CONNECT" {
		return badRequest("missing Host field")
	}
	for _, c := range hf.host {
		if !hostByte[c] {
			return badRequest("malformed Host field")
		}
	}
	if hf.space {
		return badRequest("whitespace in a field name")
	}
	if hasToken(hf.expect, "100-continue") {
		// An HTTP/1.0 client expects nothing (RFC 9110 section 10.1.1).
		h.Expect100 = minor >= 1
	} else if len(hf.expect) > 0 {
		return &Error{Status: 417, Reason: "unsupported expectation"}
	}

	h.Method = method[:len(method):len(method)]
	h.Target = target[:len(target):len(target)]
	h.Minor = min(minor, 1) // HTTP/1.2 and up are served as 1.1 (RFC 9110 section 2.5)
	h.Host = hf.host
	h.conns = hf.conns
	if hf.connUpg && minor >= 1 && len(hf.upgrade) > 0 {
		h.Upgrade = hf.upgrade
	}
	return nil
}

var sp = []byte{' '}

// Reasons for the checks that are stricter than net/http (compat.go).
const (
	reasonAbsoluteForm    = "absolute-form target without an http or https authority"
	reasonTooManyFields   = "too many header fields"
	reasonHostMismatch    = "Host disagrees with the request target's authority"
	reasonDuplicateLength = "more than one Content-Length field"
	reasonTE10            = "Transfer-Encoding in an HTTP/1.0 request"
)

// validTarget reports whether net/http accepts target as a request-target:
// url.ParseRequestURI, on "http://"+target for CONNECT's authority form.
// Origin-form targets, the hot path, are checked here without allocating
// (the same rules: no control bytes, valid %-escapes in the path); other
// forms go through net/url.
func validTarget(method, target []byte) bool {
	if len(target) > 0 && target[0] == '/' {
		// Escapes are checked in the path only: ParseRequestURI does not
		// decode the query.
		pathEnd := bytes.IndexByte(target, '?')
		if pathEnd < 0 {
			pathEnd = len(target)
		}
		for i, c := range target {
			if c < 0x20 || c == 0x7f {
				return false
			}
			if c == '%' && i < pathEnd && (i+2 >= pathEnd || !isHex(target[i+1]) || !isHex(target[i+2])) {
				return false
			}
		}
		return true
	}
	if string(method) == "CONNECT" {
		_, err := url.ParseRequestURI("http://" + string(target))
		return err == nil
	}
	if string(target) == "*" {
		return true
	}
	_, err := url.ParseRequestURI(string(target))
	return err == nil
}

// absoluteAuthority returns the authority of an absolute-form target, as
// sent; ok is false unless the scheme is http or https and an authority
// without userinfo is present (RFC 9110 section 4.2.4 deprecates
// userinfo in http URIs).
func absoluteAuthority(target []byte) (authority []byte, ok bool) {
	u, err := url.ParseRequestURI(string(target))
	if err != nil || u.Host == "" || u.Opaque != "" || u.User != nil ||
		!strings.EqualFold(u.Scheme, "http") && !strings.EqualFold(u.Scheme, "https") {
		return nil, false
	}
	// The authority as sent (u.Host has it unescaped).
	if len(target) < len(u.Scheme)+3 || string(target[len(u.Scheme):len(u.Scheme)+3]) != "://" {
		return nil, false
	}
	rest := target[len(u.Scheme)+len("://"):]
	if i := bytes.IndexAny(rest, "/?"); i >= 0 {
		rest = rest[:i]
	}
	for _, c := range rest {
		if !hostByte[c] {
			return nil, false // what a Host field may not hold
		}
	}
	return rest, true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// Query returns the value of the first parameter called name in the query
// of the request target. The name is matched after decoding %-escapes and
// '+' in the target's parameter names, as url.ParseQuery decodes them
// (parameters with a ';' or a bad escape in their name are skipped, as
// ParseQuery skips them); the value is returned raw, still %-escaped.
func (h *RequestHead) Query(name string) ([]byte, bool) {
	q := h.Target
	i := bytes.IndexByte(q, '?')
	if i < 0 {
		return nil, false
	}
	q = q[i+1:]
	if i := bytes.IndexByte(q, '#'); i >= 0 {
		q = q[:i]
	}
	for len(q) > 0 {
		var kv []byte
		if i := bytes.IndexByte(q, '&'); i >= 0 {
			kv, q = q[:i], q[i+1:]
		} else {
			kv, q = q, nil
		}
		if bytes.IndexByte(kv, ';') >= 0 {
			continue
		}
		if len(kv) == 0 {
			continue
		}
		k, v := kv, kv[len(kv):]
		if i := bytes.IndexByte(kv, '='); i >= 0 {
			k, v = kv[:i], kv[i+1:]
		}
		if queryNameIs(k, name) {
			return v, true
		}
	}
	return nil, false
}

// queryNameIs reports whether the escaped query name k decodes to name.
func queryNameIs(k []byte, name string) bool {
	j := 0
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch c {
		case '+':
			c = ' '
		case '%':
			if i+2 >= len(k) || !isHex(k[i+1]) || !isHex(k[i+2]) {
				return false
			}
			c = unhex(k[i+1])<<4 | unhex(k[i+2])
			i += 2
		}
		if j >= len(name) || name[j] != c {
			return false
		}
		j++
	}
	return j == len(name)
}

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}

// AppendWire appends the head as a proxy forwards it, and returns the
// extended slice:
//
//   - the request line, as HTTP/1.1 with the same method and target;
//   - every field in order, names in their received case, except the
//     hop-by-hop ones (RFC 9110 section 7.6.1): Connection and the fields
//     it names (but never Host), Keep-Alive, Proxy-Connection, TE,
//     Transfer-Encoding, Content-Length, Upgrade and the reserved name
//     Close (RFC 9112 section 9.6); Trailer is end-to-end and kept;
//   - "TE: trailers" if a TE field listed trailers, as
//     httputil.ReverseProxy forwards it;
//   - the framing for h.Body: "Content-Length: N" for BodyLength,
//     "Transfer-Encoding: chunked" for BodyChunked;
//   - "Connection: upgrade" and "Upgrade: <h.Upgrade>" if h.Upgrade != nil;
//   - "Connection: close" if h.Close;
//   - the empty line.
//
// Framing comes from h.Body, h.ContentLength, h.Upgrade and h.Close, not
// from the fields, so a caller changes those to change framing (clearing
// Close to keep a pooled upstream connection, for instance). A request
// without Host (HTTP/1.0, CONNECT) is written without one; callers add it
// with Header.Set when the upstream needs it.
func (h *RequestHead) AppendWire(dst []byte) []byte {
	dst = append(dst, h.Method...)
	dst = append(dst, ' ')
	dst = append(dst, h.Target...)
	dst = append(dst, " HTTP/1.1\r\n"...)
	dst, teName := appendEndToEnd(dst, h.Header.Fields, false)
	if teName != nil {
		dst = appendField(dst, teName, "trailers")
	}
	switch h.Body {
	case BodyLength:
		dst = append(dst, "Content-Length: "...)
		dst = strconv.AppendInt(dst, h.ContentLength, 10)
		dst = append(dst, "\r\n"...)
	case BodyChunked:
		dst = append(dst, "Transfer-Encoding: chunked\r\n"...)
	}
	if h.Upgrade != nil {
		dst = append(dst, "Connection: upgrade\r\nUpgrade: "...)
		dst = append(dst, h.Upgrade...)
		dst = append(dst, "\r\n"...)
	}
	if h.Close {
		dst = append(dst, "Connection: close\r\n"...)
	}
	return append(dst, "\r\n"...)
}

// DropConnectionFields removes the Connection fields and the fields they
// name (never Host), as AppendWire would leave them out. A proxy calls it
// before adding fields of its own, so a client cannot make it drop them
// by naming them in Connection ("Connection: X-Forwarded-For"). Framing
// already read (Close, Upgrade) is kept; AppendWire writes it.
func (h *RequestHead) DropConnectionFields() {
	if h.conns == 0 {
		return
	}
	// The Connection fields are kept aside (views into the head) so the
	// fields can be filtered in place.
	var buf [4]Field
	conns := buf[:0]
	for _, f := range h.Header.Fields {
		if equalFold(f.Name, "connection") {
			conns = append(conns, f)
		}
	}
	kept := h.Header.Fields[:0]
	for _, f := range h.Header.Fields {
		// Hop-by-hop names stay for AppendWire to drop (it forwards
		// "TE: trailers" from them).
		if equalFold(f.Name, "connection") ||
			!hopByHop(f.Name) && !equalFold(f.Name, "host") && namedByConnection(conns, f.Name) {
			continue
		}
		kept = append(kept, f)
	}
	h.Header.Fields = kept
	h.conns = 0
}

// appendField appends "name: value\r\n".
func appendField[S string | []byte](dst, name []byte, value S) []byte {
	dst = append(dst, name...)
	dst = append(dst, ": "...)
	dst = append(dst, value...)
	return append(dst, "\r\n"...)
}

// appendEndToEnd appends the fields that are not hop-by-hop (RFC 9110
// section 7.6.1). keepUpgrade keeps Upgrade fields (for 101 responses).
// It returns the name of a TE field that lists "trailers", if any, for
// the caller to forward as "TE: trailers" (as httputil.ReverseProxy does).
func appendEndToEnd(dst []byte, fields []Field, keepUpgrade bool) (_ []byte, teTrailers []byte) {
	hasConn := false
	for _, f := range fields {
		if equalFold(f.Name, "connection") {
			hasConn = true
			break
		}
	}
	for _, f := range fields {
		if hopByHop(f.Name) {
			switch {
			case keepUpgrade && equalFold(f.Name, "upgrade"):
				dst = appendField(dst, f.Name, f.Value)
			case teTrailers == nil && equalFold(f.Name, "te") && hasListToken(f.Value, "trailers"):
				teTrailers = f.Name
			}
			continue
		}
		// Host is never dropped for being named in Connection: that would
		// let a client strip the field routing depends on.
		if hasConn && namedByConnection(fields, f.Name) && !equalFold(f.Name, "host") {
			continue
		}
		dst = appendField(dst, f.Name, f.Value)
	}
	return dst, teTrailers
}

// hopByHop reports whether name is a hop-by-hop or framing field that a
// proxy never forwards as received.
// HopByHop reports whether name is a hop-by-hop or framing field
// (Connection, Keep-Alive, TE, Upgrade, Proxy-Connection,
// Transfer-Encoding, Content-Length, and the reserved Close): one a proxy
// does not forward as received.
func HopByHop(name []byte) bool { return hopByHop(name) }

// NameIs reports whether the field name is lower, ASCII
// case-insensitively (lower is in lower case).
func NameIs(name []byte, lower string) bool { return equalFold(name, lower) }

func hopByHop(name []byte) bool {
	switch len(name) {
	case 2:
		return equalFold(name, "te")
	case 5:
		// RFC 9112 section 9.6 reserves the name: a "Close" field would
		// be read as named by the "Connection: close" a proxy adds.
		return equalFold(name, "close")
	case 7:
		return equalFold(name, "upgrade")
	case 10:
		return equalFold(name, "connection") || equalFold(name, "keep-alive")
	case 14:
		return equalFold(name, "content-length")
	case 16:
		return equalFold(name, "proxy-connection")
	case 17:
		return equalFold(name, "transfer-encoding")
	}
	return false
}

// namedByConnection reports whether a Connection field lists name.
func namedByConnection(fields []Field, name []byte) bool {
	for _, f := range fields {
		if !equalFold(f.Name, "connection") {
			continue
		}
		for v := f.Value; len(v) > 0; {
			var e []byte
			e, v = cutComma(v)
			e = trimOWS(e)
			if equalFold(name, e) {
				return true
			}
		}
	}
	return false
}

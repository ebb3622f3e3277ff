package http1

import (
	"bufio"
	"bytes"
	"strconv"
)

// Read parses one response head from br into h, reusing h's buffers like
// RequestHead.Read. method is the method of the request it answers: a
// response to HEAD has Body == BodyNone whatever its fields say, and so do
// 1xx, 204 and 304 responses. A 1xx response is returned as is; the caller
// forwards or drops it and reads again for the final response. A response
// with neither Content-Length nor chunked framing is BodyUntilClose, with
// Close set.
//
// Errors follow RequestHead.Read: io.EOF if br ended before the first
// byte, io.ErrUnexpectedEOF if the head was cut short, br's error for
// other I/O failures, and *Error with Status 502 for a malformed, too
// large or unacceptable response.
func (h *ResponseHead) Read(br *bufio.Reader, method []byte, maxHeaderBytes int) error {
	return h.ReadLimits(br, method, maxHeaderBytes, 0)
}

// ReadLimits is Read with a bound on the number of header fields too:
// more than maxFields (<= 0 means DefaultMaxFields) is a 502.
func (h *ResponseHead) ReadLimits(br *bufio.Reader, method []byte, maxHeaderBytes, maxFields int) error {
	if maxHeaderBytes <= 0 {
		maxHeaderBytes = DefaultMaxHeaderBytes
	}
	if maxFields <= 0 {
		maxFields = DefaultMaxFields
	}
	raw, err := readHead(br, h.raw, maxHeaderBytes, false)
	*h = ResponseHead{raw: raw, Header: Header{Fields: h.Header.Fields[:0], arena: h.Header.arena[:0]}}
	switch err {
	case nil:
	case errTooLarge:
		return badResponse("response head too large")
	case errEmptyLine:
		return badResponse("empty status line")
	default:
		return err
	}
	if err := h.parse(raw, string(method) == "HEAD", maxFields); err != nil {
		h.Header.Fields = h.Header.Fields[:0]
		return err
	}
	return nil
}

func badResponse(reason string) *Error { return &Error{Status: 502, Reason: reason} }

// parse follows http.ReadResponse and readTransfer, a little stricter
// where a proxy must be (see compat.go).
func (h *ResponseHead) parse(raw []byte, toHead bool, maxFields int) error {
	line, fields := cutLine(raw)
	proto, rest, ok := bytes.Cut(line, sp)
	if !ok {
		return badResponse("malformed status line")
	}
	rest = bytes.TrimLeft(rest, " ")
	code, reason, _ := bytes.Cut(rest, sp)
	if len(code) != 3 || !isDigit(code[0]) || !isDigit(code[1]) || !isDigit(code[2]) || code[0] == '0' {
		return badResponse("malformed status code")
	}
	for _, c := range reason {
		if !valueByte[c] {
			return badResponse("malformed reason phrase")
		}
	}
	major, minor, ok := parseVersion(proto)
	if !ok || major != 1 {
		return badResponse("malformed or unsupported HTTP version")
	}
	status := int(code[0]-'0')*100 + int(code[1]-'0')*10 + int(code[2]-'0')

	var hf headFacts
	var err error
	h.Header.Fields, err = parseFields(fields, h.Header.Fields, &hf, false)
	if err != nil {
		return badResponse(err.Error())
	}
	if len(h.Header.Fields) > maxFields {
		return badResponse(reasonTooManyFields)
	}
	if hf.space {
		// net/textproto keeps "Name : value" as a field named "Name ";
		// forwarding it would let the next hop read it differently.
		return badResponse("whitespace in a field name")
	}
	chunked, cl, err := hf.transfer(major, minor)
	if err != nil {
		return badResponse(err.Error())
	}
	if chunked && hf.trailer {
		if err := checkTrailerDecl(h.Header.Fields); err != nil {
			return badResponse(err.Error())
		}
	}

	h.Minor = min(minor, 1)
	h.Status = status
	h.Reason = reason[:len(reason):len(reason)]
	h.Close = hf.shouldClose(major, minor)
	h.toHead = toHead
	h.ContentLength = -1
	switch {
	case toHead || status < 200 || status == 204 || status == 304:
		h.Body = BodyNone
		h.ContentLength = cl
	case chunked:
		h.Body = BodyChunked
	case cl >= 0:
		h.Body, h.ContentLength = BodyLength, cl
	default:
		h.Body, h.Close = BodyUntilClose, true
	}
	return nil
}

// AppendWire appends the head as a proxy sends it to its client: the
// status line "HTTP/1.1 <code> <reason>", the end-to-end fields in order
// (hop-by-hop ones removed as by RequestHead.AppendWire), then the framing
// for out, the framing the caller will give the body with CopyBody:
// "Content-Length: <h.ContentLength>" for BodyLength, "Transfer-Encoding:
// chunked" for BodyChunked, nothing for BodyNone and BodyUntilClose except
// that a response to HEAD or a 304 keeps the Content-Length the upstream
// sent. 1xx and 204 responses get no framing fields whatever out says.
//
// If close is true a final (non-1xx) response gets "Connection: close". A
// 101 Switching Protocols response keeps its Upgrade field and gets
// "Connection: upgrade" instead. It ends with the empty line.
func (h *ResponseHead) AppendWire(dst []byte, out BodyKind, close bool) []byte {
	dst = append(dst, "HTTP/1.1 "...)
	dst = strconv.AppendInt(dst, int64(h.Status), 10)
	dst = append(dst, ' ')
	dst = append(dst, h.Reason...)
	dst = append(dst, "\r\n"...)
	upgrade := h.Status == 101
	dst, _ = appendEndToEnd(dst, h.Header.Fields, upgrade)
	switch {
	case h.Status < 200 || h.Status == 204:
	case out == BodyLength && h.ContentLength >= 0,
		(out == BodyNone || out == BodyUntilClose) && (h.toHead || h.Status == 304) && h.ContentLength >= 0:
		dst = append(dst, "Content-Length: "...)
		dst = strconv.AppendInt(dst, h.ContentLength, 10)
		dst = append(dst, "\r\n"...)
	case out == BodyChunked:
		dst = append(dst, "Transfer-Encoding: chunked\r\n"...)
	}
	switch {
	case upgrade:
		dst = append(dst, "Connection: upgrade\r\n"...)
	case close && h.Status >= 200:
		dst = append(dst, "Connection: close\r\n"...)
	}
	return append(dst, "\r\n"...)
}

package http1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
)

// netHTTPHeadStatus is a model of net/http's server reading one request
// head: http.ReadRequest plus the checks conn.readRequest and serve add.
// It returns 200 for an accepted head, the status net/http answers, "eof"
// for a clean end of input, or truncated for a head cut short.
func netHTTPHeadStatus(data []byte) (string, *http.Request, textproto.MIMEHeader) {
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(data)))
	switch {
	case err == io.EOF:
		return "eof", nil, nil
	case err == io.ErrUnexpectedEOF:
		return truncated, nil, nil
	case err != nil && (strings.Contains(err.Error(), "transfer encoding")):
		return "501", nil, nil
	case err != nil:
		return "400", nil, nil
	}
	// ReadRequest drops the Host field; the server checks the fields as
	// net/textproto read them.
	tp := textproto.NewReader(bufio.NewReader(bytes.NewReader(data)))
	_, _ = tp.ReadLine()
	mh, _ := tp.ReadMIMEHeader()
	if req.ProtoMajor != 1 {
		if req.Method == "PRI" && len(req.Header) == 0 && req.RequestURI == "*" && req.Proto == "HTTP/2.0" {
			return "h2c", req, mh // net/http hands it to the handler; see compat.go
		}
		return "505", nil, nil
	}
	hosts, haveHost := mh["Host"]
	if req.ProtoAtLeast(1, 1) && (!haveHost || len(hosts) == 0) && req.Method != "CONNECT" {
		return "400", nil, nil
	}
	if len(hosts) == 1 {
		for _, c := range []byte(hosts[0]) {
			if !hostByte[c] {
				return "400", nil, nil
			}
		}
	}
	for k := range mh {
		for _, c := range []byte(k) {
			if !tokenByte[c] {
				return "400", nil, nil
			}
		}
	}
	if e := req.Header.Get("Expect"); e != "" && !hasToken([]byte(e), "100-continue") {
		return "417", nil, nil
	}
	return "200", req, mh
}

// stricter holds the reasons of the checks where Read deliberately
// rejects what net/http accepts (compat.go).
var stricter = map[string]bool{
	errBareLF.Error(): true, errRequestLine.Error(): true, errObsFold.Error(): true,
	reasonAbsoluteForm: true, reasonTooManyFields: true, reasonHostMismatch: true,
	reasonDuplicateLength: true, reasonTE10: true, errBothLengths.Error(): true,
}

// deliberate reports whether h's last Read failed on one of those checks.
func deliberate(data []byte) bool {
	var h RequestHead
	var he *Error
	return errors.As(h.Read(bufio.NewReader(bytes.NewReader(data)), 1<<20), &he) && stricter[he.Reason]
}

func outriderHeadStatus(h *RequestHead, data []byte) string {
	err := h.Read(bufio.NewReader(bytes.NewReader(data)), 1<<20)
	var he *Error
	switch {
	case err == nil:
		return "200"
	case err == io.EOF:
		return "eof"
	case err == io.ErrUnexpectedEOF:
		return truncated
	case errors.As(err, &he):
		return strconv.Itoa(he.Status)
	}
	return "error: " + err.Error()
}

// endToEnd returns the fields a proxy forwards, canonicalized for
// comparison: hop-by-hop ones dropped, values trimmed.
func endToEnd(fields []Field) []string {
	var out []string
	for _, f := range fields {
		if hopByHop(f.Name) || namedByConnection(fields, f.Name) && !equalFold(f.Name, "host") {
			continue
		}
		out = append(out, string(f.Name)+": "+string(trimOWS(f.Value)))
	}
	return out
}

func FuzzRequestHead(f *testing.F) {
	for _, tc := range diffCases() {
		if len(tc.raw) < 4096 {
			f.Add([]byte(tc.raw))
		}
	}
	f.Add([]byte("GET /?a=b HTTP/1.0\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: 5\r\nTE: trailers, deflate\r\n\r\n"))
	f.Add([]byte("POST /up HTTP/1.1\r\nHost: h\r\nConnection: close, upgrade\r\nUpgrade: h2c\r\nProxy-Connection: x\r\nClose: y\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var h RequestHead
		ours := outriderHeadStatus(&h, data)
		theirs, req, mh := netHTTPHeadStatus(data)
		switch {
		case theirs == "h2c":
			if ours != "505" {
				t.Fatalf("h2c preface: outrider %s, want 505", ours)
			}
			return
		case (ours == "400" || ours == "431") && deliberate(data):
			// Deliberately stricter (see compat.go).
			return
		case ours == truncated && theirs == "400":
			// net/http reads a final line cut short as complete and then
			// finds it malformed; both reject.
			return
		case ours != theirs:
			t.Fatalf("outrider %s, net/http %s on %q", ours, theirs, data)
		case ours != "200":
			return
		}

		// The slow path (a head arriving in pieces) agrees with the fast.
		var slow RequestHead
		err := slow.Read(bufio.NewReaderSize(iotest.OneByteReader(bytes.NewReader(data)), 16), 1<<20)
		if err == nil && string(slow.AppendWire(nil)) != string(h.AppendWire(nil)) {
			t.Fatalf("read in pieces: %q, at once: %q", slow.AppendWire(nil), h.AppendWire(nil))
		}
		if (err == nil) != (ours == "200") {
			t.Fatalf("read in pieces: %v, at once: %s", err, ours)
		}

		// Accepted by both: the parse must agree with net/http's.
		if string(h.Method) != req.Method || string(h.Target) != req.RequestURI {
			t.Fatalf("request line %q %q, net/http %q %q", h.Method, h.Target, req.Method, req.RequestURI)
		}
		if h.Close != req.Close {
			t.Fatalf("Close %v, net/http %v", h.Close, req.Close)
		}
		wantBody, wantLen := BodyNone, int64(0)
		switch {
		case len(req.TransferEncoding) > 0:
			wantBody, wantLen = BodyChunked, -1
		case req.ContentLength > 0 || req.Header.Get("Content-Length") != "":
			wantBody, wantLen = BodyLength, req.ContentLength
		}
		if h.Body != wantBody || h.ContentLength != wantLen {
			t.Fatalf("body %v/%d, net/http %v/%d", h.Body, h.ContentLength, wantBody, wantLen)
		}
		var ours2 []string
		for _, f := range h.Header.Fields {
			ours2 = append(ours2, http.CanonicalHeaderKey(string(f.Name))+": "+string(f.Value))
		}
		var theirs2 []string
		for k, vv := range mh {
			for _, v := range vv {
				theirs2 = append(theirs2, k+": "+v)
			}
		}
		if _, ok := mh["Host"]; !ok && req.URL.Host != "" && req.Method != "CONNECT" {
			// Read gives an absolute-form request without Host the
			// target's authority as its Host.
			theirs2 = append(theirs2, "Host: "+req.Host)
		}
		slices.Sort(ours2)
		slices.Sort(theirs2)
		if !slices.Equal(ours2, theirs2) {
			t.Fatalf("fields %q, net/http %q", ours2, theirs2)
		}

		// Round trip: what AppendWire forwards parses back to the same
		// request, minus hop-by-hop fields.
		if !h.Header.Has("Host") && string(h.Method) != "CONNECT" {
			h.Header.Add("Host", "fuzz.example") // HTTP/1.0 without Host
		}
		wire := h.AppendWire(nil)
		var back RequestHead
		if err := back.Read(bufio.NewReader(bytes.NewReader(wire)), 1<<20); err != nil {
			t.Fatalf("AppendWire output %q does not parse: %v", wire, err)
		}
		if !bytes.Equal(back.Method, h.Method) || !bytes.Equal(back.Target, h.Target) || back.Minor != 1 {
			t.Fatalf("request line %q %q, forwarded as %q", h.Method, h.Target, wire)
		}
		if back.Body != h.Body || back.ContentLength != h.ContentLength || back.Close != h.Close ||
			!bytes.Equal(back.Upgrade, h.Upgrade) || h.Minor == 1 && back.Expect100 != h.Expect100 {
			t.Fatalf("framing changed: %+v forwarded as %q", h, wire)
		}
		if a, b := endToEnd(h.Header.Fields), endToEnd(back.Header.Fields); !slices.Equal(a, b) {
			t.Fatalf("fields %q forwarded as %q", a, b)
		}
	})
}

const chunkedPrefix = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"

// netHTTPChunked reads body as a chunked request body with net/http: the
// payload, the trailer, the error, and how many bytes of body it left.
func netHTTPChunked(body []byte) (payload []byte, trailer http.Header, left int, err error) {
	r := bytes.NewReader(append([]byte(chunkedPrefix), body...))
	br := bufio.NewReaderSize(r, 4096)
	req, err := http.ReadRequest(br)
	if err != nil {
		panic(err)
	}
	payload, err = io.ReadAll(req.Body)
	return payload, req.Trailer, br.Buffered() + r.Len(), err
}

func FuzzChunked(f *testing.F) {
	for _, tc := range diffCases() {
		if i := strings.Index(tc.raw, "chunked\r\n\r\n"); i >= 0 && len(tc.raw) < 8192 {
			f.Add([]byte(tc.raw[i+len("chunked\r\n\r\n"):]))
		}
	}
	f.Add([]byte("3\r\nabc\r\n0\r\nA: 1\r\n b\r\nB:2\n\r\n"))
	f.Add([]byte("1\r\na\r\n0\r\n\nGET / HTTP/1.1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		payload, trailer, left, theirErr := netHTTPChunked(body)

		var results [2]string
		for i, slow := range []bool{false, true} {
			br := bytes.NewReader(body)
			var r io.Reader = br
			if slow {
				r = iotest.OneByteReader(br)
			}
			src := bufio.NewReaderSize(r, 4096)
			var out bytes.Buffer
			dst := bufio.NewWriterSize(&out, 64)
			n, err := CopyBody(dst, src, BodyChunked, 0, BodyChunked)
			if err != nil && !errors.Is(err, ErrBodySource) {
				t.Fatalf("error %v does not wrap ErrBodySource", err)
			}
			spaceName := false
			for k := range trailer {
				spaceName = spaceName || strings.ContainsAny(k, " ")
			}
			switch {
			case theirErr == nil && spaceName:
				if err == nil {
					t.Fatalf("trailer field name with a space accepted")
				}
				results[i] = "diverge"
				continue
			case (err == nil) != (theirErr == nil):
				t.Fatalf("outrider error %v, net/http %v, on %q", err, theirErr, body)
			case err != nil:
				results[i] = "error"
				continue
			}
			if n != int64(len(payload)) {
				t.Fatalf("n = %d, net/http read %d bytes", n, len(payload))
			}
			if ourLeft := src.Buffered() + br.Len(); ourLeft != left {
				t.Fatalf("left %d bytes after the body, net/http %d, on %q", ourLeft, left, body)
			}
			dec, err := io.ReadAll(httputil.NewChunkedReader(bytes.NewReader(out.Bytes())))
			if err != nil || !bytes.Equal(dec, payload) {
				t.Fatalf("output %q decodes to %q, %v; want %q", out.Bytes(), dec, err, payload)
			}
			gotPayload, gotTrailer, gotLeft, err := netHTTPChunked(out.Bytes())
			if err != nil || !bytes.Equal(gotPayload, payload) || gotLeft != 0 {
				t.Fatalf("output %q reads back as %q, %d left, %v", out.Bytes(), gotPayload, gotLeft, err)
			}
			if !equalHeader(gotTrailer, trailer) {
				t.Fatalf("trailer %q forwarded as %q (output %q)", trailer, gotTrailer, out.Bytes())
			}
			results[i] = "ok"
		}
		if results[0] != results[1] {
			t.Fatalf("one-byte reads change the outcome: %v", results)
		}
	})
}

// equalHeader compares a and b ignoring trailing whitespace in values: a
// blank obs-fold continuation leaves one in net/textproto's value, which
// no field line can carry on.
func equalHeader(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	trim := func(s string) string { return strings.TrimRight(s, " \t") }
	for k, v := range a {
		w := b[k]
		if len(v) != len(w) {
			return false
		}
		for i := range v {
			if trim(v[i]) != trim(w[i]) {
				return false
			}
		}
	}
	return true
}

// FuzzResponseHead checks ResponseHead.Read against http.ReadResponse:
// the same framing when both accept, and a rejection by net/http is a
// rejection here. Outrider rejects a little more (see compat.go).
func FuzzResponseHead(f *testing.F) {
	for _, raw := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
		"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n",
		"HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n",
		"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
		"HTTP/1.1 204 No Content\r\nContent-Length: 0, 0\r\n\r\n",
		"HTTP/1.1  404 \r\nTransfer-Encoding : chunked\r\n\r\n",
	} {
		f.Add([]byte(raw), false)
		f.Add([]byte(raw), true)
	}
	f.Fuzz(func(t *testing.T, data []byte, head bool) {
		method := "GET"
		if head {
			method = "HEAD"
		}
		var h ResponseHead
		err := h.Read(bufio.NewReader(bytes.NewReader(data)), []byte(method), 1<<20)
		resp, theirErr := http.ReadResponse(bufio.NewReader(bytes.NewReader(data)), &http.Request{Method: method})
		if theirErr != nil {
			if err == nil {
				t.Fatalf("accepted what net/http rejects (%v): %q", theirErr, data)
			}
			return
		}
		if err != nil {
			var he *Error
			if !errors.As(err, &he) {
				t.Fatalf("error %v on a head net/http reads: %q", err, data)
			}
			stricter := resp.ProtoMajor != 1 || resp.StatusCode < 100
			for k := range resp.Header {
				stricter = stricter || strings.Contains(k, " ")
			}
			_, reason, _ := strings.Cut(resp.Status, " ")
			stricter = stricter || strings.ContainsFunc(reason, func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f })
			if !stricter {
				t.Fatalf("rejected (%v) what net/http accepts: %q", err, data)
			}
			return
		}
		want := BodyUntilClose
		switch {
		case head || resp.StatusCode < 200 || resp.StatusCode == 204 || resp.StatusCode == 304:
			want = BodyNone
		case len(resp.TransferEncoding) > 0:
			want = BodyChunked
		case resp.ContentLength >= 0:
			want = BodyLength
		}
		if h.Status != resp.StatusCode || h.Body != want || h.Close != resp.Close ||
			want == BodyLength && h.ContentLength != resp.ContentLength {
			t.Fatalf("status %d body %v/%d close %v; net/http %d %v/%d %v", h.Status, h.Body, h.ContentLength, h.Close,
				resp.StatusCode, want, resp.ContentLength, resp.Close)
		}
		// What AppendWire forwards reads back the same.
		out := h.Body
		if out == BodyUntilClose {
			out = BodyChunked
		}
		var back ResponseHead
		wire := h.AppendWire(nil, out, false)
		if err := back.Read(bufio.NewReader(bytes.NewReader(wire)), []byte(method), 1<<20); err != nil {
			t.Fatalf("AppendWire output %q does not parse: %v", wire, err)
		}
		if back.Status != h.Status || back.Body != out || out == BodyLength && back.ContentLength != h.ContentLength {
			t.Fatalf("%d %v/%d forwarded as %q", h.Status, h.Body, h.ContentLength, wire)
		}
	})
}

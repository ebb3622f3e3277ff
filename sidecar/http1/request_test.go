package http1

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
)

func readRequest(t *testing.T, raw string, limit int) (*RequestHead, error) {
	t.Helper()
	var h RequestHead
	err := h.Read(bufio.NewReader(strings.NewReader(raw)), limit)
	return &h, err
}

func TestRequestHeadRead(t *testing.T) {
	t.Parallel()
	type want struct {
		method, target, host string
		minor                int
		body                 BodyKind
		length               int64
		close, expect100     bool
		upgrade              string
		fields               int
	}
	tests := []struct {
		name, raw string
		want      want
	}{
		{"GET", "GET /a?b=c HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n\r\n",
			want{method: "GET", target: "/a?b=c", host: "h", minor: 1, fields: 2}},
		{"POST length", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 12\r\n\r\n",
			want{method: "POST", target: "/", host: "h", minor: 1, body: BodyLength, length: 12, fields: 2}},
		{"chunked", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
			want{method: "POST", target: "/", host: "h", minor: 1, body: BodyChunked, length: -1, fields: 2}},
		{"chunked is case-insensitive", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: CHUNKED\r\n\r\n",
			want{method: "POST", target: "/", host: "h", minor: 1, body: BodyChunked, length: -1, fields: 2}},
		{"HTTP/1.0 closes", "GET / HTTP/1.0\r\n\r\n",
			want{method: "GET", target: "/", close: true}},
		{"HTTP/1.0 keep-alive", "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
			want{method: "GET", target: "/", fields: 1}},
		{"HTTP/1.1 close list", "GET / HTTP/1.1\r\nHost: h\r\nConnection: foo, CLOSE\r\n\r\n",
			want{method: "GET", target: "/", host: "h", minor: 1, close: true, fields: 2}},
		{"HTTP/1.9 is 1.1", "GET / HTTP/1.9\r\nHost: h\r\n\r\n",
			want{method: "GET", target: "/", host: "h", minor: 1, fields: 1}},
		{"upgrade", "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n",
			want{method: "GET", target: "/ws", host: "h", minor: 1, upgrade: "websocket", fields: 3}},
		{"upgrade not in Connection", "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n",
			want{method: "GET", target: "/ws", host: "h", minor: 1, fields: 2}},
		{"expect", "PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
			want{method: "PUT", target: "/", host: "h", minor: 1, expect100: true, body: BodyLength, length: 1, fields: 3}},
		{"CONNECT", "CONNECT db:5432 HTTP/1.1\r\n\r\n",
			want{method: "CONNECT", target: "db:5432", minor: 1}},
		{"OPTIONS *", "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
			want{method: "OPTIONS", target: "*", host: "h", minor: 1, fields: 1}},
		{"absolute-form", "GET http://X:1/p?q HTTP/1.1\r\nHost: x:1\r\n\r\n",
			want{method: "GET", target: "http://X:1/p?q", host: "x:1", minor: 1, fields: 1}},
		{"absolute-form HTTP/1.0 without Host", "GET https://x/ HTTP/1.0\r\n\r\n",
			want{method: "GET", target: "https://x/", host: "x", close: true, fields: 1}},
		{"empty Host", "GET / HTTP/1.1\r\nHost:\r\n\r\n",
			want{method: "GET", target: "/", minor: 1, fields: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, err := readRequest(t, tc.raw, 0)
			if err != nil {
				t.Fatal(err)
			}
			got := want{string(h.Method), string(h.Target), string(h.Host), h.Minor, h.Body, h.ContentLength,
				h.Close, h.Expect100, string(h.Upgrade), len(h.Header.Fields)}
			if got != tc.want {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestRequestHeadReadFields(t *testing.T) {
	t.Parallel()
	h, err := readRequest(t, "GET / HTTP/1.1\r\nHost: h\r\nX-A: a \t\r\nx-empty:\r\nX-Pad: \t v \t\r\n\r\n", 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"Host=h", "X-A=a", "x-empty=", "X-Pad=v"}
	if len(h.Header.Fields) != len(want) {
		t.Fatalf("got %d fields, want %d", len(h.Header.Fields), len(want))
	}
	for i, f := range h.Header.Fields {
		if got := string(f.Name) + "=" + string(f.Value); got != want[i] {
			t.Errorf("field %d = %q, want %q", i, got, want[i])
		}
		if cap(f.Name) != len(f.Name) || cap(f.Value) != len(f.Value) {
			t.Errorf("field %d slices are not capped", i)
		}
	}
}

func TestRequestHeadReadErrors(t *testing.T) {
	t.Parallel()
	const h = "Host: h\r\n"
	tests := []struct {
		name, raw string
		limit     int
		status    int   // expected *Error status
		err       error // or this error
	}{
		{name: "empty", raw: "", err: io.EOF},
		{name: "cut in line", raw: "GET / HT", err: io.ErrUnexpectedEOF},
		{name: "cut in fields", raw: "GET / HTTP/1.1\r\nHost: h\r\n", err: io.ErrUnexpectedEOF},
		{name: "empty line first", raw: "\r\nGET / HTTP/1.1\r\n" + h + "\r\n", status: 400},
		{name: "two fields only", raw: "GET /\r\n\r\n", status: 400},
		{name: "bad method", raw: "GE:T / HTTP/1.1\r\n" + h + "\r\n", status: 400},
		{name: "bad version", raw: "GET / HTTP/1.x\r\n" + h + "\r\n", status: 400},
		{name: "HTTP/2.0", raw: "GET / HTTP/2.0\r\n" + h + "\r\n", status: 505},
		{name: "HTTP/0.9", raw: "GET / HTTP/0.9\r\n\r\n", status: 505},
		{name: "h2c preface", raw: "PRI * HTTP/2.0\r\n\r\n", status: 505},
		{name: "bad target", raw: "GET /%g0 HTTP/1.1\r\n" + h + "\r\n", status: 400},
		{name: "CTL in target", raw: "GET /\x01 HTTP/1.1\r\n" + h + "\r\n", status: 400},
		{name: "missing Host", raw: "GET / HTTP/1.1\r\n\r\n", status: 400},
		{name: "two Hosts", raw: "GET / HTTP/1.1\r\n" + h + "HOST: h\r\n\r\n", status: 400},
		{name: "bad Host", raw: "GET / HTTP/1.1\r\nHost: a@b\r\n\r\n", status: 400},
		{name: "space before colon", raw: "GET / HTTP/1.1\r\n" + h + "A : b\r\n\r\n", status: 400},
		{name: "initial fold", raw: "GET / HTTP/1.1\r\n\tA: b\r\n" + h + "\r\n", status: 400},
		// Stricter than net/http (compat.go).
		{name: "obs-fold", raw: "GET / HTTP/1.1\r\n" + h + "X: a\r\n b\r\n\r\n", status: 400},
		{name: "obs-fold tab", raw: "GET / HTTP/1.1\r\n" + h + "X: a\r\n\tb\r\n\r\n", status: 400},
		{name: "bare LF", raw: "GET / HTTP/1.1\n" + h + "\n", status: 400},
		{name: "bare LF in fields", raw: "GET / HTTP/1.1\r\nHost: h\nX: y\r\n\r\n", status: 400},
		{name: "bare LF ends head", raw: "GET / HTTP/1.1\r\n" + h + "\n", status: 400},
		{name: "duplicate identical CL", raw: "POST / HTTP/1.1\r\n" + h + "Content-Length: 3\r\nContent-Length: 3\r\n\r\n", status: 400},
		{name: "HTTP/1.0 with TE", raw: "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", status: 400},
		{name: "HTTP/1.0 with TE and CL", raw: "POST / HTTP/1.0\r\nTransfer-Encoding: gzip\r\nContent-Length: 2\r\n\r\n", status: 400},
		{name: "absolute-form other Host", raw: "GET http://other/ HTTP/1.1\r\n" + h + "\r\n", status: 400},
		{name: "absolute-form other port", raw: "GET http://h:8080/ HTTP/1.1\r\n" + h + "\r\n", status: 400},
		{name: "absolute-form userinfo", raw: "GET http://u@h/ HTTP/1.1\r\n" + h + "\r\n", status: 400},
		{name: "absolute-form other scheme", raw: "GET ftp://h/ HTTP/1.1\r\n" + h + "\r\n", status: 400},
		{name: "absolute-form no authority", raw: "GET http:/p HTTP/1.1\r\n" + h + "\r\n", status: 400},
		{name: "101 fields", raw: "GET / HTTP/1.1\r\n" + h + strings.Repeat("X: y\r\n", 100) + "\r\n", status: 431},
		{name: "no colon", raw: "GET / HTTP/1.1\r\n" + h + "A\r\n\r\n", status: 400},
		{name: "NUL value", raw: "GET / HTTP/1.1\r\n" + h + "A: \x00\r\n\r\n", status: 400},
		{name: "CL conflict", raw: "POST / HTTP/1.1\r\n" + h + "Content-Length: 1\r\nContent-Length: 2\r\n\r\n", status: 400},
		{name: "CL negative", raw: "POST / HTTP/1.1\r\n" + h + "Content-Length: -1\r\n\r\n", status: 400},
		{name: "CL plus", raw: "POST / HTTP/1.1\r\n" + h + "Content-Length: +1\r\n\r\n", status: 400},
		{name: "CL overflow", raw: "POST / HTTP/1.1\r\n" + h + "Content-Length: 99999999999999999999\r\n\r\n", status: 400},
		{name: "TE gzip", raw: "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: gzip, chunked\r\n\r\n", status: 501},
		{name: "TE twice", raw: "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", status: 501},
		{name: "TE before Host check", raw: "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", status: 501},
		{name: "Trailer names TE", raw: "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\nTrailer: transfer-encoding\r\n\r\n", status: 400},
		{name: "expectation", raw: "GET / HTTP/1.1\r\n" + h + "Expect: 200-ok\r\n\r\n", status: 417},
		{name: "too large", raw: "GET / HTTP/1.1\r\n" + h + "A: " + strings.Repeat("b", 200) + "\r\n\r\n", limit: 100, status: 431},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, err := readRequest(t, tc.raw, tc.limit)
			if tc.err != nil {
				if err != tc.err {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
			} else {
				var he *Error
				if !errors.As(err, &he) || he.Status != tc.status {
					t.Fatalf("err = %v, want status %d", err, tc.status)
				}
			}
			if h.Method != nil || len(h.Header.Fields) != 0 {
				t.Errorf("failed Read left a request: %q, %d fields", h.Method, len(h.Header.Fields))
			}
		})
	}
}

func TestRequestHeadReadLimit(t *testing.T) {
	t.Parallel()
	raw := "GET / HTTP/1.1\r\nHost: h\r\n\r\n" // 27 bytes
	if _, err := readRequest(t, raw, len(raw)); err != nil {
		t.Errorf("head of exactly the limit: %v", err)
	}
	var he *Error
	if _, err := readRequest(t, raw, len(raw)-1); !errors.As(err, &he) || he.Status != 431 {
		t.Errorf("head one byte over the limit: %v", err)
	}
}

func TestRequestHeadFieldLimit(t *testing.T) {
	t.Parallel()
	head := func(n int) string {
		return "GET / HTTP/1.1\r\nHost: h\r\n" + strings.Repeat("X: y\r\n", n-1) + "\r\n"
	}
	var h RequestHead
	if err := h.Read(bufio.NewReader(strings.NewReader(head(DefaultMaxFields))), 0); err != nil {
		t.Errorf("%d fields: %v", DefaultMaxFields, err)
	}
	var he *Error
	if err := h.ReadLimits(bufio.NewReader(strings.NewReader(head(11))), 0, 10); !errors.As(err, &he) || he.Status != 431 {
		t.Errorf("11 fields, limit 10: %v, want 431", err)
	}
	if err := h.ReadLimits(bufio.NewReader(strings.NewReader(head(10))), 0, 10); err != nil {
		t.Errorf("10 fields, limit 10: %v", err)
	}
}

// An HTTP/0.9 request line ("GET /", no version) is refused as soon as
// it ends: an HTTP/0.9 client sends no header section to wait for.
func TestRequestHeadHTTP09RefusedAtOnce(t *testing.T) {
	t.Parallel()
	pr, pw := io.Pipe()
	defer pw.Close()
	go pw.Write([]byte("GET /\r\n")) // and then nothing: the pipe stays open
	var h RequestHead
	var he *Error
	if err := h.Read(bufio.NewReader(pr), 0); !errors.As(err, &he) || he.Status != 400 {
		t.Fatalf("err = %v, want a 400", err)
	}
}

// A head split over many reads, and pipelined heads, parse like one read.
func TestRequestHeadReadPipelinedSmallReads(t *testing.T) {
	t.Parallel()
	raw := "GET /1 HTTP/1.1\r\nHost: a\r\nX-Long: " + strings.Repeat("v", 300) + "\r\n\r\n" +
		"POST /2 HTTP/1.1\r\nHost: b\r\nContent-Length: 0\r\n\r\n" +
		"\r\n" + // stray CRLF after a POST, tolerated
		"GET /3 HTTP/1.1\r\nHost: c\r\n\r\n"
	br := bufio.NewReaderSize(&slowReader{s: raw, n: 7}, 16)
	var h RequestHead
	for _, want := range []string{"/1 a", "/2 b", "/3 c"} {
		if err := h.Read(br, 0); err != nil {
			t.Fatal(err)
		}
		if got := string(h.Target) + " " + string(h.Host); got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
	if err := h.Read(br, 0); err != io.EOF {
		t.Errorf("after the last request: %v, want io.EOF", err)
	}
}

// slowReader returns at most n bytes per Read.
type slowReader struct {
	s string
	n int
}

func (r *slowReader) Read(p []byte) (int, error) {
	if r.s == "" {
		return 0, io.EOF
	}
	k := copy(p[:min(len(p), r.n)], r.s)
	r.s = r.s[k:]
	return k, nil
}

func TestRequestHeadReadAllocs(t *testing.T) {
	raw := benchRequest
	var h RequestHead
	r := strings.NewReader(raw)
	br := bufio.NewReader(r)
	allocs := testing.AllocsPerRun(100, func() {
		r.Reset(raw)
		br.Reset(r)
		if err := h.Read(br, 0); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Read allocates %.1f times per request, want 0", allocs)
	}
}

func TestQuery(t *testing.T) {
	t.Parallel()
	var h RequestHead
	h.Target = []byte("/p?a=1&b=&c&a=2&d%20e=3&f+g=4&h;i=5&j=%zz&k=x=y#frag")
	tests := []struct {
		name, value string
		ok          bool
	}{
		{"a", "1", true},
		{"b", "", true},
		{"c", "", true},
		{"d e", "3", true},
		{"f g", "4", true},
		{"h;i", "", false},
		{"j", "%zz", true},
		{"k", "x=y", true},
		{"frag", "", false},
		{"z", "", false},
	}
	for _, tc := range tests {
		v, ok := h.Query(tc.name)
		if string(v) != tc.value || ok != tc.ok {
			t.Errorf("Query(%q) = %q, %v; want %q, %v", tc.name, v, ok, tc.value, tc.ok)
		}
	}
	h.Target = []byte("/no-query")
	if _, ok := h.Query("a"); ok {
		t.Error("Query found a parameter in a target without a query")
	}
}

func TestRequestAppendWire(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, raw, want string
		edit            func(*RequestHead)
	}{
		{
			name: "hop-by-hop removed",
			raw: "GET /a HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: 5\r\n" +
				"Proxy-Connection: keep-alive\r\nTE: gzip\r\nClose: x\r\nTrailer: X-Sum\r\nx-End: 2\r\n\r\n",
			want: "GET /a HTTP/1.1\r\nHost: h\r\nTrailer: X-Sum\r\nx-End: 2\r\n\r\n",
		},
		{
			name: "Connection cannot remove Host",
			raw:  "GET / HTTP/1.1\r\nhost: h\r\nConnection: host\r\n\r\n",
			want: "GET / HTTP/1.1\r\nhost: h\r\n\r\n",
		},
		{
			name: "TE trailers kept",
			raw:  "POST / HTTP/1.1\r\nHost: h\r\nte: deflate, Trailers\r\nContent-Length: 3\r\n\r\n",
			want: "POST / HTTP/1.1\r\nHost: h\r\nte: trailers\r\nContent-Length: 3\r\n\r\n",
		},
		{
			name: "chunked framing rewritten",
			raw:  "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
			want: "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
		},
		{
			name: "HTTP/1.0 upgraded to 1.1 with close",
			raw:  "GET / HTTP/1.0\r\nHost: h\r\n\r\n",
			want: "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
		},
		{
			name: "upgrade",
			raw:  "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\n\r\n",
			want: "GET /ws HTTP/1.1\r\nHost: h\r\nSec-WebSocket-Key: k\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
		},
		{
			name: "edits",
			raw:  "GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nX-B: 2\r\nx-a: 3\r\n\r\n",
			edit: func(h *RequestHead) {
				h.Header.Set("X-A", "new")
				h.Header.Del("x-b")
				h.Header.Add("X-Forwarded-For", "10.0.0.1")
				h.Close = true
			},
			want: "GET / HTTP/1.1\r\nHost: h\r\nX-A: new\r\nX-Forwarded-For: 10.0.0.1\r\nConnection: close\r\n\r\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, err := readRequest(t, tc.raw, 0)
			if err != nil {
				t.Fatal(err)
			}
			if tc.edit != nil {
				tc.edit(h)
			}
			if got := string(h.AppendWire([]byte("prefix"))); got != "prefix"+tc.want {
				t.Errorf("got\n%q\nwant\n%q", got, "prefix"+tc.want)
			}
		})
	}
}

// Fields a proxy adds after DropConnectionFields are forwarded even when
// the client's Connection named them.
func TestDropConnectionFields(t *testing.T) {
	t.Parallel()
	h, err := readRequest(t, "GET / HTTP/1.1\r\nConnection: X-Forwarded-For, x-hop\r\nHost: h\r\nX-Hop: 1\r\n"+
		"X-Forwarded-For: 1.2.3.4\r\nconnection: close, Host, te\r\nTE: trailers\r\nX-Keep: k\r\n\r\n", 0)
	if err != nil {
		t.Fatal(err)
	}
	h.DropConnectionFields()
	h.Header.Add("X-Forwarded-For", "5.6.7.8")
	got := string(h.AppendWire(nil))
	want := "GET / HTTP/1.1\r\nHost: h\r\nX-Keep: k\r\nX-Forwarded-For: 5.6.7.8\r\nTE: trailers\r\nConnection: close\r\n\r\n"
	if got != want {
		t.Errorf("forwarded\n%q\nwant\n%q", got, want)
	}
	h.DropConnectionFields() // idempotent
	if again := string(h.AppendWire(nil)); again != want {
		t.Errorf("second call changed the head: %q", again)
	}
}

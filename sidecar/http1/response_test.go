package http1

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
)

func readResponse(t *testing.T, raw, method string) (*ResponseHead, error) {
	t.Helper()
	var h ResponseHead
	err := h.Read(bufio.NewReader(strings.NewReader(raw)), []byte(method), 0)
	return &h, err
}

func TestResponseHeadRead(t *testing.T) {
	t.Parallel()
	type want struct {
		status int
		reason string
		minor  int
		body   BodyKind
		length int64
		close  bool
	}
	tests := []struct {
		name, method, raw string
		want              want
	}{
		{"length", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
			want{200, "OK", 1, BodyLength, 5, false}},
		{"chunked", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
			want{200, "OK", 1, BodyChunked, -1, false}},
		{"until close", "GET", "HTTP/1.1 200 OK\r\n\r\n",
			want{200, "OK", 1, BodyUntilClose, -1, true}},
		{"HTTP/1.0 until close", "GET", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n",
			want{200, "OK", 0, BodyUntilClose, -1, true}},
		{"HTTP/1.0 keep-alive length", "GET", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
			want{200, "OK", 0, BodyLength, 0, false}},
		{"HTTP/1.0 closes", "GET", "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
			want{200, "OK", 0, BodyLength, 0, true}},
		{"HTTP/1.0 ignores TE", "GET", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
			want{200, "OK", 0, BodyUntilClose, -1, true}},
		{"close", "GET", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n",
			want{200, "OK", 1, BodyLength, 1, true}},
		{"HEAD", "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n",
			want{200, "OK", 1, BodyNone, 1234, false}},
		{"HEAD chunked", "HEAD", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
			want{200, "OK", 1, BodyNone, -1, false}},
		{"HEAD no length", "HEAD", "HTTP/1.1 200 OK\r\n\r\n",
			want{200, "OK", 1, BodyNone, -1, false}},
		{"100", "POST", "HTTP/1.1 100 Continue\r\n\r\n",
			want{100, "Continue", 1, BodyNone, -1, false}},
		{"103", "GET", "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n",
			want{103, "Early Hints", 1, BodyNone, -1, false}},
		{"101", "GET", "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
			want{101, "Switching Protocols", 1, BodyNone, -1, false}},
		{"204", "GET", "HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n",
			want{204, "No Content", 1, BodyNone, -1, false}},
		{"304", "GET", "HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n",
			want{304, "Not Modified", 1, BodyNone, 99, false}},
		{"no reason", "GET", "HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n",
			want{404, "", 1, BodyLength, 0, false}},
		{"empty reason", "GET", "HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n",
			want{404, "", 1, BodyLength, 0, false}},
		{"extra spaces", "GET", "HTTP/1.1   500 Oops  now\r\nContent-Length: 0\r\n\r\n",
			want{500, "Oops  now", 1, BodyLength, 0, false}},
		{"odd status", "GET", "HTTP/1.1 599 X\r\nContent-Length: 0\r\n\r\n",
			want{599, "X", 1, BodyLength, 0, false}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, err := readResponse(t, tc.raw, tc.method)
			if err != nil {
				t.Fatal(err)
			}
			got := want{h.Status, string(h.Reason), h.Minor, h.Body, h.ContentLength, h.Close}
			if got != tc.want {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestResponseHeadReadErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, raw string
		err       error // nil means *Error with status 502
	}{
		{"empty", "", io.EOF},
		{"cut short", "HTTP/1.1 200 OK\r\nContent-Len", io.ErrUnexpectedEOF},
		{"no space", "HTTP/1.1\r\n\r\n", nil},
		{"two-digit status", "HTTP/1.1 20 OK\r\n\r\n", nil},
		{"signed status", "HTTP/1.1 +20 OK\r\n\r\n", nil},
		{"status below 100", "HTTP/1.1 099 OK\r\n\r\n", nil},
		{"status letters", "HTTP/1.1 2x0 OK\r\n\r\n", nil},
		{"HTTP/2.0", "HTTP/2.0 200 OK\r\n\r\n", nil},
		{"bad version", "HTTP/1 200 OK\r\n\r\n", nil},
		{"CTL in reason", "HTTP/1.1 200 O\x01K\r\n\r\n", nil},
		{"bad field", "HTTP/1.1 200 OK\r\nA\r\n\r\n", nil},
		{"space before colon", "HTTP/1.1 200 OK\r\nTransfer-Encoding : chunked\r\n\r\n", nil},
		{"TE gzip", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", nil},
		{"CL conflict", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", nil},
		{"CL bad on HEAD", "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", nil},
		{"Trailer names CL", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: Content-Length\r\n\r\n", nil},
		{"101 fields", "HTTP/1.1 200 OK\r\n" + strings.Repeat("Set-Cookie: a=b\r\n", 101) + "\r\n", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, err := readResponse(t, tc.raw, "HEAD")
			if tc.err != nil {
				if err != tc.err {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				return
			}
			var he *Error
			if !errors.As(err, &he) || he.Status != 502 {
				t.Fatalf("err = %v, want status 502", err)
			}
			if h.Status != 0 || len(h.Header.Fields) != 0 {
				t.Error("failed Read left a response")
			}
		})
	}
	var h ResponseHead
	long := "HTTP/1.1 200 OK\r\nA: " + strings.Repeat("b", 100) + "\r\n\r\n"
	var he *Error
	if err := h.Read(bufio.NewReader(strings.NewReader(long)), nil, 50); !errors.As(err, &he) || he.Status != 502 {
		t.Errorf("too large: err = %v, want status 502", err)
	}
	if err := h.ReadLimits(bufio.NewReader(strings.NewReader(long)), nil, 0, 1); err != nil {
		t.Errorf("one field, limit 1: %v", err)
	}
}

// A 1xx response is returned on its own; the final one follows.
func TestResponseHeadReadInterim(t *testing.T) {
	t.Parallel()
	br := bufio.NewReader(strings.NewReader("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: <x>\r\n\r\n" +
		"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"))
	var h ResponseHead
	var got []int
	for {
		if err := h.Read(br, []byte("POST"), 0); err != nil {
			t.Fatal(err)
		}
		got = append(got, h.Status)
		if h.Status >= 200 {
			break
		}
	}
	if len(got) != 3 || got[0] != 100 || got[1] != 103 || got[2] != 201 || h.Body != BodyLength {
		t.Errorf("statuses %v, body %v", got, h.Body)
	}
}

func TestResponseAppendWire(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, method, raw string
		out               BodyKind
		close             bool
		want              string
	}{
		{
			name: "length", method: "GET", out: BodyLength,
			raw:  "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n",
			want: "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n",
		},
		{
			name: "chunked with Trailer", method: "GET", out: BodyChunked,
			raw:  "HTTP/1.1 200 OK\r\nTrailer: Grpc-Status\r\nTransfer-Encoding: chunked\r\n\r\n",
			want: "HTTP/1.1 200 OK\r\nTrailer: Grpc-Status\r\nTransfer-Encoding: chunked\r\n\r\n",
		},
		{
			name: "until close re-chunked", method: "GET", out: BodyChunked,
			raw:  "HTTP/1.0 200 OK\r\nX-A: 1\r\n\r\n",
			want: "HTTP/1.1 200 OK\r\nX-A: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
		},
		{
			name: "until close to an HTTP/1.0 client", method: "GET", out: BodyUntilClose, close: true,
			raw:  "HTTP/1.1 200 OK\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\n\r\n",
			want: "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
		},
		{
			name: "HEAD keeps length", method: "HEAD", out: BodyNone,
			raw:  "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n",
			want: "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n",
		},
		{
			name: "304 keeps length", method: "GET", out: BodyNone,
			raw:  "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nContent-Length: 99\r\n\r\n",
			want: "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nContent-Length: 99\r\n\r\n",
		},
		{
			name: "204 never framed", method: "GET", out: BodyLength, close: true,
			raw:  "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
			want: "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n",
		},
		{
			name: "100 no close", method: "POST", out: BodyNone, close: true,
			raw:  "HTTP/1.1 100 Continue\r\n\r\n",
			want: "HTTP/1.1 100 Continue\r\n\r\n",
		},
		{
			name: "101 keeps upgrade", method: "GET", out: BodyNone, close: true,
			raw:  "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: a\r\n\r\n",
			want: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: a\r\nConnection: upgrade\r\n\r\n",
		},
		{
			name: "empty reason", method: "GET", out: BodyLength,
			raw:  "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",
			want: "HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, err := readResponse(t, tc.raw, tc.method)
			if err != nil {
				t.Fatal(err)
			}
			if got := string(h.AppendWire(nil, tc.out, tc.close)); got != tc.want {
				t.Errorf("got\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
}

package http1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http/httputil"
	"strings"
	"testing"
	"time"
)

func copyBody(in BodyKind, n int64, out BodyKind, body string) (string, int64, error) {
	var b bytes.Buffer
	dst := bufio.NewWriter(&b)
	got, err := CopyBody(dst, bufio.NewReader(strings.NewReader(body)), in, n, out)
	return b.String(), got, err
}

func TestCopyBody(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("0123456789abcdef", 8<<10) // 128 KiB: past src's buffer
	tests := []struct {
		name    string
		in      BodyKind
		n       int64
		out     BodyKind
		body    string
		want    string
		payload int64
	}{
		{"none", BodyNone, 0, BodyNone, "GET / HTTP/1.1\r\n", "", 0},
		{"length", BodyLength, 5, BodyLength, "helloGET", "hello", 5},
		{"length zero", BodyLength, 0, BodyLength, "GET", "", 0},
		{"length to chunked", BodyLength, 5, BodyChunked, "hello", "5\r\nhello\r\n0\r\n\r\n", 5},
		{"length to until close", BodyLength, 5, BodyUntilClose, "hello", "hello", 5},
		{"chunked", BodyChunked, 0, BodyChunked,
			"5;ext=1\r\nhello\r\n06\r\n world\r\n0\r\n\r\nGET", "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", 11},
		{"chunked trailers canonical", BodyChunked, 0, BodyChunked,
			"3\r\nabc\r\n0\r\ngrpc-status:0\nX-Fold: a\r\n  b \r\n\r\n",
			"3\r\nabc\r\n0\r\ngrpc-status: 0\r\nX-Fold: a b\r\n\r\n", 3},
		{"chunked to until close", BodyChunked, 0, BodyUntilClose,
			"3\r\nabc\r\n0\r\nX: 1\r\n\r\n", "abc", 3},
		{"until close to chunked", BodyUntilClose, 0, BodyChunked, "abc", "3\r\nabc\r\n0\r\n\r\n", 3},
		{"until close empty", BodyUntilClose, 0, BodyChunked, "", "0\r\n\r\n", 0},
		{"until close", BodyUntilClose, 0, BodyUntilClose, "abc", "abc", 3},
		{"big length", BodyLength, int64(len(big)), BodyLength, big, big, int64(len(big))},
		{"big until close", BodyUntilClose, 0, BodyUntilClose, big, big, int64(len(big))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, n, err := copyBody(tc.in, tc.n, tc.out, tc.body)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want || n != tc.payload {
				t.Errorf("got %q (%d bytes), want %q (%d)", short(got), n, short(tc.want), tc.payload)
			}
		})
	}
	// Re-chunking a big body decodes back to it.
	got, _, err := copyBody(BodyUntilClose, 0, BodyChunked, big)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := io.ReadAll(httputil.NewChunkedReader(strings.NewReader(got)))
	if err != nil || string(dec) != big {
		t.Errorf("re-chunked big body decodes to %d bytes, %v", len(dec), err)
	}
}

func short(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

func TestCopyBodyErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		in         BodyKind
		n          int64
		out        BodyKind
		body       string
		unexpected bool // also wraps io.ErrUnexpectedEOF
	}{
		{"length cut short", BodyLength, 10, BodyLength, "abc", true},
		{"chunked cut in data", BodyChunked, 0, BodyChunked, "5\r\nab", true},
		{"chunked cut in size", BodyChunked, 0, BodyChunked, "5", true},
		{"chunked no last chunk", BodyChunked, 0, BodyChunked, "1\r\na\r\n", true},
		{"chunked cut before CRLF", BodyChunked, 0, BodyChunked, "1\r\na\r", true},
		{"chunked no trailer end", BodyChunked, 0, BodyChunked, "0\r\n", true},
		{"bad size", BodyChunked, 0, BodyChunked, "x\r\n", false},
		{"size overflow", BodyChunked, 0, BodyChunked, "10000000000000000\r\n", false},
		{"bare LF size line", BodyChunked, 0, BodyChunked, "1\na\r\n0\r\n\r\n", false},
		{"CR in size line", BodyChunked, 0, BodyChunked, "1\r;\r\na\r\n0\r\n\r\n", false},
		{"data without CRLF", BodyChunked, 0, BodyChunked, "1\r\nab\r\n0\r\n\r\n", false},
		{"size line too long", BodyChunked, 0, BodyChunked, "1;" + strings.Repeat("e", 4100) + "\r\na\r\n0\r\n\r\n", false},
		{"trailer bad line", BodyChunked, 0, BodyChunked, "0\r\nbad\r\n\r\n", false},
		{"trailer space in name", BodyChunked, 0, BodyChunked, "0\r\nX : y\r\n\r\n", false},
		{"trailer too long", BodyChunked, 0, BodyChunked, "0\r\nX: " + strings.Repeat("y", 5000) + "\r\n\r\n", false},
		{"trailer bare LF end", BodyChunked, 0, BodyChunked, "0\r\nX: y\n\n", true}, // no CRLF CRLF before EOF
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := copyBody(tc.in, tc.n, tc.out, tc.body)
			if !errors.Is(err, ErrBodySource) || errors.Is(err, ErrBodyDest) {
				t.Fatalf("err = %v, want one wrapping ErrBodySource only", err)
			}
			if errors.Is(err, io.ErrUnexpectedEOF) != tc.unexpected {
				t.Errorf("err = %v; wraps io.ErrUnexpectedEOF = %v, want %v", err, !tc.unexpected, tc.unexpected)
			}
			if errors.Is(err, ErrBodyFraming) == tc.unexpected {
				t.Errorf("err = %v; wraps ErrBodyFraming = %v, want %v", err, tc.unexpected, !tc.unexpected)
			}
		})
	}

	for _, pair := range [][2]BodyKind{{BodyChunked, BodyLength}, {BodyUntilClose, BodyLength}, {BodyNone, BodyChunked}, {BodyLength, BodyNone}} {
		_, _, err := copyBody(pair[0], 0, pair[1], "")
		if err == nil || errors.Is(err, ErrBodySource) || errors.Is(err, ErrBodyDest) {
			t.Errorf("pair %v: err = %v, want a plain error", pair, err)
		}
	}

	// A failing destination is reported as such.
	dst := bufio.NewWriterSize(failWriter{}, 16)
	_, err := CopyBody(dst, bufio.NewReader(strings.NewReader(strings.Repeat("x", 100))), BodyLength, 100, BodyLength)
	if !errors.Is(err, ErrBodyDest) || errors.Is(err, ErrBodySource) {
		t.Errorf("write failure: err = %v, want one wrapping ErrBodyDest only", err)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }

// CopyBody flushes what it has whenever it must wait for more input, so a
// stream of events reaches the client as each one arrives.
func TestCopyBodyFlushesWhenSourceBlocks(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		in, out BodyKind
		event   string // one event as framed on the input
		want    string // as it must reach the client
		end     string
	}{
		{"chunked", BodyChunked, BodyChunked, "7\r\ndata: 1\r\n", "7\r\ndata: 1\r\n", "0\r\n\r\n"},
		{"chunked, next size line begun", BodyChunked, BodyChunked, "7\r\ndata: 1\r\n1", "7\r\ndata: 1\r\n", "\r\nx\r\n0\r\n\r\n"},
		{"chunked trailer", BodyChunked, BodyChunked, "7\r\ndata: 1\r\n0\r\nA: 1\r\n", "7\r\ndata: 1\r\n", "\r\n"},
		{"until close", BodyUntilClose, BodyChunked, "data: 1", "7\r\ndata: 1\r\n", ""},
		{"length", BodyLength, BodyLength, "data: 1", "data: 1", "data: 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pr, pw := io.Pipe()
			out := make(chan string, 16)
			dst := bufio.NewWriter(chanWriter(out))
			done := make(chan error, 1)
			go func() {
				_, err := CopyBody(dst, bufio.NewReader(pr), tc.in, 14, tc.out)
				done <- err
			}()
			if _, err := io.WriteString(pw, tc.event); err != nil {
				t.Fatal(err)
			}
			select {
			case got := <-out:
				if got != tc.want {
					t.Errorf("first flush %q, want %q", got, tc.want)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the event was not flushed while CopyBody waited for more")
			}
			_, _ = io.WriteString(pw, tc.end)
			pw.Close()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		})
	}
}

type chanWriter chan string

func (c chanWriter) Write(p []byte) (int, error) {
	c <- string(p)
	return len(p), nil
}

func TestCopyBodyAllocs(t *testing.T) {
	body := benchChunkedBody()
	r := bytes.NewReader(body)
	src := bufio.NewReader(r)
	dst := bufio.NewWriter(io.Discard)
	for _, tc := range []struct {
		in, out BodyKind
	}{{BodyChunked, BodyChunked}, {BodyLength, BodyLength}, {BodyUntilClose, BodyChunked}} {
		allocs := testing.AllocsPerRun(50, func() {
			r.Reset(body)
			src.Reset(r)
			if _, err := CopyBody(dst, src, tc.in, int64(len(body)), tc.out); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%v to %v: %.1f allocations per body, want 0", tc.in, tc.out, allocs)
		}
	}
}

func TestWriteError(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	w := bufio.NewWriter(&b)
	if err := WriteError(w, 503, "no healthy upstream", true, "Retry-After", "5", "X-Outrider", "sidecar"); err != nil {
		t.Fatal(err)
	}
	_ = w.Flush()
	want := "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 20\r\n" +
		"Retry-After: 5\r\nX-Outrider: sidecar\r\nConnection: close\r\n\r\nno healthy upstream\n"
	if b.String() != want {
		t.Errorf("got\n%q\nwant\n%q", b.String(), want)
	}
	var h ResponseHead
	br := bufio.NewReader(&b)
	if err := h.Read(br, []byte("GET"), 0); err != nil || h.Status != 503 || h.Body != BodyLength || !h.Close {
		t.Errorf("reads back as %d %v close=%v, %v", h.Status, h.Body, h.Close, err)
	}

	b.Reset()
	_ = WriteError(w, 599, "", false)
	_ = w.Flush()
	if want := "HTTP/1.1 599 Status 599\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 1\r\n\r\n\n"; b.String() != want {
		t.Errorf("got %q, want %q", b.String(), want)
	}

	b.Reset()
	for _, extra := range [][]string{{"X"}, {"X Y", "v"}, {"X", "a\r\nB: c"}, {"", "v"}} {
		if err := WriteError(w, 400, "x", false, extra...); err == nil {
			t.Errorf("extra %q accepted", extra)
		}
	}
	_ = w.Flush()
	if b.Len() != 0 {
		t.Errorf("a rejected WriteError wrote %q", b.String())
	}
}

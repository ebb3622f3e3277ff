package hostile

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/outrider-mesh/outrider/internal/testutil"
)

// received is one request as the recording upstream got it.
type received struct {
	// h2: it came as an HTTP/2 stream (h2c), not HTTP/1.1.
	h2 bool
	// head is the request head exactly as received, for HTTP/1.1 (request
	// line and fields, up to and including the empty line; cut short when
	// the connection ended first). For HTTP/2 it is the decoded header list
	// rendered one "name: value" per line, pseudo-headers first.
	head string
	// fields are head's header fields in order (HTTP/2: pseudo-headers
	// included), names as sent.
	fields [][2]string
	body   []byte
	// complete: the whole request (head and framed body) arrived.
	complete bool
}

// target is the request target (HTTP/1.1) or :path (HTTP/2).
func (r *received) target() string {
	if r.h2 {
		v, _ := r.get(":path")
		return v
	}
	line, _, _ := strings.Cut(r.head, "\r\n")
	parts := strings.SplitN(line, " ", 3)
	if len(parts) < 2 {
		return ""
	}
	return parts[1]
}

// values returns every value of the field name (case-insensitive).
func (r *received) values(name string) []string {
	var out []string
	for _, f := range r.fields {
		if strings.EqualFold(f[0], name) {
			out = append(out, f[1])
		}
	}
	return out
}

// get returns the only value of name; ok is false when it is absent.
func (r *received) get(name string) (string, bool) {
	v := r.values(name)
	if len(v) == 0 {
		return "", false
	}
	return v[0], true
}

func (r *received) String() string {
	s := fmt.Sprintf("%q", r.head)
	if len(r.body) > 0 {
		s += fmt.Sprintf(" body %q", r.body)
	}
	if !r.complete {
		s += " (incomplete)"
	}
	return s
}

// recorder is the application behind sidecar B: a raw TCP server that
// records every request exactly as it arrived, parsing only as much as it
// needs to answer each one (a head, then a body by Content-Length or
// chunked), so that nothing a sidecar forwards is normalized away on the
// way into the record. Every request is answered 200 with the body "ok";
// connections stay open. A connection that starts with the HTTP/2 preface
// is served as h2c (for http2 services). Safe for concurrent use.
type recorder struct {
	ln net.Listener

	mu   sync.Mutex
	reqs []*received
	// conns are the connections accepted, each with every byte read.
	conns []*testutil.Buffer
	wg    sync.WaitGroup
}

func newRecorder() (*recorder, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &recorder{ln: ln}
	r.wg.Add(1)
	go r.accept()
	return r, nil
}

func (r *recorder) addr() string { return r.ln.Addr().String() }

// close stops the listener; open connections end with the sidecars.
func (r *recorder) close() {
	r.ln.Close()
	r.wg.Wait()
}

// reset forgets everything recorded so far.
func (r *recorder) reset() {
	r.mu.Lock()
	r.reqs = nil
	r.conns = nil
	r.mu.Unlock()
}

// requests returns the requests recorded so far.
func (r *recorder) requests() []*received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*received(nil), r.reqs...)
}

// raw returns the bytes of each connection accepted since the last reset.
func (r *recorder) raw() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, len(r.conns))
	for i, c := range r.conns {
		out[i] = c.String()
	}
	return out
}

func (r *recorder) add(q *received) {
	r.mu.Lock()
	r.reqs = append(r.reqs, q)
	r.mu.Unlock()
}

func (r *recorder) accept() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		raw := &testutil.Buffer{}
		r.mu.Lock()
		r.conns = append(r.conns, raw)
		r.mu.Unlock()
		go r.serve(c, raw)
	}
}

func (r *recorder) serve(c net.Conn, raw *testutil.Buffer) {
	defer c.Close()
	br := bufio.NewReader(io.TeeReader(c, raw))
	if p, err := br.Peek(len(http2.ClientPreface)); err == nil && string(p) == http2.ClientPreface {
		br.Discard(len(p))
		r.serveH2(c, br)
		return
	}
	for {
		q, err := readH1(br)
		if q != nil {
			r.add(q)
		}
		if err != nil {
			return
		}
		if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
			return
		}
	}
}

var errFraming = errors.New("recorder: bad framing")

// readH1 reads one HTTP/1.1 request. It returns a partial record (not
// complete) with an error when the connection ended or the framing was
// bad part-way, nil and io.EOF when the connection closed between
// requests.
func readH1(br *bufio.Reader) (*received, error) {
	q := &received{}
	var head strings.Builder
	first := true
	for {
		line, err := br.ReadString('\n')
		head.WriteString(line)
		if err != nil {
			if head.Len() == 0 {
				return nil, io.EOF
			}
			q.head = head.String()
			return q, err
		}
		if line == "\r\n" || line == "\n" {
			break
		}
		if !first {
			name, value, _ := strings.Cut(strings.TrimRight(line, "\r\n"), ":")
			q.fields = append(q.fields, [2]string{name, strings.Trim(value, " \t")})
		}
		first = false
	}
	q.head = head.String()
	var body bytes.Buffer
	var err error
	switch te, _ := q.get("Transfer-Encoding"); {
	case strings.EqualFold(te, "chunked"):
		err = readChunked(br, &body)
	default:
		cl, _ := q.get("Content-Length")
		n, perr := strconv.ParseInt(cl, 10, 64)
		if cl != "" && (perr != nil || n < 0) {
			err = errFraming
			break
		}
		_, err = io.CopyN(&body, br, n)
	}
	q.body = body.Bytes()
	q.complete = err == nil
	return q, err
}

// readChunked reads a chunked body (sizes, data, trailer) into body.
func readChunked(br *bufio.Reader, body *bytes.Buffer) error {
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return err
		}
		size, _, _ := strings.Cut(strings.TrimRight(line, "\r\n"), ";")
		n, err := strconv.ParseInt(strings.TrimSpace(size), 16, 64)
		if err != nil || n < 0 {
			return errFraming
		}
		if n == 0 {
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					return err
				}
				if line == "\r\n" {
					return nil
				}
			}
		}
		if _, err := io.CopyN(body, br, n); err != nil {
			return err
		}
		if crlf, err := br.ReadString('\n'); err != nil {
			return err
		} else if crlf != "\r\n" {
			return errFraming
		}
	}
}

// serveH2 serves an h2c connection after its preface: every stream is
// recorded when its request ends (END_STREAM) and answered 200 "ok".
func (r *recorder) serveH2(c net.Conn, br *bufio.Reader) {
	fr := http2.NewFramer(c, br)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	fr.MaxHeaderListSize = 1 << 20
	var hbuf bytes.Buffer
	enc := hpack.NewEncoder(&hbuf)
	if fr.WriteSettings() != nil {
		return
	}
	open := map[uint32]*received{}
	respond := func(id uint32, q *received) error {
		q.complete = true
		r.add(q)
		delete(open, id)
		hbuf.Reset()
		enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
		enc.WriteField(hpack.HeaderField{Name: "content-length", Value: "2"})
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hbuf.Bytes(), EndHeaders: true}); err != nil {
			return err
		}
		return fr.WriteData(id, true, []byte("ok"))
	}
	defer func() {
		for _, q := range open {
			r.add(q) // streams that never ended
		}
	}()
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				if fr.WriteSettingsAck() != nil {
					return
				}
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				if fr.WritePing(true, f.Data) != nil {
					return
				}
			}
		case *http2.MetaHeadersFrame:
			q := &received{h2: true}
			var head strings.Builder
			for _, hf := range f.Fields {
				q.fields = append(q.fields, [2]string{hf.Name, hf.Value})
				fmt.Fprintf(&head, "%s: %s\n", hf.Name, hf.Value)
			}
			q.head = head.String()
			open[f.StreamID] = q
			if f.StreamEnded() && respond(f.StreamID, q) != nil {
				return
			}
		case *http2.DataFrame:
			q := open[f.StreamID]
			if q == nil {
				continue
			}
			q.body = append(q.body, f.Data()...)
			if n := uint32(len(f.Data())); n > 0 {
				fr.WriteWindowUpdate(0, n)
				fr.WriteWindowUpdate(f.StreamID, n)
			}
			if f.StreamEnded() && respond(f.StreamID, q) != nil {
				return
			}
		case *http2.RSTStreamFrame:
			if q := open[f.StreamID]; q != nil {
				r.add(q)
				delete(open, f.StreamID)
			}
		case *http2.GoAwayFrame:
			return
		}
	}
}

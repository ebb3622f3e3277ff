package sidecar

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outrider-mesh/outrider/gateway"
	"github.com/outrider-mesh/outrider/gateway/filter"
	"github.com/outrider-mesh/outrider/sidecar/http1"
)

// gwLoop is an HTTP/1.1 loop (inbound) whose gateway has one route, /gw/,
// served by inner; other requests go to a raw backend on the lean path.
type gwLoop struct {
	addr string
	mu   sync.Mutex
	seen []*http.Request // what inner was handed
}

func startGatewayLoop(t *testing.T, inner http.HandlerFunc) *gwLoop {
	t.Helper()
	be := startRawBackend(t, hello)
	l := &gwLoop{}
	slot := &gatewaySlot{}
	slot.inner = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.mu.Lock()
		l.seen = append(l.seen, r)
		l.mu.Unlock()
		inner(w, r)
	})
	gw, err := gateway.New(gateway.Config{Routes: []gateway.Route{{Name: "gw", Match: gateway.Match{PathPrefix: "/gw/"}}}}, slot.inner)
	if err != nil {
		t.Fatal(err)
	}
	slot.cur.Store(gw)
	l.addr, _ = startH1ProxyWith(t, be.ln.Addr().String(), nil, nil, func(p *h1Proxy) {
		p.inbound, p.gw = true, slot
	})
	return l
}

func (l *gwLoop) last() *http.Request {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.seen) == 0 {
		return nil
	}
	return l.seen[len(l.seen)-1]
}

// roundTripRaw writes raw on c and reads one response with net/http's
// client parser (trailers included).
func roundTripRaw(t *testing.T, c net.Conn, br *bufio.Reader, raw, method string) (*http.Response, string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("body: %v", err)
	}
	return resp, string(b)
}

func dialLoop(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

// TestH1GatewayServesMatchedRequests: on one keep-alive connection,
// requests the gateway does not handle take the lean path to the
// backend, the ones it handles reach its handler with the request as
// net/http's server would give it (hop-by-hop fields gone, framing in
// ContentLength, Host and RemoteAddr set), and both kinds alternate.
func TestH1GatewayServesMatchedRequests(t *testing.T) {
	l := startGatewayLoop(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "2")
		io.WriteString(w, "gw")
	})
	c, br := dialLoop(t, l.addr)
	for i := range 3 {
		if resp, body := roundTripRaw(t, c, br, "GET /plain HTTP/1.1\r\nHost: web\r\n\r\n", "GET"); resp.StatusCode != 200 || body != "hello from backend\n" {
			t.Fatalf("lean path: %d %q", resp.StatusCode, body)
		}
		resp, body := roundTripRaw(t, c, br, "GET /gw/x?q=1 HTTP/1.1\r\nHost: web\r\nConnection: x-hop\r\nX-Hop: 1\r\nKeep-Alive: 5\r\nX-End: e\r\n\r\n", "GET")
		if resp.StatusCode != 200 || body != "gw" || resp.Close {
			t.Fatalf("gateway path %d: %d %q close %v", i, resp.StatusCode, body, resp.Close)
		}
		if resp.Header.Get("Date") == "" {
			t.Error("no Date on the gateway's answer")
		}
	}
	r := l.last()
	if r.Method != "GET" || r.URL.Path != "/gw/x" || r.URL.RawQuery != "q=1" || r.Host != "web" || r.RemoteAddr == "" || r.ContentLength != 0 {
		t.Errorf("handler got %s %s host %q remote %q length %d", r.Method, r.URL, r.Host, r.RemoteAddr, r.ContentLength)
	}
	for _, k := range []string{"Connection", "X-Hop", "Keep-Alive"} {
		if _, ok := r.Header[k]; ok {
			t.Errorf("hop-by-hop %s reached the handler", k)
		}
	}
	if r.Header.Get("X-End") != "e" {
		t.Errorf("end-to-end field lost: %v", r.Header)
	}
}

// TestH1GatewayResponseFraming: what the handler writes is framed the way
// net/http's server frames it.
func TestH1GatewayResponseFraming(t *testing.T) {
	l := startGatewayLoop(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/gw/stream":
			w.Header().Set("Trailer", "X-Sum")
			io.WriteString(w, "hello ")
			w.(http.Flusher).Flush()
			io.WriteString(w, "world")
			w.Header().Set("X-Sum", "42")
			w.Header().Set(http.TrailerPrefix+"X-Late", "7")
		case "/gw/empty":
		case "/gw/nocontent":
			w.WriteHeader(204)
			if _, err := io.WriteString(w, "x"); err != http.ErrBodyNotAllowed {
				panic(fmt.Sprintf("body on 204: %v", err))
			}
		case "/gw/length":
			w.Header().Set("Content-Length", "5")
			io.WriteString(w, "12345")
		case "/gw/short":
			w.Header().Set("Content-Length", "10")
			io.WriteString(w, "12345")
		case "/gw/inject":
			w.Header().Set("X-Bad", "a\r\nInjected: 1")
			w.Header()["Bad Name"] = []string{"x"}
			io.WriteString(w, "ok")
		}
	})
	c, br := dialLoop(t, l.addr)
	resp, body := roundTripRaw(t, c, br, "GET /gw/stream HTTP/1.1\r\nHost: web\r\n\r\n", "GET")
	if body != "hello world" || len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
		t.Fatalf("stream: %q %v", body, resp.TransferEncoding)
	}
	if resp.Trailer.Get("X-Sum") != "42" || resp.Trailer.Get("X-Late") != "7" {
		t.Errorf("trailers %v", resp.Trailer)
	}
	if resp, body = roundTripRaw(t, c, br, "GET /gw/empty HTTP/1.1\r\nHost: web\r\n\r\n", "GET"); resp.StatusCode != 200 || resp.ContentLength != 0 || body != "" {
		t.Errorf("empty: %d length %d %q", resp.StatusCode, resp.ContentLength, body)
	}
	if resp, _ = roundTripRaw(t, c, br, "GET /gw/nocontent HTTP/1.1\r\nHost: web\r\n\r\n", "GET"); resp.StatusCode != 204 {
		t.Errorf("nocontent: %d", resp.StatusCode)
	}
	if resp, body = roundTripRaw(t, c, br, "HEAD /gw/length HTTP/1.1\r\nHost: web\r\n\r\n", "HEAD"); resp.ContentLength != 5 || body != "" {
		t.Errorf("HEAD: length %d body %q", resp.ContentLength, body)
	}
	if resp, body = roundTripRaw(t, c, br, "GET /gw/length HTTP/1.1\r\nHost: web\r\n\r\n", "GET"); body != "12345" || resp.ContentLength != 5 {
		t.Errorf("length: %d %q", resp.ContentLength, body)
	}
	resp, body = roundTripRaw(t, c, br, "GET /gw/inject HTTP/1.1\r\nHost: web\r\n\r\n", "GET")
	if resp.Header.Get("Injected") != "" || resp.Header.Get("X-Bad") != "a  Injected: 1" || body != "ok" {
		t.Errorf("header injection: %v", resp.Header)
	}
	// The connection carried all of that; a response cut short of its
	// Content-Length ends it.
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET /gw/short HTTP/1.1\r\nHost: web\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(resp.Body); err == nil || string(b) != "12345" {
		t.Errorf("short body: %q %v, want the 5 bytes then a cut", b, err)
	}
}

// TestH1GatewayRequestBodies: a Content-Length body and a chunked one
// reach the handler decoded; a body the handler leaves unread is drained
// (small) or the connection closed (large); Expect: 100-continue is
// answered when the handler reads; a chunked body with bad framing fails
// the handler's read and closes the connection.
func TestH1GatewayRequestBodies(t *testing.T) {
	l := startGatewayLoop(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/gw/ignore" {
			w.WriteHeader(202)
			return
		}
		if r.URL.Path == "/gw/hints" {
			w.Header().Set("Link", "</a.css>")
			w.WriteHeader(103)
			w.Header().Del("Link")
			w.WriteHeader(100) // dropped: the loop sends its own on the first read
		}
		b, err := io.ReadAll(r.Body)
		if err != nil {
			w.WriteHeader(400)
			return
		}
		l := len(b)
		fmt.Fprintf(w, "%d:%s", l, b[:min(l, 16)])
	})
	c, br := dialLoop(t, l.addr)
	if _, body := roundTripRaw(t, c, br, "POST /gw/read HTTP/1.1\r\nHost: web\r\nContent-Length: 5\r\n\r\nhello", "POST"); body != "5:hello" {
		t.Errorf("length body: %q", body)
	}
	if _, body := roundTripRaw(t, c, br, "POST /gw/read HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n", "POST"); body != "5:abcde" {
		t.Errorf("chunked body: %q", body)
	}
	if resp, _ := roundTripRaw(t, c, br, "POST /gw/ignore HTTP/1.1\r\nHost: web\r\nContent-Length: 4\r\n\r\nskip", "POST"); resp.StatusCode != 202 {
		t.Errorf("ignored body: %d", resp.StatusCode)
	}
	if resp, body := roundTripRaw(t, c, br, "GET /plain HTTP/1.1\r\nHost: web\r\n\r\n", "GET"); resp.StatusCode != 200 || body != "hello from backend\n" {
		t.Fatalf("after a drained body: %d %q", resp.StatusCode, body)
	}
	// Expect: 100-continue.
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "POST /gw/read HTTP/1.1\r\nHost: web\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
	line, _ := br.ReadString('\n')
	if line != "HTTP/1.1 100 Continue\r\n" {
		t.Fatalf("want 100 Continue first, got %q", line)
	}
	br.ReadString('\n')
	if _, body := roundTripRaw(t, c, br, "abc", "POST"); body != "3:abc" {
		t.Errorf("after 100: %q", body)
	}
	// A 103 before the body is read is relayed, the wait for the 100 goes
	// on, and only the loop's 100 is sent.
	c4, br4 := dialLoop(t, l.addr)
	c4.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c4, "POST /gw/hints HTTP/1.1\r\nHost: web\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
	var got []int
	for {
		resp, err := http.ReadResponse(br4, nil)
		if err != nil {
			t.Fatalf("after %v: %v", got, err)
		}
		got = append(got, resp.StatusCode)
		if resp.StatusCode == 100 {
			io.WriteString(c4, "abc")
		}
		if resp.StatusCode >= 200 {
			b, _ := io.ReadAll(resp.Body)
			if fmt.Sprint(got) != "[103 100 200]" || string(b) != "3:abc" {
				t.Errorf("responses %v, body %q; want [103 100 200] and 3:abc", got, b)
			}
			break
		}
	}
	// An HTTP/1.0 client gets no 1xx (RFC 9110 section 15.2).
	c5, br5 := dialLoop(t, l.addr)
	if resp, body := roundTripRaw(t, c5, br5, "POST /gw/hints HTTP/1.0\r\nHost: web\r\nContent-Length: 3\r\n\r\nabc", "POST"); resp.StatusCode != 200 || body != "3:abc" {
		t.Errorf("HTTP/1.0 client: first response %d %q, want the final 200 (no 1xx)", resp.StatusCode, body)
	}
	// A large unread body ends the connection.
	big := strings.Repeat("x", maxDiscardBody+1024)
	c2, br2 := dialLoop(t, l.addr)
	c2.SetDeadline(time.Now().Add(5 * time.Second))
	go io.WriteString(c2, fmt.Sprintf("POST /gw/ignore HTTP/1.1\r\nHost: web\r\nContent-Length: %d\r\n\r\n%s", len(big), big))
	resp, err := http.ReadResponse(br2, nil)
	if err != nil || resp.StatusCode != 202 {
		t.Fatalf("large ignored body: %v %v", resp, err)
	}
	if _, err := br2.ReadByte(); err == nil {
		t.Error("the connection stayed open after a large unread body")
	}
	// Bad chunk framing: the handler's read fails; the connection closes.
	c3, br3 := dialLoop(t, l.addr)
	resp, _ = roundTripRaw(t, c3, br3, "POST /gw/read HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", "POST")
	if resp.StatusCode != 400 {
		t.Errorf("bad chunk: %d, want the handler's 400", resp.StatusCode)
	}
	if _, err := br3.ReadByte(); err == nil {
		t.Error("the connection stayed open after bad chunk framing")
	}
}

// TestH1GatewayUpgrade: an upgrade the gateway handles is handed over by
// Hijack (as ReverseProxy relays a 101) and the loop lets go of the
// connection.
func TestH1GatewayUpgrade(t *testing.T) {
	l := startGatewayLoop(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			w.WriteHeader(400)
			return
		}
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			w.WriteHeader(500)
			return
		}
		defer conn.Close()
		rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		rw.Flush()
		line, _ := rw.ReadString('\n')
		rw.WriteString("echo " + line)
		rw.Flush()
	})
	c, br := dialLoop(t, l.addr)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET /gw/ws HTTP/1.1\r\nHost: web\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	io.WriteString(c, "ping\n")
	if got, _ := br.ReadString('\n'); got != "echo ping\n" {
		t.Errorf("tunnel: %q", got)
	}
}

// syncInbound is an inbound with just what syncRoundTrip uses: the
// application's pool and address.
func syncInbound(t *testing.T, addr string) *inbound {
	in := &inbound{}
	in.cfg.Store(&PublicListener{LocalService: addr, LocalRequestTimeout: 5 * time.Second})
	in.app = newConnPool(func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	})
	t.Cleanup(in.app.close)
	return in
}

func getVia(in *inbound, ctx context.Context, method, path string) (int, string, error) {
	r, _ := http.NewRequestWithContext(ctx, method, "http://app"+path, nil)
	resp, err := in.syncRoundTrip(r)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// TestSyncRoundTrip: body-less requests from the gateway's proxy to an
// HTTP/1.1 application reuse pooled connections; a reused one the
// application closed is retried once for GET but never for POST; the
// request's context ends the wait; 1xx answers go to the trace, bounded.
func TestSyncRoundTrip(t *testing.T) {
	t.Run("reuse", func(t *testing.T) {
		be := startRawBackend(t, hello)
		in := syncInbound(t, be.ln.Addr().String())
		for range 5 {
			if st, body, err := getVia(in, context.Background(), "GET", "/"); err != nil || st != 200 || body != "hello from backend\n" {
				t.Fatalf("%d %q %v", st, body, err)
			}
		}
		if n := be.accepted.Load(); n != 1 {
			t.Errorf("%d connections for 5 requests, want 1", n)
		}
	})
	t.Run("stale", func(t *testing.T) {
		// Answers keep-alive, then closes: the pooled connection is dead
		// when the next request takes it.
		be := startRawBackend(t, func(_ *http1.RequestHead, _ *bufio.Reader, w *bufio.Writer) bool {
			w.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			return false
		})
		in := syncInbound(t, be.ln.Addr().String())
		for i := range 3 {
			if st, _, err := getVia(in, context.Background(), "GET", "/"); err != nil || st != 200 {
				t.Fatalf("GET %d: %d %v", i, st, err)
			}
			time.Sleep(20 * time.Millisecond) // the close reaches the pool's connection
		}
		if _, _, err := getVia(in, context.Background(), "POST", "/"); err == nil {
			t.Error("a POST on a connection the application closed was retried")
		}
	})
	t.Run("context", func(t *testing.T) {
		hold := make(chan struct{})
		defer close(hold)
		be := startRawBackend(t, func(*http1.RequestHead, *bufio.Reader, *bufio.Writer) bool { <-hold; return false })
		in := syncInbound(t, be.ln.Addr().String())
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		if _, _, err := getVia(in, ctx, "GET", "/"); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err %v, want the context's deadline", err)
		}
	})
	t.Run("interim", func(t *testing.T) {
		be := startRawBackend(t, func(req *http1.RequestHead, _ *bufio.Reader, w *bufio.Writer) bool {
			n := 1
			if string(req.Target) == "/flood" {
				n = maxInterim + 1
			}
			for range n {
				w.WriteString("HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n")
			}
			w.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			return true
		})
		in := syncInbound(t, be.ln.Addr().String())
		var got []int
		ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
			Got1xxResponse: func(code int, _ textproto.MIMEHeader) error { got = append(got, code); return nil }})
		if st, body, err := getVia(in, ctx, "GET", "/"); err != nil || st != 200 || body != "ok" || len(got) != 1 || got[0] != 103 {
			t.Errorf("%d %q %v, interim %v", st, body, err, got)
		}
		if _, _, err := getVia(in, context.Background(), "GET", "/flood"); !errors.Is(err, errTooManyInterim) {
			t.Errorf("flood: %v", err)
		}
	})
}

// TestLooserRouteHeaderLimits: route filter header limits above the
// listener's are named (the listener refuses first, so they cannot
// apply); tighter ones are not.
func TestLooserRouteHeaderLimits(t *testing.T) {
	cfg := gateway.Config{Routes: []gateway.Route{
		{Name: "tight", Filter: filter.Config{MaxHeaders: 10, MaxHeaderBytes: 1024}},
		{Name: "loose", Filter: filter.Config{MaxHeaders: 200, MaxHeaderBytes: 128 << 10}},
	}}
	got := headerLimits{}.looser(cfg) // the codec's defaults: 100 fields, 64 KiB
	want := []string{"routes[1].filter.max_headers 200 > 100", "routes[1].filter.max_header_bytes 131072 > 65536"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if got := (headerLimits{fields: 500, bytes: 1 << 20}).looser(cfg); len(got) != 0 {
		t.Errorf("under a looser listener: %q", got)
	}
}

// TestH1GatewayHandlerPanics: a handler that gives up mid-answer
// (ReverseProxy's http.ErrAbortHandler) or panics costs only its
// connection: the client sees the answer cut short, and the loop serves
// the next connection.
func TestH1GatewayHandlerPanics(t *testing.T) {
	l := startGatewayLoop(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "partial")
		w.(http.Flusher).Flush()
		if r.URL.Path == "/gw/abort" {
			panic(http.ErrAbortHandler)
		}
		panic("a bug")
	})
	for _, path := range []string{"/gw/abort", "/gw/bug"} {
		c, br := dialLoop(t, l.addr)
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: web\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		b, err := io.ReadAll(resp.Body)
		if string(b) != "partial" || err == nil {
			t.Errorf("%s: %q %v, want the partial body and then a cut", path, b, err)
		}
	}
	c, br := dialLoop(t, l.addr)
	if resp, body := roundTripRaw(t, c, br, "GET /plain HTTP/1.1\r\nHost: web\r\n\r\n", "GET"); resp.StatusCode != 200 || body != "hello from backend\n" {
		t.Errorf("after the panics: %d %q", resp.StatusCode, body)
	}
}

// TestH1GatewayBodyReadAfterHandler: net/http's transport may still be
// reading a request body on its own goroutine when the handler has
// answered (here a handler that does the same). The answer is not held
// up by that reader, the reader is stopped before the loop takes the
// connection back (the race detector checks), and the connection closes.
func TestH1GatewayBodyReadAfterHandler(t *testing.T) {
	for _, chunked := range []bool{false, true} {
		l := startGatewayLoop(t, func(w http.ResponseWriter, r *http.Request) {
			go io.Copy(io.Discard, r.Body)
			time.Sleep(20 * time.Millisecond)
			w.WriteHeader(413)
		})
		c, br := dialLoop(t, l.addr)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		head := "POST /gw/up HTTP/1.1\r\nHost: web\r\nContent-Length: 1000000\r\n\r\n"
		piece := strings.Repeat("x", 1000)
		if chunked {
			head = "POST /gw/up HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\n"
			piece = fmt.Sprintf("%x\r\n%s\r\n", 1000, strings.Repeat("x", 1000))
		}
		io.WriteString(c, head+piece) // and nothing more: the body stalls
		// Without the interruption the answer would wait out the 60s
		// body idle bound, past the connection's 10s deadline.
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 413 {
			t.Fatalf("chunked=%v: %v %v", chunked, resp, err)
		}
		if _, err := br.ReadByte(); err == nil {
			t.Errorf("chunked=%v: the connection stayed open", chunked)
		}
	}
}

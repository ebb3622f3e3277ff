package hostile

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

// entry is where a case's bytes go in.
type entry int

const (
	// viaA: plaintext to A's upstream listener for b, as the local
	// application would send; A forwards to B over mTLS, B to rec.
	viaA entry = 1 << iota
	// viaB: straight to B's public listener over mTLS holding A's
	// identity, as a hostile peer sidecar would send.
	viaB
	// viaBgw: as viaB, to B3, whose gateway serves every request (the
	// gateway's handlers and proxy instead of the lean forwarding). A
	// case that runs via B runs here too, with the same expectations.
	viaBgw
	both = viaA | viaB
)

func (e entry) String() string {
	switch e {
	case viaA:
		return "via-A"
	case viaBgw:
		return "via-B-gateway"
	}
	return "via-B"
}

// asB is e with viaBgw read as viaB, for a case's via and keep sets.
func (e entry) asB() entry {
	if e == viaBgw {
		return viaB
	}
	return e
}

// h1Case is one hostile HTTP/1.1 input.
type h1Case struct {
	name string
	via  entry // both when zero
	// send is written as is; "{host}" is replaced by the Host value
	// every case uses.
	send string
	// status is the expected status of the only response; 0: none, the
	// connection is closed without an answer.
	status int
	// statuses, when set, are the expected statuses of several responses
	// (pipelined requests), instead of status.
	statuses []int
	// keep: the entries whose sidecar keeps the connection open after
	// answering (the client half-closes to end it); on the others it
	// must close it. A keeps its client's connection when B refused the
	// request (B's refusal closes only the A-B connection).
	keep entry
	// upstream checks what rec received (the requests of this case, in
	// order); nil: nothing at all.
	upstream func(t *testing.T, got []*received)
	// knownBug: main handles the case wrongly; the case is skipped with
	// this reason until it is fixed.
	knownBug string
}

const host = "b"

// rejected is the outcome of a request refused before it is forwarded:
// its status, the connection closed, nothing upstream.
func rejected(name string, status int, send string) h1Case {
	return h1Case{name: name, send: send, status: status}
}

// one asserts that exactly one complete request arrived, then runs check
// on it.
func one(check func(t *testing.T, r *received)) func(t *testing.T, got []*received) {
	return func(t *testing.T, got []*received) {
		t.Helper()
		if len(got) != 1 || !got[0].complete {
			t.Fatalf("upstream received %d requests, want exactly 1 complete: %v", len(got), got)
		}
		if check != nil {
			check(t, got[0])
		}
	}
}

// absent asserts that none of names reached the upstream.
// peerCert checks that the upstream got X-Forwarded-Client-Cert naming
// the mesh peer (A) and nothing else.
func peerCert(t *testing.T, r *received) {
	t.Helper()
	if v := r.values("X-Forwarded-Client-Cert"); !slices.Equal(v, []string{"URI=" + idA}) {
		t.Errorf("upstream received X-Forwarded-Client-Cert %q, want [URI=%s]\nhead: %q", v, idA, r.head)
	}
}

func absent(names ...string) func(t *testing.T, r *received) {
	return func(t *testing.T, r *received) {
		t.Helper()
		for _, n := range names {
			if v := r.values(n); len(v) > 0 {
				t.Errorf("upstream received %s: %q; want it removed\nhead: %q", n, v, r.head)
			}
		}
	}
}

// targetIs asserts the request target the upstream received.
func targetIs(want string) func(t *testing.T, r *received) {
	return func(t *testing.T, r *received) {
		t.Helper()
		if got := r.target(); got != want {
			t.Errorf("upstream received target %q, want %q", got, want)
		}
	}
}

// xffIsSidecars: the sidecar's own X-Forwarded-For entry (B saw the
// request come from 127.0.0.1: A, or the test's peer) is the last one, in
// a single field, so an application reading the rightmost entry cannot be
// fooled; spoofed entries before it are kept, as the README documents.
func xffIsSidecars(keptPrefix string) func(t *testing.T, r *received) {
	return func(t *testing.T, r *received) {
		t.Helper()
		v := r.values("X-Forwarded-For")
		if len(v) != 1 {
			t.Fatalf("X-Forwarded-For fields %q, want exactly one", v)
		}
		if want := keptPrefix + "127.0.0.1"; v[0] != want {
			t.Errorf("X-Forwarded-For %q, want %q", v[0], want)
		}
	}
}

// header builds a request head of n extra fields X-F<i>: v.
func fields(n int, value string) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "X-F%d: %s\r\n", i, value)
	}
	return b.String()
}

const get = "GET / HTTP/1.1\r\nHost: {host}\r\n"

// smuggled is a request hidden in a body.
const smuggled = "GET /admin HTTP/1.1\r\nHost: " + host + "\r\n\r\n"

// TestHTTP1 sends each hostile HTTP/1.1 input to A's upstream listener
// and, over mTLS as A, to B's public listener, and checks the status, that
// the connection is closed after a refusal, and exactly what the recording
// application behind B received.
func TestHTTP1(t *testing.T) {
	m := getMesh(t)
	token := m.token(t, "alice")
	cases := []h1Case{
		// --- framing: request smuggling and malformed heads
		rejected("CL+TE (CL.TE smuggling)", 400, "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: {host}\r\n\r\n"),
		rejected("TE+CL (TE.CL smuggling)", 400, "POST / HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n"),
		rejected("TE list chunked, identity", 501, "POST / HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"),
		rejected("TE identity, chunked", 501, "POST / HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n"),
		rejected("TE xchunked", 501, "POST / HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"),
		rejected("TE in two fields", 501, "POST / HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n"),
		rejected("TE with space before colon", 400, "POST / HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding : chunked\r\nContent-Length: 3\r\n\r\nabc"),
		rejected("TE value with vertical tab", 400, "POST / HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: \x0bchunked\r\n\r\n0\r\n\r\n"),
		rejected("TE on HTTP/1.0", 400, "POST / HTTP/1.0\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
		rejected("duplicate Content-Length, same value", 400, "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc"),
		rejected("duplicate Content-Length, different values", 400, "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: 3\r\nContent-Length: 30\r\n\r\nabc"),
		rejected("Content-Length list", 400, "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: 3, 3\r\n\r\nabc"),
		rejected("Content-Length with sign", 400, "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: +3\r\n\r\nabc"),
		rejected("Content-Length negative", 400, "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: -1\r\n\r\n"),
		rejected("Content-Length hex", 400, "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0x3\r\n\r\nabc"),
		rejected("Content-Length overflows int64", 400, "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: 99999999999999999999\r\n\r\nabc"),
		rejected("Trailer names Content-Length", 400, "POST / HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\nTrailer: Content-Length\r\n\r\n0\r\nContent-Length: 5\r\n\r\n"),
		rejected("bare LF line ends", 400, "GET / HTTP/1.1\nHost: {host}\n\n"),
		rejected("bare LF after one field", 400, "GET / HTTP/1.1\r\nHost: {host}\nX-A: 1\r\n\r\n"),
		rejected("bare CR inside a value", 400, "GET / HTTP/1.1\r\nHost: {host}\r\nX-A: 1\rX-B: 2\r\n\r\n"),
		rejected("bare CR as line end", 400, "GET / HTTP/1.1\rHost: {host}\r\n\r\n"),
		rejected("obs-fold continuation", 400, "GET / HTTP/1.1\r\nHost: {host}\r\nX-A: 1\r\n 2\r\n\r\n"),
		rejected("obs-fold with tab", 400, "GET / HTTP/1.1\r\nHost: {host}\r\nX-A: 1\r\n\t2\r\n\r\n"),
		rejected("whitespace before the first field", 400, "GET / HTTP/1.1\r\n Host: {host}\r\n\r\n"),
		rejected("NUL in a field name", 400, "GET / HTTP/1.1\r\nHost: {host}\r\nX\x00A: 1\r\n\r\n"),
		rejected("NUL in a field value", 400, "GET / HTTP/1.1\r\nHost: {host}\r\nX-A: 1\x002\r\n\r\n"),
		rejected("space in a field name", 400, "GET / HTTP/1.1\r\nHost: {host}\r\nX A: 1\r\n\r\n"),
		rejected("space before the colon", 400, "GET / HTTP/1.1\r\nHost : {host}\r\n\r\n"),
		rejected("empty field name", 400, "GET / HTTP/1.1\r\nHost: {host}\r\n: 1\r\n\r\n"),
		rejected("DEL in a field value", 400, "GET / HTTP/1.1\r\nHost: {host}\r\nX-A: 1\x7f\r\n\r\n"),
		rejected("control byte in the target", 400, "GET /a\x01b HTTP/1.1\r\nHost: {host}\r\n\r\n"),
		rejected("space in the target", 400, "GET /a b HTTP/1.1\r\nHost: {host}\r\n\r\n"),
		rejected("two spaces after the method", 400, "GET  / HTTP/1.1\r\nHost: {host}\r\n\r\n"),
		rejected("method not a token", 400, "G(T / HTTP/1.1\r\nHost: {host}\r\n\r\n"),
		rejected("HTTP/0.9 request line", 400, "GET /\r\n"),
		rejected("HTTP/2.0 version on HTTP/1", 505, "GET / HTTP/2.0\r\nHost: {host}\r\n\r\n"),
		rejected("HTTP/3.0 version", 505, "GET / HTTP/3.0\r\nHost: {host}\r\n\r\n"),
		rejected("garbage version", 400, "GET / HTTX/1.1\r\nHost: {host}\r\n\r\n"),
		rejected("HTTP/1.1 without Host", 400, "GET / HTTP/1.1\r\nX-A: 1\r\n\r\n"),
		rejected("two Host fields", 400, "GET / HTTP/1.1\r\nHost: {host}\r\nHost: evil\r\n\r\n"),
		rejected("Host with a slash", 400, "GET / HTTP/1.1\r\nHost: b/admin\r\n\r\n"),
		rejected("absolute-form whose host differs from Host", 400, "GET http://evil/ HTTP/1.1\r\nHost: {host}\r\n\r\n"),
		rejected("absolute-form with userinfo", 400, "GET http://u@b/ HTTP/1.1\r\nHost: {host}\r\n\r\n"),
		rejected("absolute-form, scheme not http", 400, "GET ftp://b/ HTTP/1.1\r\nHost: {host}\r\n\r\n"),
		rejected("Expect other than 100-continue", 417, "POST / HTTP/1.1\r\nHost: {host}\r\nExpect: 200-ok\r\nContent-Length: 0\r\n\r\n"),
		{
			name: "smuggled request after a clean one is not read as part of it",
			send: "GET / HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\n\r\nGET /admin HTTP/1.1\r\nHost: {host}\r\n\r\n",
			// Two requests, answered in turn: the second is policed on its
			// own (403), never forwarded.
			statuses: []int{200, 403}, keep: both,
			upstream: one(targetIs("/")),
		},
		// --- bad chunked bodies: the head is read and forwarded before the
		// body, so the upstream may get the head; it never gets a complete
		// request, and the client gets 400 and a close.
		{name: "chunk size not hex", send: "POST / HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", status: 400, upstream: noComplete},
		{name: "chunk size over 16 hex digits", send: "POST / HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\nabc\r\n0\r\n\r\n", status: 400, upstream: noComplete},
		{name: "chunk data longer than its size", send: "POST / HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcdef\r\n0\r\n\r\n", status: 400, upstream: noComplete},
		{name: "chunk size line ends in bare LF", send: "POST / HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n", status: 400, upstream: noComplete},
		{name: "chunk size with bare CR", send: "POST / HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n3\r;x\r\nabc\r\n0\r\n\r\n", status: 400, upstream: noComplete},
		{name: "chunk size negative", send: "POST / HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n-3\r\nabc\r\n0\r\n\r\n", status: 400, upstream: noComplete},
		{
			name: "chunked body forwarded as chunked",
			send: "POST / HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n0\r\n\r\n", status: 200, keep: both,
			upstream: one(func(t *testing.T, r *received) {
				if string(r.body) != "abc" {
					t.Errorf("body %q, want abc", r.body)
				}
			}),
		},

		// --- hop-by-hop: what Connection names is removed, never what the
		// sidecar sets
		{
			name: "field named in Connection removed", status: 200, keep: both,
			send:     "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: X-Secret, keep-alive\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: gzip\r\n\r\n",
			upstream: one(absent("X-Secret", "Keep-Alive", "Proxy-Connection", "TE", "Connection")),
		},
		{
			// As httputil.ReverseProxy and Envoy: only "trailers" of TE
			// goes on.
			name: "TE reduced to trailers", status: 200, keep: both,
			send: "GET / HTTP/1.1\r\nHost: {host}\r\nTE: gzip, trailers\r\n\r\n",
			upstream: one(func(t *testing.T, r *received) {
				if v := r.values("TE"); !slices.Equal(v, []string{"trailers"}) {
					t.Errorf("TE %q, want [trailers]", v)
				}
			}),
		},
		{
			name: "Connection names X-Forwarded-For: the sidecar's is still set", status: 200, keep: both,
			send:     "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: X-Forwarded-For\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n",
			upstream: one(xffIsSidecars("")),
		},
		{
			name: "Connection names X-Forwarded-Proto and X-Request-Id: the sidecar sets them", status: 200, keep: both,
			send: "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: X-Forwarded-Proto, X-Request-Id\r\nX-Forwarded-Proto: http\r\nX-Request-Id: spoofed\r\n\r\n",
			upstream: one(func(t *testing.T, r *received) {
				if v := r.values("X-Forwarded-Proto"); !slices.Equal(v, []string{"https"}) {
					t.Errorf("X-Forwarded-Proto %q, want [https]", v)
				}
				if v := r.values("X-Request-Id"); len(v) != 1 || v[0] == "spoofed" {
					t.Errorf("X-Request-Id %q, want one set by the sidecar", v)
				}
			}),
		},
		{
			name: "Connection names Host: Host is kept", status: 200, keep: both,
			send: "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: Host\r\n\r\n",
			upstream: one(func(t *testing.T, r *received) {
				if v := r.values("Host"); !slices.Equal(v, []string{host}) {
					t.Errorf("Host %q, want [%s]", v, host)
				}
			}),
		},
		{
			name: "Connection names Content-Length: the body stays framed", status: 200, keep: both,
			send: fmt.Sprintf("POST / HTTP/1.1\r\nHost: {host}\r\nConnection: Content-Length\r\nContent-Length: %d\r\n\r\n%s", len(smuggled), smuggled),
			upstream: one(func(t *testing.T, r *received) {
				if string(r.body) != smuggled {
					t.Errorf("body %q: not the %d bytes sent", r.body, len(smuggled))
				}
			}),
		},
		{
			name: "Connection names Transfer-Encoding: the body stays framed", status: 200, keep: both,
			send: "POST / HTTP/1.1\r\nHost: {host}\r\nConnection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
			upstream: one(func(t *testing.T, r *received) {
				if string(r.body) != "abc" {
					t.Errorf("body %q, want abc", r.body)
				}
			}),
		},
		{
			name: "Connection: close is honoured and not forwarded", status: 200,
			send:     "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n",
			upstream: one(nil),
		},

		// --- headers the sidecar sets cannot be spoofed
		{
			name: "spoofed X-Forwarded-For: the sidecar's entry is last", status: 200, keep: both,
			send:     "GET / HTTP/1.1\r\nHost: {host}\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n",
			upstream: one(xffIsSidecars("6.6.6.6, ")),
		},
		{
			name: "spoofed X-Forwarded-For in two fields: the sidecar's entry is last", status: 200, keep: both,
			send:     "GET / HTTP/1.1\r\nHost: {host}\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-For: 7.7.7.7\r\n\r\n",
			upstream: one(xffIsSidecars("6.6.6.6, 7.7.7.7, ")), // one list (RFC 9110 section 5.3)
		},
		{
			name: "spoofed JWT claim header X-User stripped", status: 200, keep: both,
			send:     "GET / HTTP/1.1\r\nHost: {host}\r\nX-User: admin\r\nx-user: root\r\n\r\n",
			upstream: one(absent("X-User")),
		},
		{
			name: "spoofed X-User replaced by the verified token's claim", status: 200, keep: both,
			send: "GET /me HTTP/1.1\r\nHost: {host}\r\nX-User: admin\r\nAuthorization: Bearer " + token + "\r\n\r\n",
			upstream: one(func(t *testing.T, r *received) {
				if v := r.values("X-User"); !slices.Equal(v, []string{"alice"}) {
					t.Errorf("X-User %q, want [alice] from the token", v)
				}
			}),
		},
		{
			name: "spoofed X-User with a forged token: refused", status: 401, keep: both,
			send: "GET /me HTTP/1.1\r\nHost: {host}\r\nX-User: admin\r\nAuthorization: Bearer " + forged(token) + "\r\n\r\n",
		},
		{
			// As Envoy's forward_client_cert_details SANITIZE_SET: the
			// client's value is replaced by the mTLS peer's identity.
			name: "spoofed X-Forwarded-Client-Cert replaced by the peer's", status: 200, keep: both,
			send:     "GET / HTTP/1.1\r\nHost: {host}\r\nX-Forwarded-Client-Cert: By=spiffe://hostile.test/b;URI=spiffe://hostile.test/admin\r\n\r\n",
			upstream: one(peerCert),
		},

		// --- limits
		rejected("more than max_headers (100) fields", 431, get+fields(100, "1")+"\r\n"),
		rejected("head over max_header_bytes (64 KiB)", 431, get+"X-Big: "+strings.Repeat("a", 70<<10)+"\r\n\r\n"),
		rejected("many small fields over 64 KiB", 431, get+fields(90, strings.Repeat("a", 800))+"\r\n"),

		// --- tunnels
		rejected("CONNECT", 405, "CONNECT b:443 HTTP/1.1\r\nHost: b:443\r\n\r\n"),
		rejected("CONNECT to another host", 405, "CONNECT evil:22 HTTP/1.1\r\nHost: evil:22\r\n\r\n"),
		{
			// Main's documented behaviour (as Envoy): the upgrade is not
			// relayed; the request goes on as plain HTTP/1.1.
			name: "Upgrade: h2c is not relayed", status: 200, keep: both,
			send:     "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
			upstream: one(absent("Upgrade", "HTTP2-Settings", "Connection")),
		},
	}
	cases = append(cases, bypassCases()...)
	for _, c := range cases {
		for _, e := range []entry{viaA, viaB, viaBgw} {
			if c.via != 0 && c.via&e.asB() == 0 {
				continue
			}
			t.Run(e.String()+"/"+c.name, func(t *testing.T) {
				skipKnownBug(t, c.knownBug)
				m.runH1(t, e, c)
			})
		}
	}
}

// forged is token with its signature's last bytes changed.
func forged(token string) string {
	return token[:len(token)-4] + "AAAA"
}

// noComplete: the upstream may have got the head (forwarded before the
// body was read), but never a complete request.
func noComplete(t *testing.T, got []*received) {
	t.Helper()
	for _, r := range got {
		if r.complete {
			t.Errorf("upstream received a complete request: %v", r)
		}
	}
}

// bypass is a spelling of a path meant to reach /admin, which B denies to
// everyone (403): the sidecar must deny it, refuse it as ambiguous (400),
// or forward a path that is not /admin to every reader (200, forwarded as
// want).
type bypass struct {
	name, target string
	status       int
	want         string // the target forwarded, for 200
	// h2Reset: over HTTP/2 the stream is reset (PROTOCOL_ERROR) instead.
	h2Reset bool
	// h2ViaAStatus, when set, is the status over h2c through A.
	h2ViaAStatus int
	knownBug     string
}

var bypasses = []bypass{
	{name: "plain", target: "/admin", status: 403},
	{name: "below", target: "/admin/users", status: 403},
	{name: "query", target: "/admin?x=1", status: 403},
	{name: "encoded letter", target: "/%61dmin", status: 403},
	{name: "encoded letters upper hex", target: "/%61%64%6D%69%6E", status: 403},
	{name: "dot-dot", target: "/public/../admin", status: 403},
	{name: "encoded dot-dot", target: "/public/%2e%2e/admin", status: 403},
	{name: "encoded dot-dot mixed case", target: "/public/.%2E/admin", status: 403},
	{name: "dot segment", target: "/./admin", status: 403},
	{name: "dot-dot above the root", target: "/../../admin", status: 403},
	{name: "double slash", target: "//admin", status: 403},
	{name: "slash runs", target: "///admin//users", status: 403},
	{name: "matrix parameter on the segment", target: "/admin;jsessionid=1", status: 403},
	{name: "encoded space after", target: "/admin%20", status: 403},
	{name: "encoded slash", target: "/public%2f..%2fadmin", status: 400},
	{name: "encoded slash upper", target: "/%2Fadmin", status: 400},
	{name: "encoded backslash", target: "/public%5c..%5cadmin", status: 400},
	{name: "backslash", target: "/public\\..\\admin", status: 400},
	{name: "leading backslash", target: "/\\admin", status: 400},
	{name: "encoded NUL", target: "/admin%00.html", status: 400},
	{name: "encoded CR LF", target: "/public%0d%0aX:%20/admin", status: 400},
	// Over h2c, A's HTTP/2 path (net/http) re-escapes '#' as %23: B then
	// normalizes /public%23/../admin to /admin and denies it.
	{name: "fragment", target: "/public#/../admin", status: 400, h2ViaAStatus: 403},
	{name: "fragment on admin", target: "/admin#x", status: 400, h2ViaAStatus: 403},
	{name: "bad escape", target: "/%zzadmin", status: 400, h2Reset: true},
	// Paths are case-sensitive (documented): /ADMIN is another path,
	// forwarded as sent.
	{name: "upper case is another path", target: "/ADMIN", status: 200, want: "/ADMIN"},
	// Double encoding is never decoded twice: forwarded as sent.
	{name: "double encoding stays encoded", target: "/%2561dmin", status: 200, want: "/%2561dmin"},
	{
		name: "matrix dot-dot", target: "/..;/admin", status: 400,
	},
	{
		name: "matrix dot-dot below a path", target: "/public/..;/admin", status: 400,
	},
}

// bypassCases are the bypasses as HTTP/1.1 requests, with the HTTP/1-only
// spellings (absolute-form, a target that is not a path).
func bypassCases() []h1Case {
	bs := append(bypasses[:len(bypasses):len(bypasses)],
		bypass{name: "absolute-form", target: "http://b/admin", status: 403},
		bypass{name: "absolute-form with double slash", target: "http://b//admin", status: 403},
		bypass{name: "not absolute", target: "admin", status: 400},
	)
	var out []h1Case
	for _, b := range bs {
		c := h1Case{name: "bypass " + b.name + ": " + b.target, send: "GET " + b.target + " HTTP/1.1\r\nHost: {host}\r\n\r\n",
			status: b.status, knownBug: b.knownBug}
		switch b.status {
		case 200:
			c.keep, c.upstream = both, one(targetIs(b.want))
		case 403:
			c.keep = both
		default:
			c.keep = viaA // B closes after a 400; A keeps its client
		}
		out = append(out, c)
	}
	return out
}

// runH1 runs one case through entry e.
func (m *mesh) runH1(t *testing.T, e entry, c h1Case) {
	rec := m.recFor(e)
	rec.reset()
	send := strings.ReplaceAll(c.send, "{host}", host)
	res := exchange(m.dial(t, e), send, c.keep&e.asB() != 0)
	m.barrier(t, e)
	got := rec.caseRequests()
	defer func() {
		if t.Failed() {
			t.Logf("sent %q\nclient received %q\nupstream received %v\nupstream connections' bytes (barrier included): %q",
				send, res.raw, got, rec.raw())
		}
	}()
	if res.err != nil {
		t.Errorf("client: %v", res.err)
	}
	want := c.statuses
	if want == nil && c.status != 0 {
		want = []int{c.status}
	}
	if !slices.Equal(res.statuses, want) {
		t.Errorf("statuses %v, want %v", res.statuses, want)
	}
	if !res.closed {
		t.Errorf("connection not closed")
	}
	checkUpstream(t, c.upstream, got)
}

const barrierPath = "/__barrier"

// caseRequests are the requests recorded since the last reset, barriers
// left out.
func (r *recorder) caseRequests() []*received {
	var got []*received
	for _, q := range r.requests() {
		if q.target() != barrierPath {
			got = append(got, q)
		}
	}
	return got
}

// checkUpstream runs a case's check on what the upstream got; a nil check
// wants nothing at all.
func checkUpstream(t *testing.T, check func(t *testing.T, got []*received), got []*received) {
	t.Helper()
	if check == nil {
		if len(got) != 0 {
			t.Errorf("upstream received %d requests, want none: %v", len(got), got)
		}
		return
	}
	check(t, got)
}

// barrier sends a clean request through e and waits for its answer: what
// the case made any sidecar forward has reached the recorder by then (the
// sidecars forward in order on each connection, and the case's exchange
// ended first). It also shows the sidecars still serve after the case.
func (m *mesh) barrier(t *testing.T, e entry) {
	t.Helper()
	res := exchange(m.dial(t, e), "GET "+barrierPath+" HTTP/1.1\r\nHost: "+host+"\r\nConnection: close\r\n\r\n", false)
	if !slices.Equal(res.statuses, []int{200}) {
		t.Fatalf("barrier request after the case: %v %v %q\n%s", res.statuses, res.err, res.raw, m.logs())
	}
}

// recFor is the recorder behind e's server-side sidecar.
func (m *mesh) recFor(e entry) *recorder {
	if e == viaBgw {
		return m.rec3
	}
	return m.rec
}

func (m *mesh) dial(t *testing.T, e entry) net.Conn {
	t.Helper()
	switch e {
	case viaB:
		return m.dialPeer(t, m.pubB, idB, "http/1.1")
	case viaBgw:
		return m.dialPeer(t, m.pubB3, idB3, "http/1.1")
	}
	c, err := net.DialTimeout("tcp", m.upB, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

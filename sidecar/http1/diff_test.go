package http1

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The differential test sends each raw message to a real net/http server
// whose handler reads the whole body, and checks that Outrider's Read and
// CopyBody see the same sequence of outcomes on the same bytes: accepted
// (200) or rejected with the status net/http answers.
//
// Outcomes are compared as sequences because several cases pipeline
// requests, which is where smuggling shows: a parser that frames a body
// differently answers a different number of requests.

// An outcome is "200:<body length>" for an accepted request, the status
// for a rejected one, or truncated.
//
// truncated: Outrider's Read returned io.ErrUnexpectedEOF. net/http
// answers a head cut short with 400, or closes silently when fewer than 4
// bytes follow a keep-alive response; both match.
const truncated = "cut"

type diffCase struct {
	name string
	raw  string
	// diverge, if set, is Outrider's expected outcome where it is
	// deliberately stricter than net/http (see compat.go); net/http's
	// outcome is still checked to be the one documented there.
	diverge, netHTTP []string
}

func diffCases() []diffCase {
	const h = "Host: example.com\r\n"
	many := "GET /index.html?q=1&r=2 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/8.5.0\r\n" +
		"Accept: */*\r\nAccept-Encoding: gzip\r\nX-Request-Id: 0123456789abcdef\r\nCookie: a=b; c=d\r\n\r\n"
	var excess strings.Builder
	excess.WriteString("POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n")
	for range 200 {
		excess.WriteString("1;" + strings.Repeat("x", 100) + "\r\na\r\n")
	}
	excess.WriteString("0\r\n\r\n")
	var under strings.Builder
	under.WriteString("POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n")
	for range 200 {
		under.WriteString("40;" + strings.Repeat("x", 100) + "\r\n" + strings.Repeat("a", 64) + "\r\n")
	}
	under.WriteString("0\r\n\r\n")
	return []diffCase{
		// Valid requests.
		{name: "simple GET", raw: "GET / HTTP/1.1\r\n" + h + "\r\n"},
		{name: "typical GET", raw: many},
		{name: "POST length", raw: "POST /p HTTP/1.1\r\n" + h + "Content-Length: 5\r\n\r\nhello"},
		{name: "POST length zero", raw: "POST /p HTTP/1.1\r\n" + h + "Content-Length: 0\r\n\r\n"},
		{name: "POST chunked", raw: "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"},
		{name: "chunked extensions", raw: "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n5;a=b;c=\"d\"\r\nhello\r\n0;z\r\n\r\n"},
		{name: "chunked size padding", raw: "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n0005 \t\r\nhello\r\n000\r\n\r\n"},
		{name: "chunked uppercase hex", raw: "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n"},
		{name: "chunked trailers", raw: "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n3\r\nabc\r\n0\r\nX-Sum: 42\r\nX-Other: y\r\n\r\n"},
		{name: "chunked trailer obs-fold", raw: "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-Sum: 4\r\n 2\r\n\r\n"},
		{name: "chunked trailer bare LF inside", raw: "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nA: 1\nB: 2\r\n\r\n"},
		{name: "chunked trailer LF end then pipelined", raw: "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\nGET / HTTP/1.1\r\n" + h + "\r\n"},
		{name: "chunked trailer LF end", raw: "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nA: 1\n\n"},
		{name: "chunked overhead under limit", raw: under.String()},
		{name: "TE case-insensitive", raw: "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: Chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"},
		{name: "HTTP/1.0 no Host", raw: "GET / HTTP/1.0\r\n\r\n"},
		{name: "HTTP/1.0 keep-alive pipelined", raw: "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /2 HTTP/1.0\r\n\r\nGET /3 HTTP/1.0\r\n\r\n"},
		{name: "HTTP/1.2 served as 1.1", raw: "GET / HTTP/1.2\r\n" + h + "\r\n"},
		{name: "OPTIONS asterisk", raw: "OPTIONS * HTTP/1.1\r\n" + h + "\r\n"},
		{name: "CONNECT authority", raw: "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"},
		{name: "CONNECT without Host", raw: "CONNECT example.com:443 HTTP/1.1\r\n\r\n"},
		{name: "CONNECT path", raw: "CONNECT /_goRPC_ HTTP/1.1\r\n" + h + "\r\n"},
		{name: "absolute-form", raw: "GET http://example.com/a?b HTTP/1.1\r\n" + h + "\r\n"},
		{name: "absolute-form other Host", raw: "GET http://other.example:8080/ HTTP/1.1\r\n" + h + "\r\n",
			diverge: []string{"400"}, netHTTP: []string{"200:0"}},
		{name: "pipelined", raw: "GET /1 HTTP/1.1\r\n" + h + "\r\nGET /2 HTTP/1.1\r\n" + h + "\r\nGET /3 HTTP/1.1\r\n" + h + "Connection: close\r\n\r\n"},
		{name: "bare LF", raw: "GET / HTTP/1.1\nHost: example.com\nX: y\n\n",
			diverge: []string{"400"}, netHTTP: []string{"200:0"}},
		{name: "obs-fold", raw: "GET / HTTP/1.1\r\n" + h + "X-Fold: a\r\n  b\r\n\tc\r\n\r\n",
			diverge: []string{"400"}, netHTTP: []string{"200:0"}},
		{name: "obs-fold blank continuation", raw: "GET / HTTP/1.1\r\n" + h + "X-Fold: a\r\n \r\n\r\n",
			diverge: []string{"400"}, netHTTP: []string{"200:0"}},
		{name: "expect 100-continue", raw: "POST / HTTP/1.1\r\n" + h + "Expect: 100-Continue\r\nContent-Length: 3\r\n\r\nabc"},
		{name: "obs-text value", raw: "GET / HTTP/1.1\r\n" + h + "X: caf\xc3\xa9 \xff\r\n\r\n"},
		{name: "identical duplicate CL", raw: "POST / HTTP/1.1\r\n" + h + "Content-Length: 3\r\nContent-Length:  3 \r\n\r\nabc",
			diverge: []string{"400"}, netHTTP: []string{"200:3"}},
		{name: "CL leading zeros", raw: "POST / HTTP/1.1\r\n" + h + "Content-Length: 003\r\n\r\nabc"},
		{name: "lowercase method", raw: "get / HTTP/1.1\r\n" + h + "\r\n"},
		{name: "extension method", raw: "PURGE /x HTTP/1.1\r\n" + h + "\r\n"},
		{name: "escaped path", raw: "GET /a%20b/%E2%82%AC HTTP/1.1\r\n" + h + "\r\n"},
		{name: "bad escape in query", raw: "GET /a?x=%zz HTTP/1.1\r\n" + h + "\r\n"},
		{name: "empty value", raw: "GET / HTTP/1.1\r\n" + h + "X-Empty:\r\n\r\n"},
		{name: "Host with port", raw: "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n"},
		{name: "upgrade", raw: "GET /ws HTTP/1.1\r\n" + h + "Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n"},
		{name: "stray CRLF after POST", raw: "POST / HTTP/1.1\r\n" + h + "Content-Length: 1\r\n\r\na\r\n\r\nGET / HTTP/1.1\r\n" + h + "\r\n"},

		// Smuggling classics.
		{name: "CL.TE", raw: "POST / HTTP/1.1\r\n" + h + "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n" + h + "\r\n",
			diverge: []string{"400"}, netHTTP: []string{"200:0", "200:0"}},
		{name: "TE.CL", raw: "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\nGPOST / HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 15\r\n\r\nx=1\r\n0\r\n\r\n",
			diverge: []string{"400"}, netHTTP: []string{"200:92"}},
		{name: "TE.CL bad CL", raw: "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\nContent-Length: x\r\n\r\n0\r\n\r\n"},
		{name: "TE chunked identity", raw: "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"},
		{name: "TE identity chunked", raw: "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n"},
		{name: "TE gzip", raw: "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: gzip\r\n\r\n"},
		{name: "TE twice", raw: "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{name: "TE empty", raw: "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding:\r\n\r\n"},
		{name: "TE space before colon", raw: "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"},
		{name: "TE vertical tab", raw: "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n"},
		{name: "TE obs-fold", raw: "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding:\r\n chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
			diverge: []string{"400"}, netHTTP: []string{"200:3"}},
		{name: "TE chunked then blank fold", raw: "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n \r\n\r\n0\r\n\r\n",
			diverge: []string{"400"}, netHTTP: []string{"501"}},
		{name: "TE HTTP/1.0 with CL", raw: "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
			diverge: []string{"400"}, netHTTP: []string{"200:5"}},
		{name: "TE HTTP/1.0 without CL", raw: "POST / HTTP/1.0\r\nTransfer-Encoding: gzip\r\n\r\n",
			diverge: []string{"400"}, netHTTP: []string{"200:0"}},
		{name: "Trailer declares CL", raw: "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\nTrailer: X, content-length\r\n\r\n0\r\n\r\n"},
		{name: "Trailer declares CL unchunked", raw: "POST / HTTP/1.1\r\n" + h + "Trailer: Content-Length\r\nContent-Length: 0\r\n\r\n"},
		{name: "duplicate CL differ", raw: "POST / HTTP/1.1\r\n" + h + "Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"},
		{name: "CL list", raw: "POST / HTTP/1.1\r\n" + h + "Content-Length: 3, 3\r\n\r\nabc"},
		{name: "negative CL", raw: "POST / HTTP/1.1\r\n" + h + "Content-Length: -1\r\n\r\n"},
		{name: "plus CL", raw: "POST / HTTP/1.1\r\n" + h + "Content-Length: +5\r\n\r\nhello"},
		{name: "empty CL", raw: "POST / HTTP/1.1\r\n" + h + "Content-Length:\r\n\r\n"},
		{name: "hex CL", raw: "POST / HTTP/1.1\r\n" + h + "Content-Length: 0x5\r\n\r\nhello"},
		{name: "huge CL", raw: "POST / HTTP/1.1\r\n" + h + "Content-Length: 9223372036854775808\r\n\r\n"},
		{name: "CL space inside", raw: "POST / HTTP/1.1\r\n" + h + "Content-Length: 1 2\r\n\r\n"},
		{name: "CL body cut short", raw: "POST / HTTP/1.1\r\n" + h + "Content-Length: 10\r\n\r\nabc"},
		{name: "CL wins over pipelined", raw: "POST / HTTP/1.1\r\n" + h + "Content-Length: 0\r\n\r\nGET / HTTP/1.1\r\n" + h + "\r\n"},

		// Host.
		{name: "missing Host", raw: "GET / HTTP/1.1\r\n\r\n"},
		{name: "two Hosts", raw: "GET / HTTP/1.1\r\n" + h + h + "\r\n"},
		{name: "two Hosts differ case", raw: "GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n"},
		{name: "Host with space", raw: "GET / HTTP/1.1\r\nHost: a b\r\n\r\n"},
		{name: "Host with slash", raw: "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"},
		{name: "empty Host", raw: "GET / HTTP/1.1\r\nHost:\r\n\r\n"},
		{name: "Host space before colon", raw: "GET / HTTP/1.1\r\nHost : a\r\n\r\n"},

		// Request line.
		{name: "leading CRLF", raw: "\r\nGET / HTTP/1.1\r\n" + h + "\r\n"},
		{name: "double space", raw: "GET  / HTTP/1.1\r\n" + h + "\r\n"},
		{name: "tab separator", raw: "GET\t/ HTTP/1.1\r\n" + h + "\r\n"},
		{name: "no version", raw: "GET /\r\n" + h + "\r\n"},
		{name: "trailing space", raw: "GET / HTTP/1.1 \r\n" + h + "\r\n"},
		{name: "bad method char", raw: "G@T / HTTP/1.1\r\n" + h + "\r\n"},
		{name: "NUL in method", raw: "G\x00T / HTTP/1.1\r\n" + h + "\r\n"},
		{name: "NUL in target", raw: "GET /a\x00b HTTP/1.1\r\n" + h + "\r\n"},
		{name: "DEL in target", raw: "GET /a\x7fb HTTP/1.1\r\n" + h + "\r\n"},
		{name: "bad escape in path", raw: "GET /a%zz HTTP/1.1\r\n" + h + "\r\n"},
		{name: "short escape", raw: "GET /a%2 HTTP/1.1\r\n" + h + "\r\n"},
		{name: "escape before query", raw: "GET /a%2?x HTTP/1.1\r\n" + h + "\r\n"},
		{name: "relative target", raw: "GET foo HTTP/1.1\r\n" + h + "\r\n"},
		{name: "asterisk prefix", raw: "GET *x HTTP/1.1\r\n" + h + "\r\n"},
		{name: "absolute-form bad port", raw: "GET http://example.com:abc/ HTTP/1.1\r\n" + h + "\r\n"},
		{name: "absolute-form bad IPv6", raw: "GET http://[::1/ HTTP/1.1\r\n" + h + "\r\n"},
		{name: "CONNECT bad authority", raw: "CONNECT exa mple HTTP/1.1\r\n" + h + "\r\n"},
		{name: "HTTP/2.0", raw: "GET / HTTP/2.0\r\n" + h + "\r\n"},
		{name: "HTTP/0.9", raw: "GET / HTTP/0.9\r\n" + h + "\r\n"},
		{name: "HTTP/2.0 bad TE", raw: "GET / HTTP/2.0\r\n" + h + "Transfer-Encoding: gzip\r\n\r\n"},
		{name: "HTTP/3", raw: "GET / HTTP/3\r\n" + h + "\r\n"},
		{name: "lowercase version", raw: "GET / http/1.1\r\n" + h + "\r\n"},
		{name: "version 1.10", raw: "GET / HTTP/1.10\r\n" + h + "\r\n"},
		{name: "CR in request line", raw: "GET / HTTP/1.1\rX\r\n" + h + "\r\n"},
		{name: "h2c preface", raw: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", diverge: []string{"505"}, netHTTP: []string{"200:0"}},

		// Fields.
		{name: "leading whitespace field", raw: "GET / HTTP/1.1\r\n X: y\r\n" + h + "\r\n"},
		{name: "no colon", raw: "GET / HTTP/1.1\r\n" + h + "X\r\n\r\n"},
		{name: "no colon then fold", raw: "GET / HTTP/1.1\r\n" + h + "X\r\n : y\r\n\r\n"},
		{name: "empty name", raw: "GET / HTTP/1.1\r\n" + h + ": y\r\n\r\n"},
		{name: "space before colon", raw: "GET / HTTP/1.1\r\n" + h + "X : y\r\n\r\n"},
		{name: "tab in name", raw: "GET / HTTP/1.1\r\n" + h + "X\t: y\r\n\r\n"},
		{name: "bad char in name", raw: "GET / HTTP/1.1\r\n" + h + "X(y): z\r\n\r\n"},
		{name: "NUL in value", raw: "GET / HTTP/1.1\r\n" + h + "X: a\x00b\r\n\r\n"},
		{name: "CR in value", raw: "GET / HTTP/1.1\r\n" + h + "X: a\rb\r\n\r\n"},
		{name: "DEL in value", raw: "GET / HTTP/1.1\r\n" + h + "X: a\x7fb\r\n\r\n"},
		{name: "CR line end doubled", raw: "GET / HTTP/1.1\r\n" + h + "X: a\r\r\n\r\n"},
		{name: "expect unknown", raw: "GET / HTTP/1.1\r\n" + h + "Expect: foo\r\n\r\n"},
		{name: "expect 100-continue HTTP/1.0", raw: "POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\na"},
		{name: "expect list", raw: "POST / HTTP/1.1\r\n" + h + "Expect: x, 100-continue\r\nContent-Length: 1\r\n\r\na"},
		{name: "head too large", raw: "GET / HTTP/1.1\r\n" + h + "X: " + strings.Repeat("a", 100<<10) + "\r\n\r\n"},
		{name: "head at limit", raw: "GET / HTTP/1.1\r\n" + h + "X: " + strings.Repeat("a", 60<<10) + "\r\n\r\n"},

		// Chunked framing errors.
		{name: "chunk bad hex", raw: "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"},
		{name: "chunk size 17 digits", raw: "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n00000000000000003\r\nabc\r\n0\r\n\r\n"},
		{name: "chunk size overflow", raw: "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\nabc\r\n0\r\n\r\n"},
		{name: "chunk size max", raw: "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nabc\r\n0\r\n\r\n"},
		{name: "chunk negative", raw: "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n-3\r\nabc\r\n0\r\n\r\n"},
		{name: "chunk 0x prefix", raw: "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n0x3\r\nabc\r\n0\r\n\r\n"},
		{name: "chunk empty size", raw: "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n\r\nabc\r\n0\r\n\r\n"},
		{name: "chunk leading space", raw: "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n 3\r\nabc\r\n0\r\n\r\n"},
		{name: "chunk space before ext", raw: "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n3 ;x\r\nabc\r\n0\r\n\r\n"},
		{name: "chunk line bare LF", raw: "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n"},
		{name: "chunk data bare LF", raw: "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\n0\r\n\r\n"},
		{name: "chunk data too long", raw: "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n0\r\n\r\n"},
		{name: "chunk CR in ext", raw: "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n3;a\rb\r\nabc\r\n0\r\n\r\n"},
		{name: "chunk NUL in ext", raw: "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n3;a\x00b\r\nabc\r\n0\r\n\r\n"},
		{name: "chunk line too long", raw: "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n3;" + strings.Repeat("x", 5000) + "\r\nabc\r\n0\r\n\r\n"},
		{name: "chunk overhead", raw: excess.String()},
		{name: "chunked cut short", raw: "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n5\r\nab"},
		{name: "chunked no last chunk", raw: "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"},
		{name: "chunked no trailer end", raw: "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n0\r\n"},
		{name: "trailer bad field", raw: "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n0\r\nX\r\n\r\n"},
		{name: "trailer NUL", raw: "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n0\r\nX: a\x00\r\n\r\n"},
		{name: "trailer leading space", raw: "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n0\r\n X: a\r\n\r\n"},
		{name: "trailer too long", raw: "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n0\r\nX: " + strings.Repeat("a", 5000) + "\r\n\r\n"},
		{name: "trailer space before colon", raw: "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n0\r\nX : a\r\n\r\n", diverge: []string{"400"}, netHTTP: []string{"200:0"}},

		// Cut short and empty.
		{name: "empty connection", raw: ""},
		{name: "head cut short", raw: "GET / HTTP/1.1\r\n" + h},
		{name: "request line cut short", raw: "GET / HTT"},
		{name: "keep-alive then 2 bytes", raw: "GET / HTTP/1.1\r\n" + h + "\r\nGE"},
	}
}

// netHTTPOutcomes runs raw against srv and returns the statuses of the
// final responses it gets before the server closes.
func netHTTPOutcomes(t *testing.T, addr, raw string) []string {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	werr := make(chan error, 1)
	go func() {
		_, err := io.WriteString(conn, raw)
		if err == nil {
			err = conn.(*net.TCPConn).CloseWrite()
		}
		werr <- err
	}()
	br := bufio.NewReader(conn)
	var out []string
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			break
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		switch {
		case resp.StatusCode == 200:
			n := resp.Header.Get("X-Body-Length")
			if n == "" {
				n = "0" // OPTIONS *, answered by net/http itself
			}
			out = append(out, "200:"+n)
		case resp.StatusCode > 200:
			out = append(out, strconv.Itoa(resp.StatusCode))
		}
	}
	<-werr // a write error (server closed early) is expected for rejected heads
	return out
}

// outriderOutcomes reads raw as a proxy would: requests until one is
// rejected, asks to close, or the input ends; each body is copied with
// CopyBody.
func outriderOutcomes(raw string) []string {
	br := bufio.NewReader(strings.NewReader(raw))
	bw := bufio.NewWriter(io.Discard)
	var h RequestHead
	var out []string
	for {
		err := h.Read(br, 0)
		var he *Error
		switch {
		case err == io.EOF:
			return out
		case errors.As(err, &he):
			return append(out, strconv.Itoa(he.Status))
		case err != nil:
			return append(out, truncated)
		}
		n, err := CopyBody(bw, br, h.Body, h.ContentLength, h.Body)
		if err != nil {
			return append(out, "400")
		}
		out = append(out, "200:"+strconv.FormatInt(n, 10))
		if h.Close || string(h.Method) == "CONNECT" {
			return out
		}
	}
}

// same reports whether Outrider's outcomes match net/http's.
func same(ours, theirs []string) bool {
	if n := len(ours); n > 0 && ours[n-1] == truncated {
		// net/http answers 400 or closes without answering.
		ours = ours[:n-1]
		if len(theirs) == len(ours)+1 && theirs[len(ours)] == "400" {
			theirs = theirs[:len(ours)]
		}
	}
	return slices.Equal(ours, theirs)
}

func TestDifferential(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			w.Header().Set("Connection", "close")
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Length", "0")
		w.Header().Set("X-Body-Length", strconv.FormatInt(n, 10))
		if r.Method == "CONNECT" {
			w.Header().Set("Connection", "close")
		}
	}))
	// net/http reads MaxHeaderBytes + 4 KiB before answering 431; the
	// cases stay clear of that fuzzy band.
	srv.Config.MaxHeaderBytes = DefaultMaxHeaderBytes
	srv.Config.ErrorLog = nil
	srv.Start()
	t.Cleanup(srv.Close) // after the parallel subtests
	addr := srv.Listener.Addr().String()

	cases := diffCases()
	if len(cases) < 60 {
		t.Fatalf("corpus has %d cases, want at least 60", len(cases))
	}
	names := map[string]bool{}
	for _, tc := range cases {
		if names[tc.name] {
			t.Fatalf("duplicate case name %q", tc.name)
		}
		names[tc.name] = true
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			theirs := netHTTPOutcomes(t, addr, tc.raw)
			ours := outriderOutcomes(tc.raw)
			t.Logf("outrider %v, net/http %v", ours, theirs)
			if tc.diverge != nil {
				if !slices.Equal(theirs, tc.netHTTP) {
					t.Errorf("net/http: %v, documented as %v", theirs, tc.netHTTP)
				}
				if !slices.Equal(ours, tc.diverge) {
					t.Errorf("outrider: %v, want the documented %v", ours, tc.diverge)
				}
				return
			}
			if !same(ours, theirs) {
				t.Errorf("outrider %v, net/http %v\n%s", ours, theirs, quoteShort(tc.raw))
			}
		})
	}
}

func quoteShort(s string) string {
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return fmt.Sprintf("%q", s)
}

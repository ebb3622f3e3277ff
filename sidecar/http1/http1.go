// Package http1 is Outrider's HTTP/1.1 wire codec: it parses request and
// response heads into reusable, allocation-free structures, validates
// framing the way Go's net/http server does (RFC 9112), writes heads back
// out with hop-by-hop fields removed (RFC 9110 section 7.6.1), and copies
// bodies between connections with their framing checked and preserved.
//
// It is the parsing half of the L7 hot path; the forwarding loop that uses
// it lives in package sidecar. Nothing here starts goroutines or owns a
// connection: callers pass bufio readers and writers and keep ownership.
//
// A head's byte slices point into a buffer owned by the head value and stay
// valid until the next Read call on the same value, so one
// RequestHead/ResponseHead per connection is reused for every message. A
// head value is not safe for concurrent use.
//
// What is accepted is what Go's net/http server accepts (checked by a
// differential test against a real net/http server); the few places where
// this package is deliberately stricter are listed in compat.go.
package http1

import "errors"

// DefaultMaxHeaderBytes bounds a request or response head (start line,
// fields and the empty line that ends them) when the caller gives no
// limit.
const DefaultMaxHeaderBytes = 64 << 10

// DefaultMaxFields bounds the number of header fields of a request or
// response when the caller gives no limit: Envoy's default
// max_headers_count.
const DefaultMaxFields = 100

// Error is a malformed or unacceptable message. Status is the response a
// proxy answers it with. For requests: 400, 417 (an Expect other than
// 100-continue, as net/http answers), 431 (head too large or too many
// fields), 501
// (unsupported Transfer-Encoding) or 505 (unsupported version). For
// responses it is always 502.
type Error struct {
	Status int
	Reason string // what was wrong, for logs; not meant for the peer
}

// Error returns the reason, prefixed with the package name.
func (e *Error) Error() string { return "http1: " + e.Reason }

// ErrBodySource and ErrBodyDest wrap errors from CopyBody so the caller
// can tell which side failed (client versus upstream, in a proxy).
var (
	ErrBodySource = errors.New("http1: reading body")
	ErrBodyDest   = errors.New("http1: writing body")
)

// Field is one header field as received: Name keeps its original case.
type Field struct {
	Name, Value []byte
}

// Header is an ordered list of fields. Lookups are ASCII case-insensitive.
// Fields may be edited directly or through the methods; the slices of a
// parsed or added field are capped, so appending to one never overwrites
// its neighbours.
type Header struct {
	Fields []Field

	arena []byte // storage for Add and Set, reset by the owning head's Read
}

// BodyKind is how a message body is framed.
type BodyKind uint8

const (
	// BodyNone: no body (requests without Content-Length or
	// Transfer-Encoding; responses to HEAD, 1xx, 204, 304).
	BodyNone BodyKind = iota
	// BodyLength: exactly ContentLength bytes.
	BodyLength
	// BodyChunked: chunked transfer coding, possibly with trailers.
	BodyChunked
	// BodyUntilClose: a response delimited by the connection closing.
	BodyUntilClose
)

// RequestHead is a parsed request line and header section. The zero
// value is ready for Read; a connection reuses one for all its requests.
// Header holds every field as received, Host and framing fields included.
type RequestHead struct {
	Method []byte
	Target []byte // request-target as sent (origin, absolute, authority or asterisk form)
	Minor  int    // HTTP/1.Minor: 0 or 1 (HTTP/1.2 to 1.9 are read as 1.1, as net/http serves them)
	// Host is the Host field value, nil without one (allowed for HTTP/1.0
	// and CONNECT). With an absolute-form target the target's authority
	// is the one that counts (RFC 9112 section 3.2.2).
	Host   []byte
	Header Header

	Body BodyKind
	// ContentLength is the body length when Body == BodyLength, 0 when
	// Body == BodyNone and -1 when Body == BodyChunked.
	ContentLength int64

	// Close: the client asked to close after this exchange (Connection:
	// close, or HTTP/1.0 without Connection: keep-alive).
	Close bool
	// Upgrade holds the Upgrade field value when an HTTP/1.1 request's
	// Connection lists "upgrade" (WebSocket and friends); nil otherwise.
	Upgrade []byte
	// Expect100: an HTTP/1.1 request sent Expect: 100-continue (in
	// HTTP/1.0 it is ignored, RFC 9110 section 10.1.1). Another
	// expectation is rejected with 417, as net/http does.
	Expect100 bool

	raw   []byte // the head as read; the slices above point into it
	conns int    // Connection fields in Header, for DropConnectionFields
}

// ResponseHead is a parsed status line and header section. The zero value
// is ready for Read; a connection reuses one for all its responses.
type ResponseHead struct {
	Minor  int    // HTTP/1.Minor: 0 or 1
	Status int    // three-digit status code, 100 to 999
	Reason []byte // reason phrase, possibly empty
	Header Header

	Body BodyKind
	// ContentLength is the Content-Length value, -1 when there is none or
	// chunked framing overrides it. It frames the body when Body ==
	// BodyLength; on a bodiless response (to HEAD, 1xx, 204, 304) it is
	// what the upstream announced, which AppendWire forwards for HEAD and
	// 304.
	ContentLength int64
	// Close: the server will close after this response (Connection: close,
	// HTTP/1.0 without keep-alive, or Body == BodyUntilClose).
	Close bool

	raw    []byte // the head as read; the slices above point into it
	toHead bool   // the response answers a HEAD request
}

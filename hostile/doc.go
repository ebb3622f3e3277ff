// Package hostile is the hostile-input suite: requests built to confuse a
// proxy, sent to a real Outrider pair, with an exact record of what the
// application behind it received.
//
// TestMain builds the outrider binary; the first test starts three of them
// (with internal/testutil/binmesh, as bench/scale does) in static mode
// from files whose identities `outrider cert` issued: A, a
// client-side sidecar with an http and an http2 upstream, and B and B2,
// server-side sidecars (protocols http and http2) that allow A's SPIFFE ID,
// deny the path prefix /admin to everyone, and forward a JWT claim in
// X-User; B3 is B with a gateway whose route takes every request, and
// every HTTP/1.1 case sent straight to B is sent to B3 too, with the same
// expectations, so the gateway's handlers and proxy keep the lean path's
// guarantees. Behind B, B2 and B3 is a recording application: a raw TCP server, not
// net/http (which would normalize what it read), that keeps every request
// as its bytes arrived and answers each with a fixed 200.
//
// Each case is a table row: what is sent (raw bytes to A's upstream
// listener as the local application would send them, raw bytes to B over
// mTLS holding A's identity as a hostile peer sidecar would, or raw HTTP/2
// frames to either), the expected outcome (a status and whether the
// connection is closed, or for HTTP/2 the stream's answer and whether the
// connection ends with GOAWAY), and what the application must have
// received: nothing for a refused request; for an accepted one, the head
// with the fields the sidecar must remove gone and the ones it sets set by
// it, not by the client.
//
// Classes covered: HTTP/1.1 framing (Content-Length with
// Transfer-Encoding, obfuscated Transfer-Encoding, duplicate and malformed
// Content-Length, bad chunk framing, bare CR and LF, obs-fold, NUL and
// spaces in names, HTTP/0.9 and other versions), hop-by-hop fields named in
// Connection, spoofed X-Forwarded-For and identity headers, header count
// and size limits, CONNECT and Upgrade: h2c, HTTP/2 abuse (rapid reset,
// CONTINUATION, PING and SETTINGS floods, HPACK bombs, connection-specific
// fields) and L7 authorization bypass spellings of a denied path.
//
// A case main gets wrong carries knownBug, the reason: it is skipped, and
// listed by `go test -v ./hostile/ | grep 'known bug'`, until it is fixed.
//
// The cases run one after another (they share the recorder) and the whole
// package takes a few seconds; nothing here is timed.
package hostile

package http1

// Compatibility with Go's net/http.
//
// RequestHead.Read accepts exactly what the Go 1.26 net/http server
// accepts and rejects the rest with the status net/http answers, applying
// its checks in its order so a request with several faults gets the same
// status. TestDifferential checks this against a real server on a corpus
// that includes the request smuggling classics, and FuzzRequestHead
// against http.ReadRequest plus the server's checks. In that order:
//
//   - Lines end at LF, with an optional CR before it (a bare LF is
//     accepted, a CR elsewhere is not). The head ends at the first empty
//     line; an empty first line is a 400, except that up to four CR/LF
//     bytes after a POST are skipped.
//   - Request line: method SP target SP version, split at the first two
//     spaces. The method is a token; the version is HTTP/x.y with single
//     digits; the target is what url.ParseRequestURI takes (no control
//     bytes, valid %-escapes in the path), for CONNECT an authority.
//   - Fields: net/textproto rules. Whitespace before the first field is a
//     400. obs-fold is accepted and unfolded (pieces trimmed and joined by
//     one SP; a blank continuation line leaves a trailing SP, as in
//     net/http). Names are tokens, or contain a SP, which is a 400 later;
//     values hold no control bytes but HTAB, and no DEL.
//   - More than one Host: 400.
//   - Transfer-Encoding, from HTTP/1.1 on: exactly one field whose value is
//     "chunked" in any case, else 501. It overrides Content-Length, which
//     must still be valid. HTTP/1.0 ignores it.
//   - Content-Length: plain decimal up to 2^63-1; several fields must have
//     the same value (then they count as one); else 400.
//   - A chunked message's Trailer may not name Transfer-Encoding, Trailer
//     or Content-Length: 400.
//   - Versions other than HTTP/1.x: 505.
//   - HTTP/1.1 without Host, except CONNECT: 400. Host holding a byte
//     outside httpguts.ValidHostHeader's set: 400.
//   - A SP in a field name: 400.
//   - Expect other than 100-continue: 417.
//
// CopyBody reads chunked bodies like net/http's chunked reader: size lines
// end in CRLF with no other CR and are shorter than 4 KiB, trailing SP/HTAB
// and extensions are ignored, sizes are 1 to 16 hex digits, data is
// followed by CRLF, framing overhead beyond 16 KiB more than the data
// justifies is refused, and the trailer section must reach a CRLF CRLF
// within 4 KiB (a trailer ending in a bare LF passes only if a CRLF CRLF
// follows within that window, as in net/http). FuzzChunked checks it.
//
// Deliberate differences, each stricter than net/http or forced by the API:
//
//  1. "PRI * HTTP/2.0" (the h2c prior-knowledge preface) is a 505; net/http
//     passes it to the handler. This codec is HTTP/1 only: a caller that
//     serves h2c peeks for the preface before calling Read.
//  2. A trailer field with whitespace in its name ("Name : value") fails
//     CopyBody; net/textproto accepts it in trailers. RFC 9112 section 5.1
//     says to reject it, and forwarding it would be read differently by
//     the next hop.
//  3. A head cut short is io.ErrUnexpectedEOF, not a 400 response; the
//     caller answers or closes.
//  4. The size limit counts the head's bytes; net/http counts
//     MaxHeaderBytes + 4096 bytes read off the connection, read-ahead
//     included. A head over the limit is a 431 here even if a line in it
//     is malformed, where net/http may answer 400.
//  5. A src buffer smaller than 4 KiB shortens the longest chunk-size line
//     and trailer section CopyBody accepts (net/http reads with 4 KiB).
//  6. A request with both Content-Length and Transfer-Encoding: chunked is
//     a 400; net/http drops the Content-Length and reads chunks. Both
//     framings at once is how CL.TE and TE.CL smuggling starts, and RFC
//     9112 section 6.1 lets a server reject it (Envoy does). Responses
//     framed both ways are still read as chunked.
//  7. In a request every line must end in CRLF: a bare LF is a 400 (RFC
//     9112 section 2.2 lets a server accept it; a proxy that does reads
//     the head differently from a next hop that does not). Responses still
//     accept bare LF, as http.ReadResponse does.
//  8. An obs-fold continuation line in a request is a 400 (RFC 9112
//     section 5.2); net/http unfolds it. Responses are still unfolded.
//  9. A request line without a version ("GET /", HTTP/0.9) is a 400 as
//     soon as its line ends; net/http waits for more head.
//  10. Two Content-Length fields are a 400 even when equal (RFC 9110
//     section 8.6 allows merging them; a proxy need not, Envoy does not).
//  11. Transfer-Encoding on an HTTP/1.0 request is a 400 (RFC 9112 section
//     6.1: a 1.0 recipient cannot have framed by it); net/http reads chunks.
//  12. An absolute-form target must be http or https with an authority
//     that has no userinfo and is a valid host, and Host must equal it
//     (case-insensitively); net/http prefers the target's authority.
//  13. More than maxFields header fields (ReadLimits; DefaultMaxFields is
//     100, Envoy's default) is a 431; net/http counts only bytes.
//
// ResponseHead.Read follows http.ReadResponse, which FuzzResponseHead
// checks, and is stricter where a proxy must not pass ambiguity on: a
// version other than HTTP/1.x, a status that is not three digits from 100,
// a control byte in the reason phrase and whitespace in a field name are
// all 502s; http.ReadResponse takes them.
//
// AppendWire never drops Host because Connection names it, and drops a
// field named Close (reserved by RFC 9112 section 9.6), where
// httputil.ReverseProxy keeps Host out of the header map and forwards
// Close.

// Package filter is the gateway's security filter for one route: client
// address allow and deny lists, request size limits, CORS, and response
// header edits (a security preset, set and remove). Package gateway puts
// it outermost in a route's chain, so a request it refuses costs nothing
// further: it takes no rate-limit token, is never looked up in or stored
// by the cache, and is never forwarded.
//
// Checks run in this order, each refusing with a short text/plain body:
//
//  1. allow_cidrs / deny_cidrs on the client's address, found by the
//     listener's clientip.Resolver (WithClientIP): the TCP peer, or the
//     X-Forwarded-For entry its trusted proxies vouch for, so a client
//     cannot dodge a list by sending the header itself. Deny wins; with
//     an allow list, an address outside it is refused; an unknown
//     address (no reqinfo) is refused whenever a list is set. 403.
//  2. max_headers / max_header_bytes over the request's fields, counted
//     as the listener counts them (each field line; Host as one). 431.
//  3. max_body_bytes against Content-Length. 413 before anything is read.
//  4. A CORS preflight (OPTIONS with Origin and
//     Access-Control-Request-Method) is answered here, 204 or 403, and
//     never forwarded.
//
// A body of unknown length (chunked, or HTTP/2 without content-length)
// is counted as next reads it: next never reads more than
// max_body_bytes; the Read that would go past fails with
// *http.MaxBytesError, and the response next then writes (a proxy's 502)
// is replaced by 413 when nothing has been sent to the client yet. The
// upstream, which may have received up to the limit, sees its request
// cut off. The body may be read on a transport's goroutine; it shares
// only an atomic flag with the handler's.
//
// Response edits are made when the final header is sent (WriteHeader,
// the first Write or Flush, or when next returns having written nothing),
// to next's responses and the filter's own refusals alike: on a CORS
// route the Access-Control-* fields of the upstream are removed and, for
// an allowed origin, the filter's set (the origin echoed, or "*" for
// allow_origins ["*"] without credentials), with Vary: Origin merged in;
// then the security preset; then remove; then set. A disallowed origin's
// actual request is forwarded and answered without CORS fields: the
// browser then withholds the answer from the page, as the Fetch standard
// specifies. Informational 1xx responses are not edited.
//
// A Filter is immutable and safe for concurrent use. The per-request
// writer lives on the handler's goroutine and is pooled: the allow path
// allocates nothing when the origin is an exact entry (see
// BenchmarkAllow). The filter reads reqinfo.From(ctx) and nothing else
// from the sidecar; it does not set an access-log response flag, as no
// gateway feature does (reqinfo carries none).
package filter

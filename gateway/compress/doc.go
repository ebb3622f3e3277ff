// Package compress is the gateway's compression filter: it compresses
// responses with zstd, brotli or gzip as the client's Accept-Encoding
// allows (RFC 9110 §12.5.3: q-values, identity, "*", ties to the server's
// preference), and, when configured, decodes compressed request bodies
// under a bound on their decompressed size, so that a small body cannot
// expand into gigabytes behind the gateway (a decompression bomb).
//
// A response is compressed when all of these hold: the filter is
// enabled; the request is not HEAD, an upgrade, CONNECT or gRPC and has
// no Cache-Control: no-transform; the client accepts one of the
// configured codings; the status has a body and is not 206; the response
// has no Content-Encoding, Content-Range or Cache-Control: no-transform;
// its media type is in the allow list (a missing Content-Type is sniffed
// as net/http would); and it is at least min_size bytes long, known from
// Content-Length or by holding up to min_size bytes before deciding (a
// Flush before then decides for compression: it is a stream). A
// compressed response loses Content-Length and Accept-Ranges, gets
// Content-Encoding, Vary: Accept-Encoding (merged with what is there) and
// a weakened ETag (W/ prefixed, as nginx does). Vary is also added to a
// response that was eligible but sent unencoded because of the client's
// Accept-Encoding, or because it answers HEAD, so caches key on it.
//
// Streaming: the writer implements http.Flusher (and Unwrap for
// http.ResponseController); Flush pushes the encoder's pending block out,
// so server-sent events arrive as they are written. Encoders and decoders
// come from sync.Pools and run on the handler's goroutine: none starts a
// goroutine.
//
// Request bodies (decompress_requests): a Content-Encoding of an enabled
// coding is decoded as the handler reads; the request passed on has no
// Content-Encoding or Content-Length (ContentLength -1). Reading past
// max_bytes decoded bytes fails with *http.MaxBytesError, corrupt data
// with an error wrapping the decoder's; either way the handler's response
// is replaced by 413 or 400 if it has not been sent yet. A coding that is
// not enabled is answered 415 with Accept-Encoding listing those that
// are. With decompress_requests off, requests pass through untouched.
//
// A Compressor is immutable and safe for concurrent use; its middleware's
// per-request writer lives on the handler's goroutine.
package compress

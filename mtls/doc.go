// Package mtls is Outrider's thin layer over go-spiffe: where a sidecar's
// identity comes from (Source), the TLS configurations that present it and
// verify peers, and Consul's SPIFFE ID format for services.
//
// Peers are verified in tls.Config.VerifyConnection, which crypto/tls runs
// on every handshake including resumed ones, against the bundle current at
// handshake time: session resumption can never skip chain verification or
// authorization, and a root rotation applies to the next handshake.
//
// # Identity
//
// A peer is authorized by the SPIFFE ID in its verified X.509-SVID, and by
// nothing else: never by SNI (the Dialer sends none; a server presents its
// SVID whatever name it is asked for), never by a DNS SAN or the subject,
// never by an HTTP :authority or Host. A client dialing with a ServerName,
// as Envoy does with Consul's "<svc>.default.<dc>.internal.<td>.consul"
// names, still gets only the server whose SPIFFE ID it expects. L7 checks
// of :authority are the sidecar's business, after this authorization.
//
// The leaf must be an X.509-SVID: exactly one URI SAN, written exactly as
// the SPIFFE ID it parses to (go-spiffe parses what net/url re-serializes,
// which would let "SPIFFE://td/x" pass as spiffe://td/x), naming a
// workload (a path), at most MaxIDLength bytes; not a CA, with
// digitalSignature and without keyCertSign or cRLSign; and when it has an
// extended key usage, that allows serverAuth for a server and clientAuth
// for a client. Every refusal is an error that names the certificate
// (bounded) and the rule, worded so that metrics.ClassifyHandshakeError
// gives it a reason.
//
// # Protocol
//
// TLS 1.2 is the minimum (Envoy's client default is still 1.2); in TLS 1.2
// only ECDHE key exchange with an AEAD (AES-GCM, ChaCha20-Poly1305) is
// accepted. TLS 1.3 is preferred and negotiated between Outrider peers.
package mtls

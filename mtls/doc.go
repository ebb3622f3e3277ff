// Package mtls is Outrider's thin layer over go-spiffe: where a sidecar's
// identity comes from (Source), the TLS configurations that present it and
// verify peers, and Consul's SPIFFE ID format for services.
//
// Peers are verified in tls.Config.VerifyConnection, which crypto/tls runs
// on every handshake including resumed ones, against the bundle current at
// handshake time: session resumption can never skip chain verification or
// authorization, and a root rotation applies to the next handshake.
package mtls

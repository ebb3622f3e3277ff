// Package sidecar is Outrider's data plane in the Consul-native mode: it
// follows the proxy's registration, serves the public mTLS listener and one
// listener per upstream, and exposes the admin endpoints.
//
// Ownership: Sidecar.Run owns every goroutine it starts (watches, accept
// loops, connection handlers) and returns only after all of them have
// stopped. Configuration, endpoint snapshots, pickers and compiled
// intentions are immutable values published through atomic pointers by the
// goroutine that receives them; connection handlers only read them.
//
// One inbound connection:
//
//	accept -> TLS handshake under deadline (peer SVID verified against the
//	current roots, then authorized by intentions) -> dial the application
//	-> splice with half-close
//
// One outbound connection:
//
//	accept -> pick an endpoint from the latest snapshot -> dial with mTLS,
//	server's SPIFFE ID must be the destination's -> splice; a failed dial
//	tries another endpoint
//
// HTTP services are proxied per request: HTTP/1.1 on a lean loop
// (h1proxy.go) that parses heads with package http1 and relays bodies
// with their framing checked; HTTP/2, gRPC and ingress listeners on
// net/http (h2proxy.go, behind the HTTP/2 abuse guard of h2guard.go). A
// listener's gateway runs on both: on the loop for the requests it
// handles (h1gateway.go), the others forwarded by the loop itself.
package sidecar

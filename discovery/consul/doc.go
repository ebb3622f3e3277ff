// Package consul talks to a Consul agent for the data plane: a generic
// blocking-query loop (Watch) with backoff and last-known-good semantics,
// the fetches the sidecar needs (its own proxy registration, the healthy
// Connect endpoints of an upstream), and sidecar resolution.
//
// Nothing here runs on the connection path: watches own their goroutine and
// publish immutable values; the data plane reads the latest value.
package consul

// Package consul talks to a Consul agent for the data plane: a generic
// blocking-query loop (Watch) with backoff and last-known-good semantics,
// the fetches the sidecar needs (its own proxy registration, the healthy
// Connect endpoints of an upstream), sidecar resolution and
// self-registration, and the maintenance mode a draining sidecar enters
// (EnterMaintenance) and its successor lifts (LiftMaintenance).
//
// Nothing here runs on the connection path: watches own their goroutine and
// publish immutable values; the data plane reads the latest value.
package consul

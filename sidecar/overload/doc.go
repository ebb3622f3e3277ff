// Package overload is the sidecar's overload manager: the budgets beyond
// which it refuses work instead of running out of memory or file
// descriptors.
//
// Three bounds apply to the whole process, every listener together:
//
//   - max_connections: client connections open at once. One more is
//     closed as soon as it is accepted (before a TLS handshake or a byte
//     read), counted in outrider_overload_refused_connections_total.
//   - max_requests: HTTP requests in flight. One more is answered 503 with
//     the response flag OM and never forwarded; its HTTP/1.1 connection
//     stays open (a reconnect, with its handshake, would cost more than
//     the request shed), unless memory shedding is on too.
//   - max_memory: the Go runtime's memory in use, read every 100ms. From
//     shed_at (95%) of it new requests are shed with 503 and keep-alive
//     connections closed after their current request; from refuse_at
//     (98%) new connections are refused too. Below the thresholds again,
//     the next reading lifts the state: recovery needs no restart.
//
// The memory budget is also the runtime's soft memory limit (set by the
// command, not this package), so the collector runs harder as memory
// grows and shedding starts only when live data fills the budget.
//
// AdmitConnection and AdmitRequest are an atomic load and add; a nil
// *Manager admits everything. Sample runs on Run's goroutine, which the
// sidecar owns.
package overload

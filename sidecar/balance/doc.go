// Package balance chooses an endpoint for each new connection (L4) or
// request (L7).
//
// A Picker is built once per discovery snapshot by the goroutine that
// receives snapshots, then published (atomic.Pointer) and used concurrently:
// Pick is lock-free, never blocks, and does not allocate.
package balance

// Package discovery defines what the data plane learns about upstream
// services: immutable, identity-bearing snapshots of their endpoints.
//
// A watcher (see the consul subpackage) owns the goroutine that talks to the
// registry and publishes a new *Snapshot whenever the set of healthy
// endpoints changes. A published snapshot is never mutated: readers on the
// connection path load it without locks and may keep it as long as they like.
package discovery

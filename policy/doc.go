// Package policy decides whether a peer may talk to the local service.
//
// The rules are Consul intentions for one destination service, as returned by
// GET /v1/connect/intentions/match?by=destination&name=<destination>. A loader
// goroutine (owned elsewhere) watches that endpoint, calls Compile on every
// change and, only when Compile succeeds, publishes the result with
// Authorizer.Store; a failed reload therefore keeps the previous rules, and
// the caller logs why. Every accepted connection then calls
// Authorizer.AuthorizeL4 with the peer's SPIFFE ID, concurrently and without
// locks.
//
// Every answer is a Decision value that says what decided (Rule) and why
// (Reason), so the same value can go to the access log, the connection's span
// and the admin "explain" view. Intentions.Summary describes the compiled
// rules in evaluation order for /config_dump.
//
// Only L4 authorization is implemented: an intention with L7 permissions
// denies, as Consul's own /v1/agent/connect/authorize does. Intentions from
// peered clusters and sameness groups are not supported yet and are ignored.
package policy

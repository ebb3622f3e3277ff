// Package spiffesource is the mtls.Identity that follows the SPIFFE Workload
// API, as served by a SPIRE agent on a unix socket: the workload's X.509-SVID
// and the X.509 bundles of its own and of every federated trust domain.
//
// # Contract
//
// A sidecar calls New, starts Run on a goroutine of its own, waits for Ready,
// and reads the Source on every handshake. Run owns one Workload API client
// and one streaming watch (FetchX509SVID); it returns ctx.Err() once ctx is
// done, after every goroutine it started has ended, or at once for a
// configuration error (no address, or one that is not a unix:// or tcp://
// URI). Run must not be called twice at the same time.
//
// GetX509SVID, GetX509BundleForTrustDomain and Certificate may be called
// from any goroutine. They read one atomic pointer to an immutable value:
// they never block and allocate nothing except an error. Status takes a
// short lock and may be called at any time, also before Run.
//
// # What each update does
//
// Each response on the stream replaces the whole identity. The SVID used is
// the first one in the response (the Workload API's default identity), or
// the first one carrying the hint given to WithSVIDHint. The trusted bundles
// are exactly those of the response, the SVID's own and the federated ones:
// a federation the agent stops sending is no longer trusted. The
// tls.Certificate is built once per new SVID. A response with no SVID, with
// no SVID for the hint, that does not parse, or whose SVID's trust domain
// has no bundle is rejected: the identity already held stays, the rejection
// is logged at ERROR and shown in Status().LastError. A response identical
// to what is held changes nothing and is not a rotation.
//
// # When the agent is away
//
// If the socket is missing at start, or the agent restarts mid-run, Run
// keeps the SVID and bundles it holds (handshakes keep working until the
// SVID expires; mtls.FailClosed guards expiry), retries with exponential
// backoff and jitter (WithBackoff), logs each failed attempt at WARN with
// its number and the delay before the next, and logs at INFO when the agent
// answers again. Ready stays open until a first identity is loaded.
package spiffesource

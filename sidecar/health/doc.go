// Package health actively checks the endpoints of an upstream cluster, as
// Envoy's active health checking does, so that an endpoint is used only
// when both Consul (its catalog checks, which decide the snapshot) and the
// sidecar's own probes say it is healthy.
//
// # Probes
//
// Probes travel over the mesh like traffic: to the endpoint's sidecar,
// over mTLS, verifying the SPIFFE ID discovery gave for it (Transport's
// Dialers). An HTTP or gRPC probe is forwarded by that sidecar to its
// application, so it checks the path end to end; the remote sidecar
// authorizes it like any request from this service.
//
//   - http: GET Config.Path with Host Config.Host (default: the upstream's
//     name) and User-Agent outrider-health-check; a status among
//     ExpectedStatuses (default 200-299) passes. HTTP/1.1, or HTTP/2 when
//     the upstream's protocol is http2 or grpc (Transport.UseHTTP2); the
//     connection is kept between probes.
//   - grpc: grpc.health.v1.Health/Check with Config.Service, over HTTP/2;
//     SERVING passes. The call is written directly on the HTTP/2
//     transport (no grpc-go ClientConn: its reconnect backoff, up to two
//     minutes, would hide an endpoint's recovery, and it adds goroutines
//     of its own).
//   - tcp: an mTLS handshake with the endpoint's sidecar (offering
//     http/1.1, so that no connection to the application is opened); it
//     checks that the sidecar is up, presents the right identity and
//     admits this service, not that the application listens.
//
// # States
//
// A Checker holds one State per endpoint of the snapshot it was last
// given (Update). A new endpoint is Pending and probed at once, then
// every Interval plus a random jitter of up to 10%, each probe bounded by
// Timeout; at most WithConcurrency probes of a Checker are in flight.
// Transitions follow Envoy's:
//
//   - the first result decides at once: a pass makes the endpoint
//     Healthy, anything else Unhealthy (Envoy marks a new host healthy
//     on its first passing check, "to make startup faster");
//   - an answer that the endpoint is not healthy (an unexpected HTTP
//     status, a gRPC status other than SERVING: an *AnswerError) makes it
//     Unhealthy at once; probes without an answer (connect, TLS, reset,
//     timeout, malformed answer) make it Unhealthy after
//     UnhealthyThreshold in a row;
//   - HealthyThreshold passing probes in a row bring it back.
//
// An endpoint that leaves the snapshot stops being probed (a probe in
// flight is cancelled) and its state is forgotten; if it comes back it is
// Pending again. An endpoint whose SPIFFE ID changes starts over.
//
// # Combination with Consul's health, and when every endpoint fails
//
// Excluded gives the endpoints not to balance over: every one that is not
// Healthy; while none is Healthy, the Unhealthy ones only, keeping the
// Pending ones (no probe has answered for them yet, as for all of them
// when checking starts: Consul says they pass and nothing says otherwise,
// so requests made during the first probes are not refused); when every
// endpoint is Unhealthy, all of them, and the sidecar answers 503 "no
// healthy upstream". The balancer (balance.Balancer.UpdateExcluding)
// keeps excluded endpoints in its picker and passes over them, as over
// ejected ones, so that the others keep their ring-hash keys, their
// outlier detection state and their active request counts. There is no panic threshold that would route to
// failing endpoints: the configuration promises that an endpoint is used
// only when both Consul and the check pass, Consul's own health fails
// closed the same way (an upstream whose instances all fail their Consul
// checks has no endpoints), and an endpoint's explicit "not healthy" is a
// stronger signal than the guess of outlier detection (whose ejections
// Pick does ignore when every endpoint is ejected). Envoy's default panic
// threshold of 50% would, with two instances and one failing, still
// route to the healthy one only, but with three instances and two
// failing route to all three; Contour and Kuma turn it off by default
// for the same reason. A check that fails everywhere (a wrong path) is
// visible at once: each transition is reported through OnChange with its
// reason, and every result through OnResult.
//
// # Lifecycle
//
// New starts nothing; Update starts and stops probe goroutines and never
// blocks on a probe; Excluded, Status and Healthy read the states. Every
// goroutine belongs to the Checker, and Close cancels them and waits for
// them. OnChange and OnResult run on probe goroutines with no lock held.
package health

// Package balance chooses an endpoint for each new connection (L4) or
// request (L7) of one upstream, configured like the LoadBalancer block of a
// Consul service-resolver and behaving as Envoy does for that block.
//
// # Lifecycle
//
// A Balancer holds the live state of one upstream. The goroutine that
// receives discovery snapshots and service-resolver entries calls Update,
// which builds an immutable picker and publishes it with an atomic store,
// and SetOutlier (serialized with Update). Request goroutines call Pick
// concurrently: it is lock-free, never blocks and does not allocate, and
// the caller ends the request on the picked Endpoint with DoneWith and its
// Outcome, which feeds least-request accounting and outlier detection, or
// with Done when the end says nothing about the endpoint. An endpoint's
// state survives updates as long as its address stays in the snapshots.
// New and Picker are the older per-snapshot API of the L4 path, without
// that state.
//
// # Consul mapping
//
// FromConsul converts *api.LoadBalancer into a Config, rejecting what
// Consul rejects when the entry is written (and what Envoy rejects when it
// receives it); errors name the field:
//
//	LoadBalancer.Policy                         Config.Policy ("" is the caller's default)
//	LoadBalancer.LeastRequestConfig.ChoiceCount Config.ChoiceCount (default 2, at least 2)
//	LoadBalancer.RingHashConfig.MinimumRingSize Config.MinRingSize (default 1024, at most 8M)
//	LoadBalancer.RingHashConfig.MaximumRingSize Config.MaxRingSize (default 8M)
//	LoadBalancer.HashPolicies[i]                Config.HashPolicies[i]
//	  .Field, .FieldValue, .SourceIP, .Terminal   same names
//	  .CookieConfig{Session, TTL, Path}           .Cookie
//
// RingHashConfig is only allowed with ring_hash, LeastRequestConfig with
// least_request, and HashPolicies with ring_hash and maglev.
//
// FromConsulPassiveHealthCheck converts service-defaults UpstreamConfig
// PassiveHealthCheck, as the agent merges it into an upstream's
// Config["passive_health_check"], into an OutlierConfig for SetOutlier:
//
//	Interval                OutlierConfig.Interval (default 10s)
//	MaxFailures             OutlierConfig.MaxFailures (0: detection off)
//	EnforcingConsecutive5xx OutlierConfig.EnforcingConsecutive5xx (default 100)
//	MaxEjectionPercent      OutlierConfig.MaxEjectionPercent (default 10)
//	BaseEjectionTime        OutlierConfig.BaseEjectionTime (default 30s)
//
// # Policies
//
// Weights are Consul's Weights.Passing (discovery.Endpoint.Weight).
//
//   - round_robin: smooth weighted round robin (nginx's interleaving) over
//     a precomputed schedule; one atomic add per pick, random start.
//   - random: weighted random over the same schedule.
//   - least_request: with equal weights, Envoy's power of ChoiceCount
//     choices: sample ChoiceCount endpoints at random and take the one
//     with the fewest active requests. With unequal weights Envoy uses
//     earliest-deadline-first scheduling on the effective weight
//     weight/(active+1) (active_request_bias 1); here ChoiceCount endpoints
//     are sampled in proportion to weight and one of them is chosen with
//     probability proportional to 1/(active+1), so that endpoints are
//     picked in proportion to weight/(active+1), exactly for a large
//     ChoiceCount and approximately (with a softer preference for idle
//     endpoints) for the default 2, without a lock.
//   - ring_hash: a Ketama ring of xxh64("address_j") points, a number
//     proportional to each endpoint's weight, looked up as the first point at or after the hash.
//     The points per unit of weight are Envoy's rounded up to a power of
//     two, so that the ring holds MinRingSize to 2*MinRingSize points and
//     removing one of N endpoints moves only its 1/N of the keys (Envoy's
//     exact sizing moves nearly 2/N). The ring never exceeds MaxRingSize nor
//     MaxRingEntries (1M points, 16 MiB). A bucket index on the top bits of
//     the hash replaces the binary search of the lookup.
//   - maglev: Envoy's weighted Maglev table of MaglevTableSize (65537)
//     entries, populated along each endpoint's permutation
//     (offset xxh64(address) mod M, skip xxh64(address, seed 1) mod (M-1) + 1).
//
// ring_hash and maglev pick at random when the request has no hash (no
// hash policy, or none found its value), as Envoy does.
//
// # Retries
//
// Pick takes the addresses already tried for the request and avoids them,
// and ejected endpoints, while another endpoint exists: round robin and
// random give the turn to another slot of their schedule (so that the
// endpoints left keep their weighted shares), least request samples the
// endpoints left, ring hash walks the ring to the next endpoint left, and
// maglev rehashes the way Envoy does for retries (hash ^ (2^64 -
// attempt)), then scans the table. The retry sequence of a hash is the
// same on every sidecar.
//
// # Outlier detection
//
// Passive outlier detection is Envoy's consecutive_5xx detector, with
// split_external_local_origin_errors off as Consul leaves it: every
// outcome other than Success (a 5xx, a gateway error, a connect, TLS or
// reset failure) counts as a failure, and MaxFailures failures in a row
// eject the endpoint, with probability EnforcingConsecutive5xx percent and
// while the endpoints already ejected are fewer than MaxEjectionPercent
// of the set (the rule of the Envoy releases Consul 1.15 runs, 1.22 to
// 1.25: one endpoint can always be ejected; Envoy 1.27 and later refuse an
// ejection that would exceed the percentage, unless always_eject_one_host
// is set). The n-th ejection lasts n × BaseEjectionTime up to
// max(BaseEjectionTime, 300s), n losing one for each Interval the
// endpoint spends back in service.
//
// Ejections are lazy: an ejection stores a deadline in the endpoint's
// state, Pick passes over endpoints whose deadline is in the future,
// reading the clock only for endpoints with a deadline set, and the
// endpoint is back at its deadline, with no timer or sweep goroutine.
// Counting is two atomic additions per request; only an ejection decision
// takes the balancer's mutex. When every endpoint is ejected or tried,
// Pick ignores ejections (like Envoy's panic mode): better a possibly bad
// endpoint than a certain 503.
//
// # Hashing
//
// Hash computes a request's hash from the hash policies as Envoy's router
// does: xxh64 (seed 0) of each value found, combined as rotl(hash, 1) ^ h,
// stopping at a Terminal policy once a hash exists. xxh64 is a fixed
// function (hand-written, checked against the reference vectors), not
// hash/maphash, whose seed differs per process: every sidecar must place
// endpoints and requests identically.
//
// A cookie policy with CookieConfig Session or TTL generates a missing
// cookie, as Envoy does: Hash returns it as a SetCookie for the response
// and hashes its value, so that the client's later requests, carrying the
// cookie, reach the same endpoint. Envoy's value is the hex xxh64 of the
// downstream connection's remote and local addresses (the same for all
// requests racing on one connection); Hash uses the same when the Request
// implements ConnRequest, and a random value otherwise.
package balance

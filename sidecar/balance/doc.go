// Package balance chooses an endpoint for each new connection (L4) or
// request (L7) of one upstream, configured like the LoadBalancer block of a
// Consul service-resolver and behaving as Envoy does for that block.
//
// # Lifecycle
//
// A Balancer holds the live state of one upstream. The goroutine that
// receives discovery snapshots and service-resolver entries calls Update,
// which builds an immutable picker and publishes it with an atomic store.
// Request goroutines call Pick concurrently: it is lock-free, never blocks
// and does not allocate, and the caller calls Done on the picked Endpoint
// when the request ends, which feeds least-request accounting. An
// endpoint's counters survive updates as long as its address stays in the
// snapshots. New and Picker are the older per-snapshot API of the L4 path,
// without that state.
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
// Pick takes the addresses already tried for the request and avoids them
// while another endpoint exists: round robin and random move on along
// their schedule, least request samples untried endpoints, ring hash walks
// the ring to the next untried endpoint, and maglev rehashes the way Envoy
// does for retries (hash ^ (2^64 - attempt)), then scans the table. The
// retry sequence of a hash is the same on every sidecar.
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

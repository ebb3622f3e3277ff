// Package jwtauth authenticates HTTP requests by JSON Web Tokens (RFC
// 7519) for the sidecar's inbound side. Its providers are modelled on
// Consul 1.16's jwt-provider config entry: an issuer, audiences, a JSON
// Web Key Set (inline, from a file, or fetched from a URL and refreshed),
// where in the request the token is found, clock skew, and what is
// forwarded to the application. Parsing and signature verification are
// go-jose's (github.com/go-jose/go-jose/v4); this package chooses keys,
// enforces the provider's rules and keeps the key sets fresh.
//
// # Contract
//
// New validates the providers and loads inline and file key sets. Run
// (one goroutine, owned by the sidecar) fetches remote key sets, refreshes
// them every CacheDuration, retries failures with backoff and keeps the
// last good keys; before a remote set has ever been fetched, verification
// fails with NoKeys, so requests that need the provider are denied (fail
// closed). Verify and Authenticate are called from any number of request
// goroutines concurrently; they never block on the network: a token that
// names an unknown key id asks Run for an early refresh (at most one per
// 30 s per provider) and fails now.
//
// # What is accepted
//
//   - Only asymmetric algorithms the provider allows (default RS256 RS384
//     RS512 PS256 PS384 PS512 ES256 ES384 ES512 EdDSA); "none" and HMAC
//     are refused by New, so the RSA-public-key-as-HMAC-secret confusion
//     cannot happen.
//   - Keys come only from the provider's key set: "jku", "x5u" and an
//     embedded "jwk" in a token's header are never used. A key marked
//     "use":"enc" is not used, and a key with an "alg" verifies only that
//     algorithm. Unknown "crit" headers are refused (go-jose).
//   - "iss" must equal Issuer; "aud" must contain one of Audiences when
//     they are set; "exp" is required (a proxy must not accept tokens that
//     never expire); "exp", "nbf" and "iat" are checked with ClockSkew.
//   - Tokens over 8 KiB and key sets over 1 MiB are refused.
//
// Verified tokens are cached per provider (bounded; a hit re-checks the
// time claims), and a key-set change empties the provider's cache.
package jwtauth

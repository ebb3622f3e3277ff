// Package ratelimit limits a route's request rate with token buckets
// (GCRA: one theoretical-arrival-time number per bucket), per route or
// per key: the mTLS peer's SPIFFE ID, the client address behind the
// listener's trusted proxies, a request header, or a verified JWT claim.
//
// A limit is local (counted in this process: a sharded table of buckets,
// bounded by max_keys, idle buckets forgotten first) or global (counted
// in Redis and shared by every sidecar that uses the same server and
// limit name). All global limits of a request are decided by one Lua
// script run with EVALSHA: one round trip, atomic, using the Redis
// server's clock. When Redis fails (unreachable, slower than its timeout,
// answering errors), RedisConfig.FailureMode decides: the local bucket
// with the same numbers (default), admit, or refuse.
//
// Contract: New(cfg, opts...) validates and compiles cfg into an
// immutable *Limiter, safe for concurrent use; Wrap(next) forwards a
// request only if every limit admits it, otherwise it answers 429 with
// Retry-After and the RateLimit-Policy / RateLimit fields of
// draft-ietf-httpapi-ratelimit-headers, and next never sees it. A
// *Redis is listener-level state built once by NewRedis and passed to
// each route with WithRedis; the client-IP Resolver likewise with
// WithClientIP. The local decision for an existing key costs no
// allocation; the middleware reads reqinfo.From(ctx) and nothing else
// from the sidecar.
//
// go-redis logs failed dials through its process-wide logger
// (redis.SetLogger); this package reports failures itself, at most once
// per 10 s per route, so main may silence that logger.
package ratelimit

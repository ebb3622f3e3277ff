// Package gateway is the API-gateway layer of the data path: the filters
// a team would otherwise put a reverse proxy in front of a service for.
// It runs in both roles: in the sidecar, in front of the local service
// (Proxy.Config gateway, or the static file's gateway section), and at an
// ingress listener (a public HTTPS listener in front of mesh upstreams).
//
// One feature per package, each an http.Handler middleware built from a
// Config that is decoded (yaml tags, time.Duration fields) and validated
// the same way in both configuration modes:
//
//	gateway/ratelimit  token buckets per route and key, local and global (Redis)
//	gateway/cache      RFC 9111 shared response cache
//	gateway/compress   response compression, bounded request decompression
//	gateway/aggregate  composite endpoints fanning out to several upstream calls
//	gateway/filter     CIDR lists, size limits, CORS, security response headers
//	gateway/certs      ingress TLS certificates: SNI selection, hot reload
//	gateway/clientip   the client's address behind trusted proxies
//	gateway/reqinfo    what the sidecar knows about a request (peer, claims)
//
// Contract of a feature package: the zero value of its Config means "off"
// or the documented default; Validate returns errors built with
// internal/confval (FieldError paths relative to the Config); New builds
// an immutable, concurrency-safe value whose Wrap(next) returns the
// middleware. State shared between routes (a cache store, a Redis client)
// is built once per listener and passed in. Metrics are registered once
// per process and labelled by route name only: never by path, key or ID.
//
// A route's features run outermost first: filter (what it refuses costs
// nothing further), rate limit, cache, compress, then the listener's
// proxy (composite endpoints in front of it).
package gateway

// Package cache is the gateway's RFC 9111 shared response cache for GET
// and HEAD.
//
// A Store is built once per listener (NewStore) and holds every route's
// responses in one byte-bounded LRU; each route builds a Cache from its
// Config with New(cfg, WithStore(store)), and Wrap puts it in front of
// the route's upstream handler. Both are safe for concurrent use.
//
// What the middleware does with a request:
//
//   - GET/HEAD are looked up under scheme, authority, escaped path and
//     normalized query, then the response's Vary'd request headers. A
//     fresh entry is served (HIT), with Age computed per RFC 9111 §4.2.3;
//     a client's If-None-Match / If-Modified-Since is answered 304. HEAD
//     is served from, and filled by, a GET.
//   - A stale entry is revalidated with If-None-Match / If-Modified-Since;
//     a 304 refreshes its headers and freshness (REVALIDATED). Within the
//     origin's stale-while-revalidate window it is served at once and
//     refreshed by one background request; within stale-if-error it
//     replaces a 500-504 (STALE).
//   - Concurrent misses for one key wait for one fetch (the leader's,
//     streamed to its client while recorded); waiters then read the store,
//     or fetch on their own when the response was not stored. A key whose
//     response was not storable skips coalescing for 30 s.
//   - A response is stored only when RFC 9111 §3 allows it in a shared
//     cache and none of these hold: no-store, private, Set-Cookie,
//     Vary: *, trailers, an unknown status, larger than max_object_size
//     (then it is streamed but not kept), a request with credentials
//     (unless cache_authorized_public and the response is public,
//     s-maxage or must-revalidate), a request carrying an unkeyed header
//     the response does not Vary on. Heuristic freshness (default_ttl)
//     never applies to a request with a Cookie or credentials, and the
//     path's extension plays no part: "/account/x.css" is cached only if
//     the origin's headers say so.
//   - Request Cache-Control no-cache, max-age, min-fresh force a
//     revalidation; only-if-cached answers 504 on a miss; no-store, Range
//     and Upgrade requests bypass the cache.
//   - POST, PUT, PATCH and DELETE invalidate the URI's entries when the
//     response status is below 400 (§4.4).
//
// Poisoning: a shared cache cannot know which request headers the origin
// reads. It guarantees that a stored response depends only on the key and
// the request headers named in its Vary, provided the origin declares what
// it reads: ignored query parameters are removed from the request sent to
// the origin, and for the headers known to be read without being declared
// (X-Forwarded-Host and the like, configurable) a response generated under
// them is not stored and not shared with waiting requests unless it Varies
// on them.
package cache

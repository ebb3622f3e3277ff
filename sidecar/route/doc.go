// Package route routes an upstream's HTTP requests by its Consul discovery
// chain: service-router routes, service-splitter weighted splits and
// service-resolver targets and failover, with the semantics Envoy gives
// the configuration Consul generates from them (Consul's
// agent/xds/routes.go, for the Envoy releases Consul 1.15 supports).
//
// # Lifecycle
//
// The goroutine that watches /v1/discovery-chain/<service> decodes the
// answer's "Chain" object into a Chain and calls Compile; only when
// Compile succeeds does it publish the Table (atomic.Pointer), so a bad
// chain keeps the previous table and the caller logs why (the *Error names
// the node and field). Request goroutines then call, without locks:
//
//	rt := table.Select(&req)           // nil: no route (404 in Envoy)
//	split := rt.Pick(rand.Uint32())    // weighted choice
//	path := rt.Rewrite(req.Path)       // PrefixRewrite
//	rt.ApplyRequest(split, header)     // split's modifiers, then the route's
//	// send to split.Resolver.Targets[0] (then failover targets), retry by
//	// rt.Retry, bounded by rt.RequestTimeout; on the response:
//	rt.ApplyResponse(split, respHeader)
//
// Select does not allocate for path, method, header and query matching
// (BenchmarkSelect); Pick, Rewrite without a rewrite, and the Retry
// methods do not allocate either.
//
// # Consul mapping
//
//	service-router Routes[i].Match.HTTP      Route match (Select), in order
//	  PathExact, PathPrefix                  exact / prefix, CaseInsensitive folds ASCII case
//	  PathRegex                              RE2, whole path; CaseInsensitive does not apply (Envoy)
//	  Methods                                any of them, exactly
//	  Header[j]                              internal/httpmatch, Envoy HeaderMatcher semantics:
//	                                         an absent header matches only an inverted Present;
//	                                         a repeated header matches on its values joined by ","
//	  QueryParam[j]                          first parameter of that name, compared undecoded
//	                                         (Envoy's route matching does not percent-decode)
//	Routes[i].Destination                    Route
//	  PrefixRewrite                          PrefixRewrite, Rewrite
//	  RequestTimeout, IdleTimeout            same names (0 unset, negative disabled)
//	  NumRetries, RetryOn...                 Retry (RetryPolicy)
//	  RequestHeaders, ResponseHeaders        same names (Modifiers)
//	service-splitter Splits[i]               Route.Splits[i]: Weight in 1/100 %, own Modifiers
//	service-resolver (resolver node)         Resolver: Targets (primary, then failover),
//	                                         ConnectTimeout, LoadBalancer
//	chain target                             Target: Service, subset Filter, OnlyPassing, ...
//
// A chain that starts with a splitter or a resolver (no service-router)
// compiles to one catch-all route (PathPrefix "/"); a resolver start
// node's RequestTimeout becomes that route's.
package route

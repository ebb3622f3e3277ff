// Package aggregate answers composite endpoints: a request for a declared
// path is answered by calling several mesh upstreams (the parts) and
// merging their JSON answers into one object, each under its part's name.
//
// Parts start at once and run concurrently, each on its own goroutine,
// unless they wait (after) for earlier parts whose answers fill their path
// template ({parts.user.body.id}); inbound values ({query.id},
// {header.X-User}) can fill it too. Every substituted value is
// percent-escaped for where it lands, and a value that would leave an
// empty or dot path segment fails the part before any call, so no value
// can change the target's path structure or add a header.
//
// A part is a call to the http.Handler the caller's resolver returns for
// its upstream (WithResolver: in the sidecar, the per-upstream proxy that
// balances, retries and makes a client span per attempt). The call gets a
// request with no body whose context carries the part's deadline (the
// part's timeout within the endpoint's) and the part's span, and writes
// into a bounded in-memory ResponseWriter: an answer beyond max_part_bytes
// is cut off and fails the part. A part succeeds with a 2xx and a JSON body
// (204 stands for null). A panic in the handler (httputil.ReverseProxy
// raises http.ErrAbortHandler when its copy fails) fails the part, not the
// process.
//
// The goroutine serving the request owns the exchange: it starts parts,
// collects exactly one outcome per part (the handler's answer, or a
// timeout if the part's context ends first, so a hung handler costs its
// timeout and no more), and writes the answer. With failure: whole the
// first failure cancels the other parts and answers with its status
// (400, 502 or 504) and a JSON error naming the part; with failure:
// partial the answer is 200 with a "_parts" status object, unless a
// required part failed or none succeeded. Before returning, serve flushes
// the answer and waits for the part goroutines, whose contexts are
// canceled by then.
//
// An Aggregator is immutable and safe for concurrent use; requests for
// other paths go to the next handler untouched. Metrics are labelled by
// route and outcome class only; spans are made only with WithTracer.
package aggregate

package route

import (
	"fmt"
	"slices"

	"github.com/hashicorp/consul/api"
)

// RetryPolicy is the retry policy Consul gives Envoy for a router
// destination that has retry features (NumRetries, RetryOnConnectFailure,
// RetryOn or RetryOnStatusCodes). The zero value is no policy: the route
// retries nothing. The On* methods answer as Envoy's router does (Envoy
// 1.22 to 1.25, the releases Consul 1.15 supports); the caller retries
// with Envoy's default back-off (25ms base interval, 250ms cap, jittered).
type RetryPolicy struct {
	// NumRetries is how many retries are allowed: the destination's
	// NumRetries, or 1 (Envoy's default num_retries) when that is 0 and
	// the destination has other retry features.
	NumRetries int
	// RetryOn are the conditions as Consul sends them to Envoy: the
	// destination's RetryOn, then "connect-failure" for
	// RetryOnConnectFailure (unless listed) and "retriable-status-codes"
	// when StatusCodes is not empty.
	RetryOn []string
	// StatusCodes are the destination's RetryOnStatusCodes.
	StatusCodes []uint32

	on retryOn
}

type retryOn uint16

const (
	on5xx retryOn = 1 << iota
	onGatewayError
	onReset
	onConnectFailure
	onEnvoyRateLimited
	onRetriable4xx
	onRefusedStream
	onRetriableStatusCodes
	onGRPCCancelled
	onGRPCDeadlineExceeded
	onGRPCInternal
	onGRPCResourceExhausted
	onGRPCUnavailable
)

// retryConditions are the RetryOn values Consul accepts (its
// isValidRetryCondition); "retriable-status-codes" is not one of them:
// Consul adds it when RetryOnStatusCodes is set.
var retryConditions = map[string]retryOn{
	"5xx":                on5xx,
	"gateway-error":      onGatewayError,
	"reset":              onReset,
	"connect-failure":    onConnectFailure,
	"envoy-ratelimited":  onEnvoyRateLimited,
	"retriable-4xx":      onRetriable4xx,
	"refused-stream":     onRefusedStream,
	"cancelled":          onGRPCCancelled,
	"deadline-exceeded":  onGRPCDeadlineExceeded,
	"internal":           onGRPCInternal,
	"resource-exhausted": onGRPCResourceExhausted,
	"unavailable":        onGRPCUnavailable,
}

// compileRetry builds the policy of d (nil: none). fieldName is e.g.
// "Routes[0].Destination".
func compileRetry(d *api.ServiceRouteDestination, fieldName string) (RetryPolicy, error) {
	if d == nil || d.NumRetries == 0 && !d.RetryOnConnectFailure && len(d.RetryOn) == 0 && len(d.RetryOnStatusCodes) == 0 {
		return RetryPolicy{}, nil
	}
	p := RetryPolicy{NumRetries: int(d.NumRetries), StatusCodes: slices.Clone(d.RetryOnStatusCodes)}
	if p.NumRetries == 0 {
		p.NumRetries = 1
	}
	for j, c := range d.RetryOn {
		bit, ok := retryConditions[c]
		if !ok {
			return RetryPolicy{}, fieldErr(fmt.Sprintf("%s.RetryOn[%d]", fieldName, j), fmt.Errorf("%q is not a retry condition", c))
		}
		p.on |= bit
		p.RetryOn = append(p.RetryOn, c)
	}
	if d.RetryOnConnectFailure && !slices.Contains(p.RetryOn, "connect-failure") {
		p.on |= onConnectFailure
		p.RetryOn = append(p.RetryOn, "connect-failure")
	}
	if len(p.StatusCodes) > 0 {
		p.on |= onRetriableStatusCodes
		p.RetryOn = append(p.RetryOn, "retriable-status-codes")
	}
	return p, nil
}

// Enabled reports whether the route has a retry policy. A policy with no
// condition (only NumRetries) is enabled but retries nothing, as in Envoy.
func (p *RetryPolicy) Enabled() bool { return p.NumRetries > 0 }

// OnConnectFailure reports whether a failure to connect to the upstream is
// retried: "connect-failure" (or RetryOnConnectFailure), and, as Envoy
// counts every reset as one, "reset", "5xx" and "gateway-error".
func (p *RetryPolicy) OnConnectFailure() bool {
	return p.on&(onConnectFailure|onReset|on5xx|onGatewayError) != 0
}

// OnReset reports whether a request whose upstream connection or stream
// was reset, closed or timed out before a response is retried: "reset",
// "5xx" and "gateway-error".
func (p *RetryPolicy) OnReset() bool { return p.on&(onReset|on5xx|onGatewayError) != 0 }

// OnRefusedStream reports whether a stream the upstream refused (HTTP/2
// REFUSED_STREAM) is retried: "refused-stream", and every reset
// condition ("reset", "5xx", "gateway-error").
func (p *RetryPolicy) OnRefusedStream() bool {
	return p.on&(onRefusedStream|onReset|on5xx|onGatewayError) != 0
}

// OnResponse reports whether a response is retried. status is its HTTP
// status; grpcStatus its grpc-status header (a trailers-only response), -1
// when it has none; rateLimited whether it carries x-envoy-ratelimited,
// which decides alone, as in Envoy: such a response is retried only under
// "envoy-ratelimited". Otherwise: "5xx" 500-599, "gateway-error" 502, 503
// and 504, "retriable-4xx" 409, "retriable-status-codes" StatusCodes, and
// the gRPC conditions "cancelled" (1), "deadline-exceeded" (4),
// "resource-exhausted" (8), "internal" (13) and "unavailable" (14).
func (p *RetryPolicy) OnResponse(status int, grpcStatus int, rateLimited bool) bool {
	if rateLimited {
		return p.on&onEnvoyRateLimited != 0
	}
	switch {
	case p.on&on5xx != 0 && status >= 500 && status <= 599,
		p.on&onGatewayError != 0 && (status == 502 || status == 503 || status == 504),
		p.on&onRetriable4xx != 0 && status == 409:
		return true
	}
	if p.on&onRetriableStatusCodes != 0 {
		for _, c := range p.StatusCodes {
			if int(c) == status {
				return true
			}
		}
	}
	switch grpcStatus {
	case 1:
		return p.on&onGRPCCancelled != 0
	case 4:
		return p.on&onGRPCDeadlineExceeded != 0
	case 8:
		return p.on&onGRPCResourceExhausted != 0
	case 13:
		return p.on&onGRPCInternal != 0
	case 14:
		return p.on&onGRPCUnavailable != 0
	}
	return false
}

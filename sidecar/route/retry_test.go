package route

import (
	"strings"
	"testing"

	"github.com/hashicorp/consul/api"
)

func TestRetryPolicy(t *testing.T) {
	type resp struct {
		status, grpc int
		limited      bool
		retry        bool
	}
	for _, tt := range []struct {
		name                           string
		dest                           api.ServiceRouteDestination
		enabled                        bool
		num                            int
		retryOn                        string
		connectFailure, reset, refused bool
		responses                      []resp
	}{
		{name: "none", dest: api.ServiceRouteDestination{RequestTimeout: 1}, responses: []resp{{503, -1, false, false}}},
		{name: "NumRetries alone retries nothing", dest: api.ServiceRouteDestination{NumRetries: 2}, enabled: true, num: 2,
			responses: []resp{{503, -1, false, false}}},
		{name: "connect failure, default num_retries 1", dest: api.ServiceRouteDestination{RetryOnConnectFailure: true}, enabled: true, num: 1,
			retryOn: "connect-failure", connectFailure: true, responses: []resp{{503, -1, false, false}}},
		{name: "connect-failure listed once", dest: api.ServiceRouteDestination{RetryOn: []string{"connect-failure"}, RetryOnConnectFailure: true},
			enabled: true, num: 1, retryOn: "connect-failure", connectFailure: true},
		{name: "5xx covers resets", dest: api.ServiceRouteDestination{NumRetries: 3, RetryOn: []string{"5xx"}}, enabled: true, num: 3,
			retryOn: "5xx", connectFailure: true, reset: true, refused: true,
			responses: []resp{{500, -1, false, true}, {599, -1, false, true}, {499, -1, false, false}, {600, -1, false, false}, {503, -1, true, false}}},
		{name: "gateway-error", dest: api.ServiceRouteDestination{RetryOn: []string{"gateway-error"}}, enabled: true, num: 1,
			retryOn: "gateway-error", connectFailure: true, reset: true, refused: true,
			responses: []resp{{502, -1, false, true}, {503, -1, false, true}, {504, -1, false, true}, {500, -1, false, false}}},
		{name: "reset covers connect failures", dest: api.ServiceRouteDestination{RetryOn: []string{"reset"}}, enabled: true, num: 1,
			retryOn: "reset", connectFailure: true, reset: true, refused: true, responses: []resp{{503, -1, false, false}}},
		{name: "refused-stream", dest: api.ServiceRouteDestination{RetryOn: []string{"refused-stream"}}, enabled: true, num: 1,
			retryOn: "refused-stream", refused: true},
		{name: "retriable-4xx", dest: api.ServiceRouteDestination{RetryOn: []string{"retriable-4xx"}}, enabled: true, num: 1,
			retryOn: "retriable-4xx", responses: []resp{{409, -1, false, true}, {429, -1, false, false}}},
		{name: "status codes", dest: api.ServiceRouteDestination{RetryOnStatusCodes: []uint32{429, 503}}, enabled: true, num: 1,
			retryOn: "retriable-status-codes", responses: []resp{{429, -1, false, true}, {503, -1, false, true}, {500, -1, false, false}}},
		{name: "envoy-ratelimited decides alone", dest: api.ServiceRouteDestination{RetryOn: []string{"envoy-ratelimited"}}, enabled: true, num: 1,
			retryOn: "envoy-ratelimited", responses: []resp{{429, -1, true, true}, {429, -1, false, false}, {503, -1, false, false}}},
		{name: "grpc", dest: api.ServiceRouteDestination{RetryOn: []string{"cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable"}},
			enabled: true, num: 1, retryOn: "cancelled,deadline-exceeded,internal,resource-exhausted,unavailable",
			responses: []resp{{200, 1, false, true}, {200, 4, false, true}, {200, 8, false, true}, {200, 13, false, true}, {200, 14, false, true},
				{200, 2, false, false}, {200, 0, false, false}, {200, -1, false, false}}},
		{name: "grpc unavailable only", dest: api.ServiceRouteDestination{RetryOn: []string{"unavailable"}}, enabled: true, num: 1,
			retryOn: "unavailable", responses: []resp{{200, 14, false, true}, {200, 13, false, false}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, err := compileRetry(&tt.dest, "Destination")
			if err != nil {
				t.Fatal(err)
			}
			if p.Enabled() != tt.enabled || p.NumRetries != tt.num || strings.Join(p.RetryOn, ",") != tt.retryOn {
				t.Fatalf("policy %+v: Enabled %v", p, p.Enabled())
			}
			if p.OnConnectFailure() != tt.connectFailure || p.OnReset() != tt.reset || p.OnRefusedStream() != tt.refused {
				t.Fatalf("connect failure %v, reset %v, refused stream %v", p.OnConnectFailure(), p.OnReset(), p.OnRefusedStream())
			}
			for _, r := range tt.responses {
				if got := p.OnResponse(r.status, r.grpc, r.limited); got != r.retry {
					t.Errorf("OnResponse(%d, %d, %v) = %v", r.status, r.grpc, r.limited, got)
				}
			}
		})
	}
}

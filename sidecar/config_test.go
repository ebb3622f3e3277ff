package sidecar

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/outrider-mesh/outrider/sidecar/health"
)

func reg(mut func(*api.AgentService)) *api.AgentService {
	s := &api.AgentService{
		Kind: api.ServiceKindConnectProxy, ID: "web-1-sidecar-proxy", Service: "web-sidecar-proxy",
		Address: "10.0.0.5", Port: 21000,
		Proxy: &api.AgentServiceConnectProxyConfig{
			DestinationServiceName: "web", DestinationServiceID: "web-1",
			LocalServicePort: 8080,
			Upstreams:        []api.Upstream{{DestinationName: "api", LocalBindPort: 9191}},
		},
	}
	if mut != nil {
		mut(s)
	}
	return s
}

func TestFromRegistration(t *testing.T) {
	c, err := FromRegistration(reg(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		ProxyID: "web-1-sidecar-proxy", Service: "web", ServiceID: "web-1", Namespace: "default",
		Public: PublicListener{
			BindAddress: "10.0.0.5:21000", LocalService: "127.0.0.1:8080",
			LocalConnectTimeout: time.Second, HandshakeTimeout: 10 * time.Second,
			Protocol: TCP, MaxHeaderBytes: 64 << 10, MaxHeaders: 100, LocalRequestTimeout: 15 * time.Second,
			HTTPLimits: defaultHTTPLimits,
		},
		Upstreams: []Upstream{{DestinationName: "api", Namespace: "default", BindAddress: "127.0.0.1:9191", ConnectTimeout: 5 * time.Second,
			Protocol: TCP, MaxHeaderBytes: 64 << 10, MaxHeaders: 100, HTTPLimits: defaultHTTPLimits, RetryBudget: RetryBudget{Percent: 20, MinRetries: 3}}},
	}
	if !reflect.DeepEqual(c.Public, want.Public) || c.Service != want.Service || c.ProxyID != want.ProxyID || !reflect.DeepEqual(c.Upstreams, want.Upstreams) {
		t.Fatalf("FromRegistration =\n%+v\nwant\n%+v", c, want)
	}
}

func TestFromRegistrationProxyConfig(t *testing.T) {
	tests := []struct {
		name  string
		mut   func(*api.AgentService)
		check func(Config) bool
	}{
		{"no address binds all", func(s *api.AgentService) { s.Address = "" },
			func(c Config) bool { return c.Public.BindAddress == "0.0.0.0:21000" }},
		{"bind overrides", func(s *api.AgentService) {
			s.Proxy.Config = map[string]any{"bind_address": "127.0.0.2", "bind_port": float64(22000)}
		}, func(c Config) bool { return c.Public.BindAddress == "127.0.0.2:22000" }},
		{"timeouts as JSON numbers", func(s *api.AgentService) {
			s.Proxy.Config = map[string]any{"local_connect_timeout_ms": float64(250), "connect_timeout_ms": float64(700), "handshake_timeout_ms": float64(3000)}
		}, func(c Config) bool {
			return c.Public.LocalConnectTimeout == 250*time.Millisecond && c.Public.HandshakeTimeout == 3*time.Second &&
				c.Upstreams[0].ConnectTimeout == 700*time.Millisecond
		}},
		{"upstream timeout beats proxy timeout, strings accepted", func(s *api.AgentService) {
			s.Proxy.Config = map[string]any{"connect_timeout_ms": "700"}
			s.Proxy.Upstreams[0].Config = map[string]any{"connect_timeout_ms": "1500"}
		}, func(c Config) bool { return c.Upstreams[0].ConnectTimeout == 1500*time.Millisecond }},
		{"local service address and datacenter", func(s *api.AgentService) {
			s.Proxy.LocalServiceAddress = "10.1.1.1"
			s.Proxy.Upstreams[0].Datacenter = "dc2"
			s.Proxy.Upstreams[0].LocalBindAddress = "127.0.0.9"
		}, func(c Config) bool {
			return c.Public.LocalService == "10.1.1.1:8080" && c.Upstreams[0].Datacenter == "dc2" && c.Upstreams[0].BindAddress == "127.0.0.9:9191"
		}},
		{"protocols from the merged registration", func(s *api.AgentService) {
			s.Proxy.Config = map[string]any{"protocol": "HTTP", "max_header_bytes": float64(8192)}
			s.Proxy.Upstreams[0].Config = map[string]any{"protocol": "grpc"}
		}, func(c Config) bool {
			return c.Public.Protocol == HTTP && c.Upstreams[0].Protocol == GRPC && c.Public.MaxHeaderBytes == 8192 && c.Upstreams[0].MaxHeaderBytes == 8192
		}},
		{"tracing from Proxy.Config", func(s *api.AgentService) {
			s.Proxy.Config = map[string]any{"otlp_endpoint": "http://jaeger:4317", "otlp_protocol": "http/protobuf", "trace_sampling": 0.25}
		}, func(c Config) bool {
			return c.Tracing.Endpoint == "http://jaeger:4317" && c.Tracing.Protocol == "http/protobuf" && *c.Tracing.Sampling == 0.25
		}},
		{"edge limits default", func(*api.AgentService) {}, func(c Config) bool {
			want := HTTPLimits{IdleTimeout: 90 * time.Second, BodyIdleTimeout: 60 * time.Second, MaxInterim: 10, MaxConcurrentStreams: 1000,
				InitialStreamWindowSize: 1 << 20, InitialConnectionWindowSize: 1 << 20}
			return c.Public.HTTPLimits == want && c.Upstreams[0].HTTPLimits == want
		}},
		{"edge limits from Proxy.Config, shared by the upstreams", func(s *api.AgentService) {
			s.Proxy.Config = map[string]any{"idle_timeout_ms": float64(120000), "body_idle_timeout_ms": "300000",
				"max_interim_responses": float64(3), "max_concurrent_streams": "250",
				"initial_stream_window_size": float64(65535), "initial_connection_window_size": "16777216"}
		}, func(c Config) bool {
			want := HTTPLimits{IdleTimeout: 2 * time.Minute, BodyIdleTimeout: 5 * time.Minute, MaxInterim: 3, MaxConcurrentStreams: 250,
				InitialStreamWindowSize: 65535, InitialConnectionWindowSize: 16 << 20}
			return c.Public.HTTPLimits == want && c.Upstreams[0].HTTPLimits == want
		}},
		{"IPv6 addresses", func(s *api.AgentService) { s.Address = "::1" },
			func(c Config) bool { return c.Public.BindAddress == "[::1]:21000" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := FromRegistration(reg(tt.mut))
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(c) {
				t.Fatalf("unexpected config %+v", c)
			}
		})
	}
}

// Bad registrations are rejected with an error naming the field.
func TestFromRegistrationErrorsNameTheField(t *testing.T) {
	tests := []struct {
		name string
		mut  func(*api.AgentService)
		want string
	}{
		{"not a proxy", func(s *api.AgentService) { s.Kind = "" }, "not a connect-proxy"},
		{"no destination", func(s *api.AgentService) { s.Proxy.DestinationServiceName = "" }, "DestinationServiceName"},
		{"bad port", func(s *api.AgentService) { s.Port = 0 }, "Port 0"},
		{"no local port", func(s *api.AgentService) { s.Proxy.LocalServicePort = 0 }, "LocalServicePort"},
		{"socket path", func(s *api.AgentService) { s.Proxy.LocalServicePort = 0; s.Proxy.LocalServiceSocketPath = "/x.sock" }, "LocalServiceSocketPath"},
		{"timeout not a number", func(s *api.AgentService) { s.Proxy.Config = map[string]any{"connect_timeout_ms": "soon"} }, "Proxy.Config.connect_timeout_ms"},
		{"negative timeout", func(s *api.AgentService) { s.Proxy.Config = map[string]any{"local_connect_timeout_ms": float64(-1)} }, "local_connect_timeout_ms"},
		// 1e13 ms wrapped to a negative time.Duration (found by FuzzFromRegistration).
		{"timeout overflows", func(s *api.AgentService) { s.Proxy.Config = map[string]any{"local_connect_timeout_ms": 1e13} },
			"Proxy.Config.local_connect_timeout_ms: want at most 9223372036854 milliseconds"},
		{"upstream timeout overflows", func(s *api.AgentService) {
			s.Proxy.Upstreams[0].Config = map[string]any{"connect_timeout_ms": "10000000000000"}
		},
			"Upstreams[0]: Config.connect_timeout_ms: want at most"},
		{"fractional port", func(s *api.AgentService) { s.Proxy.Config = map[string]any{"bind_port": 1.5} }, "bind_port"},
		{"bad bind address", func(s *api.AgentService) { s.Proxy.Config = map[string]any{"bind_address": 7.0} }, "bind_address"},
		{"upstream without name", func(s *api.AgentService) { s.Proxy.Upstreams[0].DestinationName = "" }, "Upstreams[0]: DestinationName"},
		{"upstream without port", func(s *api.AgentService) { s.Proxy.Upstreams[0].LocalBindPort = 0 }, "Upstreams[0]: LocalBindPort"},
		{"prepared query", func(s *api.AgentService) { s.Proxy.Upstreams[0].DestinationType = "prepared_query" }, "DestinationType"},
		{"upstream timeout", func(s *api.AgentService) { s.Proxy.Upstreams[0].Config = map[string]any{"connect_timeout_ms": true} }, "Upstreams[0]: Config.connect_timeout_ms"},
		{"unknown protocol", func(s *api.AgentService) { s.Proxy.Config = map[string]any{"protocol": "http3"} }, "Proxy.Config.protocol"},
		{"unknown upstream protocol", func(s *api.AgentService) { s.Proxy.Upstreams[0].Config = map[string]any{"protocol": 7.0} }, "Upstreams[0]: Config.protocol"},
		{"header limit too small", func(s *api.AgentService) { s.Proxy.Config = map[string]any{"max_header_bytes": "10"} }, "Proxy.Config.max_header_bytes"},
		{"idle timeout zero", func(s *api.AgentService) { s.Proxy.Config = map[string]any{"idle_timeout_ms": float64(0)} },
			"Proxy.Config.idle_timeout_ms: want a positive number of milliseconds, got 0"},
		{"idle timeout not a number", func(s *api.AgentService) { s.Proxy.Config = map[string]any{"idle_timeout_ms": "90s"} },
			"Proxy.Config.idle_timeout_ms: want an integer"},
		{"body idle timeout negative", func(s *api.AgentService) { s.Proxy.Config = map[string]any{"body_idle_timeout_ms": float64(-5)} },
			"Proxy.Config.body_idle_timeout_ms: want a positive number of milliseconds, got -5"},
		{"body idle timeout wrong type", func(s *api.AgentService) { s.Proxy.Config = map[string]any{"body_idle_timeout_ms": true} },
			"Proxy.Config.body_idle_timeout_ms: want an integer"},
		{"body idle timeout overflows", func(s *api.AgentService) { s.Proxy.Config = map[string]any{"body_idle_timeout_ms": 1e13} },
			"Proxy.Config.body_idle_timeout_ms: want at most"},
		{"max interim zero", func(s *api.AgentService) { s.Proxy.Config = map[string]any{"max_interim_responses": float64(0)} },
			"Proxy.Config.max_interim_responses: want an integer between 1 and 1000, got 0"},
		{"max interim absurd", func(s *api.AgentService) { s.Proxy.Config = map[string]any{"max_interim_responses": "1000000"} },
			"Proxy.Config.max_interim_responses: want an integer between 1 and 1000, got 1000000"},
		{"max interim fractional", func(s *api.AgentService) { s.Proxy.Config = map[string]any{"max_interim_responses": 2.5} },
			"Proxy.Config.max_interim_responses: want an integer between 1 and 1000, got 2.5"},
		{"max streams negative", func(s *api.AgentService) { s.Proxy.Config = map[string]any{"max_concurrent_streams": float64(-1)} },
			"Proxy.Config.max_concurrent_streams: want an integer between 1 and 100000, got -1"},
		{"max streams absurd", func(s *api.AgentService) { s.Proxy.Config = map[string]any{"max_concurrent_streams": 1e12} },
			"Proxy.Config.max_concurrent_streams: want an integer between 1 and 100000"},
		{"max streams wrong type", func(s *api.AgentService) { s.Proxy.Config = map[string]any{"max_concurrent_streams": []any{3.0}} },
			"Proxy.Config.max_concurrent_streams: want an integer between 1 and 100000, got [3]"},
		{"stream window below HTTP/2's initial", func(s *api.AgentService) {
			s.Proxy.Config = map[string]any{"initial_stream_window_size": float64(65534)}
		},
			"Proxy.Config.initial_stream_window_size: want an integer between 65535 and 2147483647, got 65534"},
		{"connection window above 2^31-1", func(s *api.AgentService) {
			s.Proxy.Config = map[string]any{"initial_connection_window_size": 2147483648.0}
		},
			"Proxy.Config.initial_connection_window_size: want an integer between 65535 and 2147483647"},
		{"connection window wrong type", func(s *api.AgentService) { s.Proxy.Config = map[string]any{"initial_connection_window_size": "big"} },
			"Proxy.Config.initial_connection_window_size: want an integer between 65535 and 2147483647, got big"},
		{"bad trace sampling", func(s *api.AgentService) { s.Proxy.Config = map[string]any{"trace_sampling": 2.0} }, "Proxy.Config.trace_sampling"},
		{"bad otlp protocol", func(s *api.AgentService) { s.Proxy.Config = map[string]any{"otlp_protocol": "thrift"} }, "Proxy.Config.otlp_protocol"},
		{"otlp endpoint not a string", func(s *api.AgentService) { s.Proxy.Config = map[string]any{"otlp_endpoint": 4317.0} }, "Proxy.Config.otlp_endpoint"},
		{"health check interval", func(s *api.AgentService) {
			s.Proxy.Upstreams[0].Config = map[string]any{"health_check": map[string]any{"type": "tcp", "interval": "often"}}
		}, `Upstreams[0]: Config.health_check.interval: "often" is not a duration`},
		{"health check type", func(s *api.AgentService) {
			s.Proxy.Upstreams[0].Config = map[string]any{"health_check": map[string]any{"type": "icmp"}}
		}, "Upstreams[0]: Config.health_check.type"},
		{"duplicate bind", func(s *api.AgentService) {
			s.Proxy.Upstreams = append(s.Proxy.Upstreams, api.Upstream{DestinationName: "db", LocalBindPort: 9191})
		}, "already used"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := FromRegistration(reg(tt.mut))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want one naming %q", err, tt.want)
			}
		})
	}
}

// TestFromRegistrationHealthCheck: an upstream's Config.health_check
// becomes Upstream.HealthCheck with its defaults; absent, checks are off.
func TestFromRegistrationHealthCheck(t *testing.T) {
	c, err := FromRegistration(reg(func(s *api.AgentService) {
		s.Proxy.Upstreams[0].Config = map[string]any{"protocol": "http",
			"health_check": map[string]any{"type": "http", "path": "/healthz", "interval": "5s"}}
	}))
	if err != nil {
		t.Fatal(err)
	}
	want := health.Config{Type: health.HTTP, Path: "/healthz", ExpectedStatuses: []health.StatusRange{{Min: 200, Max: 299}},
		Interval: 5 * time.Second, Timeout: time.Second, HealthyThreshold: 2, UnhealthyThreshold: 3}
	if got := c.Upstreams[0].HealthCheck; !got.Equal(want) {
		t.Fatalf("HealthCheck = %+v, want %+v", got, want)
	}
	if c, _ := FromRegistration(reg(nil)); c.Upstreams[0].HealthCheck.Enabled() {
		t.Fatal("checks on without health_check")
	}
}

package tracing

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// defaults is what FromEnv returns for an empty environment.
func defaults() Config {
	return Config{
		Protocol:      "grpc",
		Sampler:       "parentbased_always_on",
		SamplerArg:    1,
		Propagators:   []string{"tracecontext", "baggage"},
		MaxQueueSize:  2048,
		ExportTimeout: 10 * time.Second,
	}
}

func TestFromEnv(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		want func(*Config)
	}{
		{name: "empty", env: nil, want: func(*Config) {}},
		{name: "blank values are unset", env: map[string]string{
			"OTEL_EXPORTER_OTLP_ENDPOINT": "  ", "OTEL_TRACES_SAMPLER": "",
		}, want: func(*Config) {}},
		{name: "TLS files and compression, traces variants win", env: map[string]string{
			"OTEL_EXPORTER_OTLP_CERTIFICATE":        "/generic/ca.pem",
			"OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE": "/traces/ca.pem",
			"OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": "/c.pem",
			"OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY":  "/k.pem",
			"OTEL_EXPORTER_OTLP_COMPRESSION":        "none",
			"OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "gzip",
		}, want: func(c *Config) {
			c.Certificate, c.ClientCertificate, c.ClientKey, c.Compression = "/traces/ca.pem", "/c.pem", "/k.pem", "gzip"
		}},
		{name: "generic endpoint enables", env: map[string]string{
			"OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector:4317",
		}, want: func(c *Config) { c.Enabled = true; c.Endpoint = "https://collector:4317" }},
		{name: "traces endpoint wins", env: map[string]string{
			"OTEL_EXPORTER_OTLP_ENDPOINT":        "https://generic:4317",
			"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://traces:4317",
		}, want: func(c *Config) { c.Enabled = true; c.Endpoint = "https://traces:4317" }},
		{name: "http endpoint is insecure", env: map[string]string{
			"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317",
		}, want: func(c *Config) { c.Enabled = true; c.Endpoint = "http://collector:4317"; c.Insecure = true }},
		{name: "host:port endpoint", env: map[string]string{
			"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "collector:4317",
		}, want: func(c *Config) { c.Enabled = true; c.Endpoint = "collector:4317" }},
		{name: "generic endpoint gets the signal path for http", env: map[string]string{
			"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/base/",
			"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
		}, want: func(c *Config) {
			c.Enabled = true
			c.Endpoint = "http://collector:4318/base/v1/traces"
			c.Protocol = "http/protobuf"
			c.Insecure = true
		}},
		{name: "traces endpoint is used as is for http", env: map[string]string{
			"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://collector:4318/custom",
			"OTEL_EXPORTER_OTLP_PROTOCOL":        "http/protobuf",
		}, want: func(c *Config) {
			c.Enabled = true
			c.Endpoint = "https://collector:4318/custom"
			c.Protocol = "http/protobuf"
		}},
		{name: "traces protocol wins", env: map[string]string{
			"OTEL_EXPORTER_OTLP_PROTOCOL":        "grpc",
			"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
		}, want: func(c *Config) { c.Protocol = "http/protobuf" }},
		{name: "insecure generic", env: map[string]string{
			"OTEL_EXPORTER_OTLP_INSECURE": "TRUE",
		}, want: func(c *Config) { c.Insecure = true }},
		{name: "traces insecure wins", env: map[string]string{
			"OTEL_EXPORTER_OTLP_INSECURE":        "true",
			"OTEL_EXPORTER_OTLP_TRACES_INSECURE": "false",
		}, want: func(*Config) {}},
		{name: "headers URL-decoded", env: map[string]string{
			"OTEL_EXPORTER_OTLP_HEADERS": "api-key=s%3Dcr%2Cet, x-tenant = a b ,",
		}, want: func(c *Config) { c.Headers = map[string]string{"api-key": "s=cr,et", "x-tenant": "a b"} }},
		{name: "traces headers replace generic", env: map[string]string{
			"OTEL_EXPORTER_OTLP_HEADERS":        "a=1,b=2",
			"OTEL_EXPORTER_OTLP_TRACES_HEADERS": "c=3",
		}, want: func(c *Config) { c.Headers = map[string]string{"c": "3"} }},
		{name: "service name", env: map[string]string{
			"OTEL_SERVICE_NAME": "web",
		}, want: func(c *Config) { c.ServiceName = "web" }},
		{name: "resource attributes", env: map[string]string{
			"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod,team=a%20b",
		}, want: func(c *Config) {
			c.Attributes = map[string]string{"deployment.environment": "prod", "team": "a b"}
		}},
		{name: "service.name from resource attributes", env: map[string]string{
			"OTEL_RESOURCE_ATTRIBUTES": "service.name=api",
		}, want: func(c *Config) { c.ServiceName = "api"; c.Attributes = map[string]string{"service.name": "api"} }},
		{name: "OTEL_SERVICE_NAME wins over resource attributes", env: map[string]string{
			"OTEL_RESOURCE_ATTRIBUTES": "service.name=api",
			"OTEL_SERVICE_NAME":        "web",
		}, want: func(c *Config) { c.ServiceName = "web"; c.Attributes = map[string]string{"service.name": "api"} }},
		{name: "sampler and arg", env: map[string]string{
			"OTEL_TRACES_SAMPLER":     "parentbased_traceidratio",
			"OTEL_TRACES_SAMPLER_ARG": "0.25",
		}, want: func(c *Config) { c.Sampler = "parentbased_traceidratio"; c.SamplerArg = 0.25 }},
		{name: "sampler arg bounds", env: map[string]string{
			"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0",
		}, want: func(c *Config) { c.Sampler = "traceidratio"; c.SamplerArg = 0 }},
		{name: "propagators", env: map[string]string{
			"OTEL_PROPAGATORS": " b3 , b3multi,,tracecontext",
		}, want: func(c *Config) { c.Propagators = []string{"b3", "b3multi", "tracecontext"} }},
		{name: "propagators none", env: map[string]string{
			"OTEL_PROPAGATORS": "none",
		}, want: func(c *Config) { c.Propagators = []string{"none"} }},
		{name: "queue size", env: map[string]string{
			"OTEL_BSP_MAX_QUEUE_SIZE": "100",
		}, want: func(c *Config) { c.MaxQueueSize = 100 }},
		{name: "bsp timeout", env: map[string]string{
			"OTEL_BSP_EXPORT_TIMEOUT": "1500",
		}, want: func(c *Config) { c.ExportTimeout = 1500 * time.Millisecond }},
		{name: "otlp timeout wins over bsp", env: map[string]string{
			"OTEL_BSP_EXPORT_TIMEOUT":    "1500",
			"OTEL_EXPORTER_OTLP_TIMEOUT": "2000",
		}, want: func(c *Config) { c.ExportTimeout = 2 * time.Second }},
		{name: "traces timeout wins", env: map[string]string{
			"OTEL_EXPORTER_OTLP_TIMEOUT":        "2000",
			"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "3000",
		}, want: func(c *Config) { c.ExportTimeout = 3 * time.Second }},
		{name: "exporter otlp enables", env: map[string]string{
			"OTEL_TRACES_EXPORTER": "otlp",
		}, want: func(c *Config) { c.Enabled = true }},
		{name: "exporter none disables", env: map[string]string{
			"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317",
			"OTEL_TRACES_EXPORTER":        "none",
		}, want: func(c *Config) { c.Endpoint = "http://collector:4317"; c.Insecure = true }},
		{name: "sdk disabled", env: map[string]string{
			"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317",
			"OTEL_SDK_DISABLED":           "true",
		}, want: func(c *Config) { c.Endpoint = "http://collector:4317"; c.Insecure = true }},
		{name: "sdk disabled false", env: map[string]string{
			"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317",
			"OTEL_SDK_DISABLED":           "false",
		}, want: func(c *Config) { c.Enabled = true; c.Endpoint = "http://collector:4317"; c.Insecure = true }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := FromEnv(envOf(tt.env))
			if err != nil {
				t.Fatalf("FromEnv: %v", err)
			}
			want := defaults()
			tt.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("FromEnv:\n got %+v\nwant %+v", got, want)
			}
			if err := got.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
		})
	}
}

func TestFromEnvErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, value string
		want        string // in the error besides the variable's name
	}{
		{"OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://collector", `"ftp://collector"`},
		{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://", `"http://"`},
		{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://[::1", `"http://[::1"`},
		{"OTEL_EXPORTER_OTLP_PROTOCOL", "http/json", `"http/json"`},
		{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "udp", `"udp"`},
		{"OTEL_EXPORTER_OTLP_INSECURE", "yes", `"yes"`},
		{"OTEL_EXPORTER_OTLP_TRACES_INSECURE", "1", `"1"`},
		{"OTEL_EXPORTER_OTLP_HEADERS", "novalue", "entry 1"},
		{"OTEL_EXPORTER_OTLP_TRACES_HEADERS", "a=1,=2", "entry 2: empty key"},
		{"OTEL_EXPORTER_OTLP_HEADERS", "a=%zz", "bad %-escape"},
		{"OTEL_RESOURCE_ATTRIBUTES", "team", `"team"`},
		{"OTEL_TRACES_SAMPLER", "jaeger_remote", `"jaeger_remote"`},
		{"OTEL_TRACES_SAMPLER_ARG", "2", `want a number between 0 and 1, got "2"`},
		{"OTEL_TRACES_SAMPLER_ARG", "-0.1", `"-0.1"`},
		{"OTEL_TRACES_SAMPLER_ARG", "half", `"half"`},
		{"OTEL_TRACES_SAMPLER_ARG", "NaN", `"NaN"`},
		{"OTEL_PROPAGATORS", "tracecontext,jaeger", `"jaeger"`},
		{"OTEL_BSP_MAX_QUEUE_SIZE", "0", `"0"`},
		{"OTEL_BSP_MAX_QUEUE_SIZE", "many", `"many"`},
		{"OTEL_BSP_EXPORT_TIMEOUT", "-5", `"-5"`},
		{"OTEL_EXPORTER_OTLP_TIMEOUT", "10s", `"10s"`},
		{"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "0", `"0"`},
		{"OTEL_TRACES_EXPORTER", "zipkin", `"zipkin"`},
		{"OTEL_EXPORTER_OTLP_COMPRESSION", "br", `want "gzip" or "none", got "br"`},
		{"OTEL_SDK_DISABLED", "yes", `"yes"`},
	}
	for _, tt := range tests {
		t.Run(tt.name+"="+tt.value, func(t *testing.T) {
			t.Parallel()
			_, err := FromEnv(envOf(map[string]string{tt.name: tt.value}))
			if err == nil {
				t.Fatal("FromEnv: no error")
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.name+": ") || !strings.Contains(msg, tt.want) {
				t.Errorf("error %q: want it to name %s and contain %q", msg, tt.name, tt.want)
			}
		})
	}
}

func TestFromEnvHeaderErrorHidesValue(t *testing.T) {
	t.Parallel()
	_, err := FromEnv(envOf(map[string]string{"OTEL_EXPORTER_OTLP_HEADERS": "api-key=s3cret,oops"}))
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("error %v: want an error that does not show the header value", err)
	}
}

func TestFromEnvReportsEveryBadVariable(t *testing.T) {
	t.Parallel()
	_, err := FromEnv(envOf(map[string]string{
		"OTEL_TRACES_SAMPLER":     "sometimes",
		"OTEL_TRACES_SAMPLER_ARG": "2",
		"OTEL_PROPAGATORS":        "xray",
	}))
	if err == nil {
		t.Fatal("no error")
	}
	for _, v := range []string{"OTEL_TRACES_SAMPLER:", "OTEL_TRACES_SAMPLER_ARG:", "OTEL_PROPAGATORS:"} {
		if !strings.Contains(err.Error(), v) {
			t.Errorf("error %q does not name %s", err, v)
		}
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		cfg   Config
		field string // "" means valid
	}{
		{"zero", Config{}, ""},
		{"zero enabled", Config{Enabled: true}, ""},
		{"disabled ignores exporter fields", Config{Protocol: "udp", Sampler: "x", SamplerArg: 7}, ""},
		{"bad propagator even disabled", Config{Propagators: []string{"jaeger"}}, "Propagators"},
		{"protocol", Config{Enabled: true, Protocol: "udp"}, "Protocol"},
		{"endpoint", Config{Enabled: true, Endpoint: "ftp://x"}, "Endpoint"},
		{"sampler", Config{Enabled: true, Sampler: "sometimes"}, "Sampler"},
		{"sampler arg", Config{Enabled: true, SamplerArg: 1.5}, "SamplerArg"},
		{"queue", Config{Enabled: true, MaxQueueSize: -1}, "MaxQueueSize"},
		{"timeout", Config{Enabled: true, ExportTimeout: -time.Second}, "ExportTimeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.cfg.Validate()
			switch {
			case tt.field == "" && err != nil:
				t.Errorf("Validate: %v", err)
			case tt.field != "" && (err == nil || !strings.Contains(err.Error(), "tracing: "+tt.field+": ")):
				t.Errorf("Validate: %v, want an error naming %s", err, tt.field)
			}
		})
	}
}

func TestParseEndpoint(t *testing.T) {
	t.Parallel()
	tests := []struct {
		ep       string
		insecure bool
		protocol string
		want     string
	}{
		{"", false, ProtocolGRPC, "https://localhost:4317"},
		{"", true, ProtocolGRPC, "http://localhost:4317"},
		{"", true, ProtocolHTTP, "http://localhost:4318/v1/traces"},
		{"collector:4317", false, ProtocolGRPC, "https://collector:4317"},
		{"collector:4317", true, ProtocolGRPC, "http://collector:4317"},
		{"http://collector:4317", false, ProtocolGRPC, "http://collector:4317"},
		{"https://collector:4317", true, ProtocolGRPC, "https://collector:4317"},
		{"HTTP://collector:4318", false, ProtocolHTTP, "http://collector:4318/v1/traces"},
		{"http://collector:4318/", false, ProtocolHTTP, "http://collector:4318/v1/traces"},
		{"http://collector:4318/otlp/traces", false, ProtocolHTTP, "http://collector:4318/otlp/traces"},
		{"collector:4318/v1/traces", true, ProtocolHTTP, "http://collector:4318/v1/traces"},
	}
	for _, tt := range tests {
		u, err := parseEndpoint(tt.ep, tt.insecure, tt.protocol)
		if err != nil {
			t.Errorf("parseEndpoint(%q, %v, %s): %v", tt.ep, tt.insecure, tt.protocol, err)
			continue
		}
		if got := u.String(); got != tt.want {
			t.Errorf("parseEndpoint(%q, %v, %s) = %s, want %s", tt.ep, tt.insecure, tt.protocol, got, tt.want)
		}
	}
}

func FuzzFromEnv(f *testing.F) {
	f.Add("a=1,b=%20", "http://collector:4318", "0.5", "b3,tracecontext")
	f.Add("=,", "collector", "x", "none")
	f.Fuzz(func(t *testing.T, headers, endpoint, arg, props string) {
		cfg, err := FromEnv(envOf(map[string]string{
			"OTEL_EXPORTER_OTLP_HEADERS":  headers,
			"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
			"OTEL_TRACES_SAMPLER_ARG":     arg,
			"OTEL_PROPAGATORS":            props,
			"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
		}))
		if err != nil {
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("FromEnv accepted a Config that Validate rejects: %v", err)
		}
	})
}

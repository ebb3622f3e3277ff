package health_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/outrider-mesh/outrider/sidecar/health"
)

func TestFromConsul(t *testing.T) {
	tests := []struct {
		name string
		json string
		want health.Config
		err  string // the error's field and reason, "" for none
	}{
		{name: "absent", json: `null`},
		{name: "http defaults", json: `{"type": "http", "path": "/healthz"}`,
			want: health.Config{Type: health.HTTP, Path: "/healthz", ExpectedStatuses: []health.StatusRange{{Min: 200, Max: 299}},
				Interval: 10 * time.Second, Timeout: time.Second, HealthyThreshold: 2, UnhealthyThreshold: 3}},
		{name: "http everything", json: `{"type": "HTTP", "path": "/h?x=1", "host": "web.internal", "expected_statuses": [200, "300-399", " 418 "],
			"interval": "5s", "timeout": 250000000, "healthy_threshold": "1", "unhealthy_threshold": 5}`,
			want: health.Config{Type: health.HTTP, Path: "/h?x=1", Host: "web.internal",
				ExpectedStatuses: []health.StatusRange{{Min: 200, Max: 200}, {Min: 300, Max: 399}, {Min: 418, Max: 418}},
				Interval:         5 * time.Second, Timeout: 250 * time.Millisecond, HealthyThreshold: 1, UnhealthyThreshold: 5}},
		{name: "grpc", json: `{"type": "grpc", "service": "web.v1.Web", "host": "web"}`,
			want: health.Config{Type: health.GRPC, Service: "web.v1.Web", Host: "web",
				Interval: 10 * time.Second, Timeout: time.Second, HealthyThreshold: 2, UnhealthyThreshold: 3}},
		{name: "tcp", json: `{"type": "tcp", "interval": "1m"}`,
			want: health.Config{Type: health.TCP, Interval: time.Minute, Timeout: time.Second, HealthyThreshold: 2, UnhealthyThreshold: 3}},

		{name: "not an object", json: `"http"`, err: "health_check: want an object, got a string"},
		{name: "no type", json: `{"path": "/"}`, err: "health_check.type: required"},
		{name: "bad type", json: `{"type": "icmp"}`, err: `health_check.type: "icmp" is not http, grpc or tcp`},
		{name: "unknown key", json: `{"type": "tcp", "intervall": "5s"}`, err: "health_check.intervall: unknown setting"},
		{name: "http without path", json: `{"type": "http"}`, err: "health_check.path: want an absolute path"},
		{name: "relative path", json: `{"type": "http", "path": "healthz"}`, err: "health_check.path: want an absolute path"},
		{name: "path with a line break", json: `{"type": "http", "path": "/a\r\nX: y"}`, err: "health_check.path: path and host must not contain"},
		{name: "path for tcp", json: `{"type": "tcp", "path": "/"}`, err: "health_check.path: set for type tcp; it applies only to http"},
		{name: "service for http", json: `{"type": "http", "path": "/", "service": "x"}`, err: "health_check.service: set for type http; it applies only to grpc"},
		{name: "host for tcp", json: `{"type": "tcp", "host": "x"}`, err: "health_check.host: set for type tcp; it applies only to http and grpc"},
		{name: "statuses for grpc", json: `{"type": "grpc", "expected_statuses": [200]}`, err: "health_check.expected_statuses: set for type grpc"},
		{name: "bad interval", json: `{"type": "tcp", "interval": "often"}`, err: `health_check.interval: "often" is not a duration`},
		{name: "interval as a small number", json: `{"type": "tcp", "interval": 10}`, err: "health_check.interval: 10ns is below 1ms (a number is nanoseconds"},
		{name: "negative timeout", json: `{"type": "tcp", "timeout": "-1s"}`, err: "health_check.timeout: negative"},
		{name: "zero threshold", json: `{"type": "tcp", "healthy_threshold": 0}`, err: "health_check.healthy_threshold: want at least 1"},
		{name: "huge threshold", json: `{"type": "tcp", "unhealthy_threshold": 5000}`, err: "health_check.unhealthy_threshold: 5000 is above the limit 1000"},
		{name: "fractional threshold", json: `{"type": "tcp", "unhealthy_threshold": 1.5}`, err: "health_check.unhealthy_threshold: 1.5 is not a whole number"},
		{name: "status out of range", json: `{"type": "http", "path": "/", "expected_statuses": [99]}`, err: "health_check.expected_statuses[0]: 99-99 is not a range"},
		{name: "bad range", json: `{"type": "http", "path": "/", "expected_statuses": [200, "300-2xx"]}`, err: `health_check.expected_statuses[1]: "300-2xx" is not a status`},
		{name: "empty statuses", json: `{"type": "http", "path": "/", "expected_statuses": []}`, err: "health_check.expected_statuses: empty"},
		{name: "type not a string", json: `{"type": 1}`, err: "health_check.type: want a string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var v any
			if err := json.Unmarshal([]byte(tt.json), &v); err != nil {
				t.Fatal(err)
			}
			got, err := health.FromConsul(v)
			if tt.err != "" {
				var ce *health.ConfigError
				if !errors.As(err, &ce) || !strings.HasPrefix(ce.Field+": "+ce.Reason, tt.err) {
					t.Fatalf("error %v, want one starting with %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v\nwant %+v", got, tt.want)
			}
			if !got.Equal(tt.want) || got.Enabled() != (tt.want.Type != "") {
				t.Fatal("Equal or Enabled disagree")
			}
		})
	}
}

// FuzzFromConsul: any JSON value is accepted or rejected with a
// *ConfigError, never a panic, and an accepted one is valid.
func FuzzFromConsul(f *testing.F) {
	f.Add(`{"type": "http", "path": "/healthz", "expected_statuses": [200, "300-399"], "interval": "5s"}`)
	f.Add(`{"type": "grpc", "service": "x", "timeout": 1e9, "healthy_threshold": "3"}`)
	f.Add(`{"type": "tcp", "unhealthy_threshold": -1}`)
	f.Fuzz(func(t *testing.T, s string) {
		var v any
		if json.Unmarshal([]byte(s), &v) != nil {
			return
		}
		c, err := health.FromConsul(v)
		if err != nil {
			var ce *health.ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v is not a *ConfigError", err)
			}
			return
		}
		if c.Enabled() && (c.Interval < time.Millisecond || c.Timeout < time.Millisecond || c.HealthyThreshold == 0 || c.UnhealthyThreshold == 0) {
			t.Fatalf("accepted %+v", c)
		}
	})
}

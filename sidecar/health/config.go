package health

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/outrider-mesh/outrider/internal/confval"
)

// Type is the kind of probe.
type Type string

// The probe types.
const (
	// HTTP sends GET Path and expects one of ExpectedStatuses.
	HTTP Type = "http"
	// GRPC calls grpc.health.v1.Health/Check for Service and expects
	// SERVING.
	GRPC Type = "grpc"
	// TCP completes an mTLS handshake with the endpoint's sidecar.
	TCP Type = "tcp"
)

// Defaults, Envoy's usual values (Envoy itself has none: it requires them).
const (
	DefaultInterval           = 10 * time.Second
	DefaultTimeout            = time.Second
	DefaultHealthyThreshold   = 2
	DefaultUnhealthyThreshold = 3
	// minDuration is the least Interval and Timeout FromConsul accepts: a
	// number in the config map is nanoseconds, and "interval": 10 is a
	// mistake, not a wish for 10ns.
	minDuration = time.Millisecond
	// maxThreshold bounds the thresholds.
	maxThreshold = 1000
)

// Config is one upstream's active health check: the upstream Config
// key health_check. The zero value (Type "") is off.
type Config struct {
	// Type is http, grpc or tcp; "" turns checking off.
	Type Type `json:"type,omitempty"`
	// Path is the HTTP request path (http only; required), with an
	// optional query.
	Path string `json:"path,omitempty"`
	// Host is the Host header of HTTP probes and the :authority of gRPC
	// ones; "" means the upstream's name.
	Host string `json:"host,omitempty"`
	// ExpectedStatuses are the HTTP statuses that pass (http only);
	// empty means 200-299.
	ExpectedStatuses []StatusRange `json:"expected_statuses,omitempty"`
	// Service is the service name of the gRPC check request (grpc only);
	// "" asks about the server as a whole.
	Service string `json:"service,omitempty"`
	// Interval is the time between two probes of an endpoint, plus a
	// random jitter of up to a tenth of it. Default 10s.
	Interval time.Duration `json:"interval,omitempty"`
	// Timeout bounds one probe, connection included. Default 1s.
	Timeout time.Duration `json:"timeout,omitempty"`
	// HealthyThreshold is how many consecutive passing probes bring an
	// unhealthy endpoint back. Default 2.
	HealthyThreshold uint32 `json:"healthy_threshold,omitempty"`
	// UnhealthyThreshold is how many consecutive probes without an answer
	// (connect or TLS failure, reset, timeout, malformed answer) make a
	// healthy endpoint unhealthy. An answer that the endpoint is not
	// healthy (an unexpected HTTP status, a gRPC status other than
	// SERVING) makes it unhealthy at once, as in Envoy. Default 3.
	UnhealthyThreshold uint32 `json:"unhealthy_threshold,omitempty"`
}

// StatusRange is an inclusive range of HTTP statuses.
type StatusRange struct {
	Min int `json:"min"`
	Max int `json:"max"`
}

// Enabled reports whether c asks for checks.
func (c Config) Enabled() bool { return c.Type != "" }

// WithDefaults returns c with every zero setting at its default.
func (c Config) WithDefaults() Config {
	c.Interval = cmp.Or(c.Interval, DefaultInterval)
	c.Timeout = cmp.Or(c.Timeout, DefaultTimeout)
	c.HealthyThreshold = cmp.Or(c.HealthyThreshold, DefaultHealthyThreshold)
	c.UnhealthyThreshold = cmp.Or(c.UnhealthyThreshold, DefaultUnhealthyThreshold)
	if c.Type == HTTP && len(c.ExpectedStatuses) == 0 {
		c.ExpectedStatuses = []StatusRange{{200, 299}}
	}
	return c
}

// Equal reports whether a and b configure the same checks.
func (c Config) Equal(o Config) bool {
	return c.Type == o.Type && c.Path == o.Path && c.Host == o.Host && c.Service == o.Service &&
		c.Interval == o.Interval && c.Timeout == o.Timeout && c.HealthyThreshold == o.HealthyThreshold &&
		c.UnhealthyThreshold == o.UnhealthyThreshold && slices.Equal(c.ExpectedStatuses, o.ExpectedStatuses)
}

// expected reports whether an HTTP status passes.
func (c *Config) expected(status int) bool {
	for _, r := range c.ExpectedStatuses {
		if status >= r.Min && status <= r.Max {
			return true
		}
	}
	return false
}

// ConfigError is a health_check setting that is not valid.
type ConfigError struct {
	Field  string // e.g. "health_check.interval"
	Reason string
}

func (e *ConfigError) Error() string { return "health: " + e.Field + ": " + e.Reason }

func errField(field, format string, args ...any) error {
	return &ConfigError{Field: "health_check" + field, Reason: fmt.Sprintf(format, args...)}
}

// keys are the settings FromConsul knows.
var keys = []string{"type", "path", "host", "expected_statuses", "service", "interval", "timeout",
	"healthy_threshold", "unhealthy_threshold"}

// FromConsul reads an upstream's Config["health_check"] as the agent hands
// it over (decoded JSON or HCL): an object whose keys are those of Config's
// JSON form. nil is off. Durations are Go duration strings ("5s") or whole
// numbers of nanoseconds, as passive_health_check's; counts are whole
// numbers, also as strings. ExpectedStatuses is a list of statuses (200)
// and inclusive ranges ("200-299"). Unknown keys, settings that do not
// apply to the type and values out of range are errors; the error, a
// *ConfigError, names the field (health_check.interval). The result has
// its defaults applied.
func FromConsul(v any) (Config, error) {
	if v == nil {
		return Config{}, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return Config{}, errField("", "want an object, got %s", confval.Kind(v))
	}
	for k := range m {
		if !slices.Contains(keys, k) {
			return Config{}, errField("."+k, "unknown setting (want one of %s)", strings.Join(keys, ", "))
		}
	}
	str := func(key string) (string, error) {
		switch s := m[key].(type) {
		case nil:
			return "", nil
		case string:
			return s, nil
		default:
			return "", errField("."+key, "want a string, got %s", confval.Kind(s))
		}
	}
	var c Config
	t, err := str("type")
	if err != nil {
		return Config{}, err
	}
	c.Type = Type(strings.ToLower(t))
	switch c.Type {
	case HTTP, GRPC, TCP:
	case "":
		return Config{}, errField(".type", "required: http, grpc or tcp")
	default:
		return Config{}, errField(".type", "%q is not http, grpc or tcp", t)
	}
	if c.Path, err = str("path"); err != nil {
		return Config{}, err
	}
	if c.Host, err = str("host"); err != nil {
		return Config{}, err
	}
	if c.Service, err = str("service"); err != nil {
		return Config{}, err
	}
	if c.ExpectedStatuses, err = statusesValue(m["expected_statuses"]); err != nil {
		return Config{}, err
	}
	only := func(set bool, key string, types ...Type) error {
		if set && !slices.Contains(types, c.Type) {
			return errField("."+key, "set for type %s; it applies only to %s", c.Type, strings.Join(typeNames(types), " and "))
		}
		return nil
	}
	for _, e := range []error{only(c.Path != "", "path", HTTP), only(len(c.ExpectedStatuses) > 0, "expected_statuses", HTTP),
		only(c.Service != "", "service", GRPC), only(c.Host != "", "host", HTTP, GRPC)} {
		if e != nil {
			return Config{}, e
		}
	}
	if c.Type == HTTP && !strings.HasPrefix(c.Path, "/") {
		return Config{}, errField(".path", "want an absolute path such as \"/healthz\", got %q", c.Path)
	}
	if strings.ContainsAny(c.Path+c.Host, " \r\n\t") {
		return Config{}, errField(".path", "path and host must not contain spaces or line breaks")
	}
	for _, d := range []struct {
		key string
		to  *time.Duration
	}{{"interval", &c.Interval}, {"timeout", &c.Timeout}} {
		v, ok := m[d.key]
		if !ok || v == nil {
			continue
		}
		x, err := confval.Duration(v)
		if err != nil {
			return Config{}, errField("."+d.key, "%s", err)
		}
		if x < minDuration {
			return Config{}, errField("."+d.key, "%s is below 1ms (a number is nanoseconds; write a duration such as \"5s\")", x)
		}
		*d.to = x
	}
	for _, n := range []struct {
		key string
		to  *uint32
	}{{"healthy_threshold", &c.HealthyThreshold}, {"unhealthy_threshold", &c.UnhealthyThreshold}} {
		v, ok := m[n.key]
		if !ok || v == nil {
			continue
		}
		x, err := confval.Count(v, maxThreshold)
		if err != nil {
			return Config{}, errField("."+n.key, "%s", err)
		}
		if x == 0 {
			return Config{}, errField("."+n.key, "want at least 1")
		}
		*n.to = x
	}
	return c.WithDefaults(), nil
}

func typeNames(ts []Type) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = string(t)
	}
	return out
}

// statusesValue reads expected_statuses: a list of statuses and
// "min-max" ranges.
func statusesValue(v any) ([]StatusRange, error) {
	if v == nil {
		return nil, nil
	}
	list, ok := v.([]any)
	if !ok {
		return nil, errField(".expected_statuses", "want a list of statuses and ranges such as \"200-299\", got %s", confval.Kind(v))
	}
	out := make([]StatusRange, 0, len(list))
	for i, e := range list {
		field := ".expected_statuses[" + strconv.Itoa(i) + "]"
		var r StatusRange
		if s, ok := e.(string); ok {
			lo, hi, isRange := strings.Cut(strings.TrimSpace(s), "-")
			a, errA := strconv.Atoi(strings.TrimSpace(lo))
			b, errB := a, error(nil)
			if isRange {
				b, errB = strconv.Atoi(strings.TrimSpace(hi))
			}
			if errA != nil || errB != nil {
				return nil, errField(field, "%q is not a status or a range such as \"200-299\"", s)
			}
			r = StatusRange{a, b}
		} else {
			n, err := confval.Count(e, math.MaxInt32)
			if err != nil {
				return nil, errField(field, "%s", err)
			}
			r = StatusRange{int(n), int(n)}
		}
		if r.Min < 100 || r.Max > 599 || r.Min > r.Max {
			return nil, errField(field, "%d-%d is not a range of HTTP statuses (100 to 599)", r.Min, r.Max)
		}
		out = append(out, r)
	}
	if len(out) == 0 {
		return nil, errField(".expected_statuses", "empty: no answer could pass")
	}
	return out, nil
}

package tracing

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Protocols accepted in Config.Protocol.
const (
	ProtocolGRPC = "grpc"
	ProtocolHTTP = "http/protobuf"
)

// Compressions accepted in Config.Compression.
const (
	CompressionNone = "none"
	CompressionGzip = "gzip"
)

// Samplers accepted in Config.Sampler.
const (
	SamplerAlwaysOn                = "always_on"
	SamplerAlwaysOff               = "always_off"
	SamplerTraceIDRatio            = "traceidratio"
	SamplerParentBasedAlwaysOn     = "parentbased_always_on"
	SamplerParentBasedAlwaysOff    = "parentbased_always_off"
	SamplerParentBasedTraceIDRatio = "parentbased_traceidratio"
)

// Defaults applied by FromEnv, and by New to zero fields.
const (
	DefaultProtocol      = ProtocolGRPC
	DefaultSampler       = SamplerParentBasedAlwaysOn
	DefaultMaxQueueSize  = 2048
	DefaultExportTimeout = 10 * time.Second

	defaultGRPCEndpoint = "localhost:4317"
	defaultHTTPEndpoint = "localhost:4318"
	httpTracesPath      = "/v1/traces"
)

// DefaultPropagators is the propagator list used when Config.Propagators is
// nil. It returns a new slice on each call.
func DefaultPropagators() []string { return []string{"tracecontext", "baggage"} }

// Config is tracing's configuration. FromEnv fills it from the standard
// OTEL_* variables; the CLI then overrides fields from flags. The zero Config
// is valid and means tracing off with the default propagators.
type Config struct {
	// Enabled false: no spans are recorded or exported (propagation still
	// works, see Tracing).
	Enabled bool
	// Endpoint is the OTLP collector: a URL ("http://collector:4317",
	// "https://collector:4318/v1/traces") or, without a scheme, host:port.
	// An http:// URL means plaintext and https:// TLS whatever Insecure says;
	// without a scheme, Insecure decides. For http/protobuf an empty path
	// means /v1/traces. "" means localhost:4317 (grpc) or localhost:4318
	// (http/protobuf). From OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or
	// OTEL_EXPORTER_OTLP_ENDPOINT; setting either enables tracing.
	Endpoint string
	// Protocol is "grpc" (default) or "http/protobuf"
	// (OTEL_EXPORTER_OTLP_TRACES_PROTOCOL / OTEL_EXPORTER_OTLP_PROTOCOL).
	Protocol string
	// Insecure selects plaintext for an Endpoint without a scheme
	// (OTEL_EXPORTER_OTLP_INSECURE / _TRACES_INSECURE, or an http:// endpoint).
	Insecure bool
	// Headers are sent with every export, e.g. an API key
	// (OTEL_EXPORTER_OTLP_HEADERS / _TRACES_HEADERS: k=v,k2=v2, URL-decoded).
	// Their values are never logged nor shown by Describe.
	Headers map[string]string
	// ServiceName is the resource's service.name (OTEL_SERVICE_NAME); ""
	// means the caller's default (the proxied service's name).
	ServiceName string
	// Attributes are extra resource attributes (OTEL_RESOURCE_ATTRIBUTES:
	// k=v,k2=v2, URL-decoded).
	Attributes map[string]string
	// Sampler is one of always_on, always_off, traceidratio,
	// parentbased_always_on (default, also for ""), parentbased_always_off,
	// parentbased_traceidratio (OTEL_TRACES_SAMPLER).
	Sampler string
	// SamplerArg is the ratio (0..1) of the traceidratio samplers
	// (OTEL_TRACES_SAMPLER_ARG). FromEnv defaults it to 1; New uses it as is,
	// so a hand-built Config with a ratio sampler and SamplerArg 0 samples
	// no root span.
	SamplerArg float64
	// Propagators are the header formats extracted and injected
	// (OTEL_PROPAGATORS): tracecontext, baggage, b3 (single header), b3multi,
	// none. nil means DefaultPropagators (tracecontext,baggage); "none", alone
	// or not, means no propagation.
	Propagators []string
	// MaxQueueSize is the number of ended spans buffered for export (default
	// 2048, also for 0; OTEL_BSP_MAX_QUEUE_SIZE); beyond it spans are dropped
	// and counted in Stats.Dropped.
	MaxQueueSize int
	// ExportTimeout bounds one export call (default 10s, also for 0;
	// OTEL_EXPORTER_OTLP_TRACES_TIMEOUT, OTEL_EXPORTER_OTLP_TIMEOUT or
	// OTEL_BSP_EXPORT_TIMEOUT, in milliseconds).
	ExportTimeout time.Duration
	// Certificate is a PEM file of the CA certificates that verify the
	// collector (OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE /
	// OTEL_EXPORTER_OTLP_CERTIFICATE); "" means the system roots.
	Certificate string
	// ClientCertificate and ClientKey are PEM files of the client
	// certificate and key presented to the collector, for mTLS
	// (OTEL_EXPORTER_OTLP_[TRACES_]CLIENT_CERTIFICATE, _CLIENT_KEY).
	ClientCertificate string
	ClientKey         string
	// Compression of export requests: "gzip", or "none"/"" (the default:
	// on a loopback or cluster network compression costs more CPU than it
	// saves; OTEL_EXPORTER_OTLP_[TRACES_]COMPRESSION).
	Compression string
}

// FromEnv reads the standard OTEL_* variables (listed in the package doc)
// through getenv: os.Getenv in production, a map lookup in tests. Variables
// that are unset or blank leave the defaults. OTEL_SDK_DISABLED=true and
// OTEL_TRACES_EXPORTER=none disable tracing even when an endpoint is set.
//
// Every error names the variable and the bad value (header values excepted);
// all bad variables are reported at once (errors.Join).
func FromEnv(getenv func(string) string) (Config, error) {
	cfg := Config{
		Protocol:      DefaultProtocol,
		Sampler:       DefaultSampler,
		SamplerArg:    1,
		Propagators:   DefaultPropagators(),
		MaxQueueSize:  DefaultMaxQueueSize,
		ExportTimeout: DefaultExportTimeout,
	}
	env := envReader{getenv: getenv}

	if name, v := env.first("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"); v != "" {
		if err := checkProtocol(v); err != nil {
			env.fail(name, v, err)
		} else {
			cfg.Protocol = v
		}
	}

	if name, v := env.first("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"); v != "" {
		if _, err := parseEndpoint(v, false, cfg.Protocol); err != nil {
			env.fail(name, v, err)
		} else {
			cfg.Enabled = true
			cfg.Endpoint = v
			if name == "OTEL_EXPORTER_OTLP_ENDPOINT" && cfg.Protocol == ProtocolHTTP {
				// The generic variable is a base URL: the signal path is appended.
				cfg.Endpoint = strings.TrimSuffix(v, "/") + httpTracesPath
			}
			if strings.HasPrefix(strings.ToLower(v), "http://") {
				cfg.Insecure = true
			}
		}
	}

	if name, v := env.first("OTEL_EXPORTER_OTLP_TRACES_INSECURE", "OTEL_EXPORTER_OTLP_INSECURE"); v != "" {
		if b, ok := parseBool(v); !ok {
			env.fail(name, v, errWantBool)
		} else if b {
			cfg.Insecure = true
		}
	}

	if name, v := env.first("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"); v != "" {
		h, err := parseKeyValues(v)
		if err != nil {
			// The value is a credential: name the variable, not the value.
			env.errs = append(env.errs, fmt.Errorf("tracing: %s: %w", name, err))
		} else {
			cfg.Headers = h
		}
	}

	for _, f := range []struct {
		dst   *string
		names []string
	}{
		{&cfg.Certificate, []string{"OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", "OTEL_EXPORTER_OTLP_CERTIFICATE"}},
		{&cfg.ClientCertificate, []string{"OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE", "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"}},
		{&cfg.ClientKey, []string{"OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", "OTEL_EXPORTER_OTLP_CLIENT_KEY"}},
	} {
		_, *f.dst = env.first(f.names...)
	}
	if name, v := env.first("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION"); v != "" {
		if err := checkCompression(v); err != nil {
			env.fail(name, v, err)
		} else {
			cfg.Compression = v
		}
	}

	if name, v := env.first("OTEL_RESOURCE_ATTRIBUTES"); v != "" {
		a, err := parseKeyValues(v)
		if err != nil {
			env.fail(name, v, err)
		} else {
			cfg.Attributes = a
		}
	}
	if _, v := env.first("OTEL_SERVICE_NAME"); v != "" {
		cfg.ServiceName = v
	} else if n := cfg.Attributes["service.name"]; n != "" {
		cfg.ServiceName = n
	}

	if name, v := env.first("OTEL_TRACES_SAMPLER"); v != "" {
		if err := checkSampler(v); err != nil {
			env.fail(name, v, err)
		} else {
			cfg.Sampler = v
		}
	}
	if name, v := env.first("OTEL_TRACES_SAMPLER_ARG"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || checkRatio(f) != nil {
			env.fail(name, v, errWantRatio)
		} else {
			cfg.SamplerArg = f
		}
	}

	if name, v := env.first("OTEL_PROPAGATORS"); v != "" {
		var list []string
		for p := range strings.SplitSeq(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				list = append(list, p)
			}
		}
		if err := checkPropagators(list); err != nil {
			env.fail(name, v, err)
		} else {
			cfg.Propagators = list
		}
	}

	if name, v := env.first("OTEL_BSP_MAX_QUEUE_SIZE"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			env.fail(name, v, errors.New("want a positive integer"))
		} else {
			cfg.MaxQueueSize = n
		}
	}
	if name, v := env.first("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_BSP_EXPORT_TIMEOUT"); v != "" {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil || ms <= 0 || ms > math.MaxInt64/int64(time.Millisecond) {
			env.fail(name, v, errors.New("want a positive number of milliseconds"))
		} else {
			cfg.ExportTimeout = time.Duration(ms) * time.Millisecond
		}
	}

	if name, v := env.first("OTEL_TRACES_EXPORTER"); v != "" {
		switch v {
		case "otlp":
			cfg.Enabled = true
		case "none":
			cfg.Enabled = false
		default:
			env.fail(name, v, errors.New(`want "otlp" or "none"`))
		}
	}
	if name, v := env.first("OTEL_SDK_DISABLED"); v != "" {
		if b, ok := parseBool(v); !ok {
			env.fail(name, v, errWantBool)
		} else if b {
			cfg.Enabled = false
		}
	}

	if len(env.errs) > 0 {
		return Config{}, errors.Join(env.errs...)
	}
	return cfg, nil
}

// envReader reads variables and collects errors naming them.
type envReader struct {
	getenv func(string) string
	errs   []error
}

// first returns the first of names whose value is not blank, and that value
// trimmed; ("", "") when all are blank.
func (e *envReader) first(names ...string) (name, value string) {
	for _, n := range names {
		if v := strings.TrimSpace(e.getenv(n)); v != "" {
			return n, v
		}
	}
	return "", ""
}

func (e *envReader) fail(name, value string, err error) {
	e.errs = append(e.errs, fmt.Errorf("tracing: %s: %w, got %q", name, err, value))
}

var (
	errWantBool  = errors.New(`want "true" or "false"`)
	errWantRatio = errors.New("want a number between 0 and 1")
)

// parseBool accepts "true" and "false" in any case, as the OTel spec does.
func parseBool(v string) (value, ok bool) {
	switch {
	case strings.EqualFold(v, "true"):
		return true, true
	case strings.EqualFold(v, "false"):
		return false, true
	}
	return false, false
}

// parseKeyValues parses the W3C-baggage-like list used by
// OTEL_EXPORTER_OTLP_HEADERS and OTEL_RESOURCE_ATTRIBUTES: k=v pairs
// separated by commas, keys and values trimmed and URL-decoded, empty entries
// skipped. Errors never quote the input (it may hold credentials).
func parseKeyValues(s string) (map[string]string, error) {
	m := make(map[string]string)
	for i, entry := range strings.Split(s, ",") {
		if strings.TrimSpace(entry) == "" {
			continue
		}
		k, v, ok := strings.Cut(entry, "=")
		if !ok {
			return nil, fmt.Errorf("entry %d: want key=value", i+1)
		}
		key, err1 := url.PathUnescape(strings.TrimSpace(k))
		val, err2 := url.PathUnescape(strings.TrimSpace(v))
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("entry %d: bad %%-escape", i+1)
		}
		if key == "" {
			return nil, fmt.Errorf("entry %d: empty key", i+1)
		}
		m[key] = val
	}
	return m, nil
}

func checkProtocol(p string) error {
	switch p {
	case ProtocolGRPC, ProtocolHTTP:
		return nil
	}
	return fmt.Errorf("want %q or %q", ProtocolGRPC, ProtocolHTTP)
}

func checkCompression(c string) error {
	if c == "" || c == CompressionNone || c == CompressionGzip {
		return nil
	}
	return errors.New(`want "gzip" or "none"`)
}

func checkSampler(s string) error {
	switch s {
	case SamplerAlwaysOn, SamplerAlwaysOff, SamplerTraceIDRatio,
		SamplerParentBasedAlwaysOn, SamplerParentBasedAlwaysOff, SamplerParentBasedTraceIDRatio:
		return nil
	}
	return errors.New("want always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio")
}

func checkRatio(f float64) error {
	if math.IsNaN(f) || f < 0 || f > 1 {
		return errWantRatio
	}
	return nil
}

// parseEndpoint resolves an endpoint as documented on Config.Endpoint into
// the URL handed to the exporter: scheme http (plaintext) or https, a host,
// and for http/protobuf a path.
func parseEndpoint(ep string, insecure bool, protocol string) (*url.URL, error) {
	if ep == "" {
		ep = defaultGRPCEndpoint
		if protocol == ProtocolHTTP {
			ep = defaultHTTPEndpoint
		}
	}
	if !strings.Contains(ep, "://") {
		scheme := "https"
		if insecure {
			scheme = "http"
		}
		ep = scheme + "://" + ep
	}
	u, err := url.Parse(ep)
	if err != nil {
		return nil, errors.New("want a URL or host:port")
	}
	u.Scheme = strings.ToLower(u.Scheme)
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, errors.New("want an http:// or https:// URL, or host:port")
	}
	if u.Hostname() == "" {
		return nil, errors.New("want a URL or host:port with a host")
	}
	if protocol == ProtocolHTTP && (u.Path == "" || u.Path == "/") {
		u.Path = httpTracesPath
	}
	return u, nil
}

// applyDefaults returns cfg with the documented defaults in its zero fields.
func (cfg Config) applyDefaults() Config {
	if cfg.Protocol == "" {
		cfg.Protocol = DefaultProtocol
	}
	if cfg.Sampler == "" {
		cfg.Sampler = DefaultSampler
	}
	if cfg.Propagators == nil {
		cfg.Propagators = DefaultPropagators()
	}
	if cfg.MaxQueueSize == 0 {
		cfg.MaxQueueSize = DefaultMaxQueueSize
	}
	if cfg.ExportTimeout == 0 {
		cfg.ExportTimeout = DefaultExportTimeout
	}
	return cfg
}

// Validate reports every bad field of cfg, naming the field. Fields that
// only matter when tracing is enabled are checked only then; Propagators
// always are. New calls it.
func (cfg Config) Validate() error {
	cfg = cfg.applyDefaults()
	var errs []error
	bad := func(field string, value any, err error) {
		errs = append(errs, fmt.Errorf("tracing: %s: %w, got %#v", field, err, value))
	}
	if err := checkPropagators(cfg.Propagators); err != nil {
		bad("Propagators", cfg.Propagators, err)
	}
	if cfg.Enabled {
		if err := checkProtocol(cfg.Protocol); err != nil {
			bad("Protocol", cfg.Protocol, err)
		} else if _, err := parseEndpoint(cfg.Endpoint, cfg.Insecure, cfg.Protocol); err != nil {
			bad("Endpoint", cfg.Endpoint, err)
		}
		if err := checkSampler(cfg.Sampler); err != nil {
			bad("Sampler", cfg.Sampler, err)
		}
		if err := checkRatio(cfg.SamplerArg); err != nil {
			bad("SamplerArg", cfg.SamplerArg, err)
		}
		if cfg.MaxQueueSize < 0 {
			bad("MaxQueueSize", cfg.MaxQueueSize, errors.New("want a positive integer"))
		}
		if cfg.ExportTimeout < 0 {
			bad("ExportTimeout", cfg.ExportTimeout.String(), errors.New("want a positive duration"))
		}
		if err := checkCompression(cfg.Compression); err != nil {
			bad("Compression", cfg.Compression, err)
		}
		if (cfg.ClientCertificate == "") != (cfg.ClientKey == "") {
			bad("ClientCertificate", cfg.ClientCertificate, errors.New("set with ClientKey, or neither"))
		}
	}
	return errors.Join(errs...)
}

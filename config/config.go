package config

import (
	"text/template"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Defaults filled in by Load and Parse for keys the file leaves out.
const (
	DefaultPublicProtocol      = TCP
	DefaultLocalConnectTimeout = time.Second
	DefaultHandshakeTimeout    = 10 * time.Second
	DefaultLocalRequestTimeout = 15 * time.Second
	DefaultMaxHeaderBytes      = 64 << 10
	DefaultConnectTimeout      = 5 * time.Second
	DefaultL4BalancePolicy     = RoundRobin   // upstreams with protocol tcp
	DefaultL7BalancePolicy     = LeastRequest // http, http2 and grpc
	DefaultWeight              = 1
	DefaultAdminBind           = "127.0.0.1:19000"
	DefaultAccessLogPath       = "-"
	DefaultAccessLogFormat     = "json"
)

// Bounds enforced by Validate.
const (
	minHeaderBytes = 1 << 10
	maxHeaderBytes = 1 << 20
	maxWeight      = 1000
)

// File is the static-mode configuration file, outrider.yaml.
type File struct {
	// Service is the local service's name, used in logs, metrics and
	// traces, and the name the Consul identity is issued for. Required;
	// letters, digits, '.', '-' and '_'.
	Service string `yaml:"service"`
	// Identity is where the sidecar's X.509 SVID and trust bundles come
	// from. Required.
	Identity Identity `yaml:"identity"`
	// Consul is the Consul agent to talk to. Required by consul identity,
	// consul discovery and consul intentions; otherwise unused.
	Consul *Consul `yaml:"consul"`
	// Public is the mTLS listener other sidecars connect to. nil: no
	// inbound traffic (an egress-only sidecar).
	Public *Public `yaml:"public"`
	// Upstreams are the plaintext listeners the application dials, one per
	// destination service.
	Upstreams []Upstream `yaml:"upstreams"`
	// Authorization decides which peers may connect to Public.
	Authorization Authorization `yaml:"authorization"`
	// Admin is the admin HTTP endpoint (/ready, /config_dump, /metrics).
	Admin Admin `yaml:"admin"`
	// Telemetry configures traces and the access log. The process's OTEL_*
	// environment variables and command-line flags win over it.
	Telemetry Telemetry `yaml:"telemetry"`

	// name and keys come from Parse: the file name and each key path
	// written in the file, for error messages and for telling a value
	// written as zero from a key left out (applyDefaults).
	name string
	keys map[string]keyInfo
}

// keyInfo is where a key path was written in the file.
type keyInfo struct {
	line int
	null bool // written with no value (or null)
}

// Identity selects exactly one source of the sidecar's SVID and bundles.
type Identity struct {
	// SPIFFE reads the SVID and bundles from the SPIFFE Workload API
	// (a SPIRE agent), following rotations.
	SPIFFE *SPIFFEIdentity `yaml:"spiffe"`
	// Files reads the SVID and bundles from PEM files.
	Files *FilesIdentity `yaml:"files"`
	// Consul uses a Consul Connect CA leaf certificate for Service and the
	// Connect CA roots, following rotations. Needs the consul section.
	Consul *ConsulIdentity `yaml:"consul"`
}

// SPIFFEIdentity is the SPIFFE Workload API source.
type SPIFFEIdentity struct {
	// Socket is the Workload API address, unix:///path or tcp://ip:port.
	// Empty: the SPIFFE_ENDPOINT_SOCKET environment variable (resolved by
	// the caller).
	Socket string `yaml:"socket"`
	// Hint selects the SVID whose registration entry carries this hint
	// (SPIRE `entry create -hint`), for a workload that matches several
	// entries. Empty: the first SVID the agent sends.
	Hint string `yaml:"hint"`
}

// FilesIdentity is an SVID and bundles read from files. Relative paths are
// relative to the sidecar's working directory.
type FilesIdentity struct {
	// Cert is the PEM certificate chain, leaf first; the leaf carries the
	// sidecar's SPIFFE ID. Required.
	Cert string `yaml:"cert"`
	// Key is the PEM private key of the leaf. Required.
	Key string `yaml:"key"`
	// Bundles maps a trust domain name (example.org) to the files holding
	// its roots: PEM certificates or a SPIFFE JSON bundle. At least one.
	// Peers are verified against the bundle of their own trust domain.
	Bundles map[string]Paths `yaml:"bundles"`
}

// Paths is a list of file paths. In YAML it is a list or, for one path, a
// plain string.
type Paths []string

// ConsulIdentity is the Consul Connect CA source. It has no settings: the
// certificate is issued for File.Service by the agent in File.Consul.
type ConsulIdentity struct{}

// Consul is how to reach the Consul agent. Empty keys fall back to the
// standard CONSUL_HTTP_* environment variables and the consul/api defaults,
// as the consul CLI does.
type Consul struct {
	// Address is the agent's HTTP API: host:port, http(s)://host:port or
	// unix:///path. Empty: CONSUL_HTTP_ADDR, else 127.0.0.1:8500.
	Address string `yaml:"address"`
	// Datacenter is the datacenter queries go to. Empty: the agent's.
	Datacenter string `yaml:"datacenter"`
	// TokenFile is a file holding the ACL token. Empty:
	// CONSUL_HTTP_TOKEN_FILE or CONSUL_HTTP_TOKEN.
	TokenFile string `yaml:"token_file"`
	// TLS configures HTTPS to the agent. nil: the CONSUL_CACERT,
	// CONSUL_CLIENT_CERT, ... variables.
	TLS *ConsulTLS `yaml:"tls"`
}

// ConsulTLS is the TLS configuration for an HTTPS agent address.
type ConsulTLS struct {
	// CAFile is the PEM CA bundle that verifies the agent. Empty: the
	// system roots.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a PEM client certificate and key, when the
	// agent verifies clients. Both or neither.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName is the name verified in the agent's certificate. Empty:
	// the host of Address.
	ServerName string `yaml:"server_name"`
}

// Protocol is an L4 or L7 protocol as Consul names it in service-defaults.
type Protocol string

// The protocols a listener can speak.
const (
	TCP   Protocol = "tcp"
	HTTP  Protocol = "http"
	HTTP2 Protocol = "http2"
	GRPC  Protocol = "grpc"
)

// L7 reports whether the protocol is proxied per request.
func (p Protocol) L7() bool { return p == HTTP || p == HTTP2 || p == GRPC }

// Public is the inbound listener: mTLS in, plaintext to the application.
type Public struct {
	// Bind is host:port the listener binds, e.g. 0.0.0.0:20000. Required.
	Bind string `yaml:"bind"`
	// LocalService is host:port of the application, e.g. 127.0.0.1:8080.
	// Required.
	LocalService string `yaml:"local_service"`
	// Protocol is the application's protocol: tcp (default), http, http2
	// or grpc. With http, http2 and grpc requests are proxied one by one.
	Protocol Protocol `yaml:"protocol"`
	// LocalConnectTimeout bounds the dial to the application. Default 1s.
	LocalConnectTimeout time.Duration `yaml:"local_connect_timeout"`
	// HandshakeTimeout bounds a client's TLS handshake. Default 10s.
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"`
	// LocalRequestTimeout bounds how long an HTTP request waits for the
	// application's response head; then the caller gets 504. Default 15s.
	LocalRequestTimeout time.Duration `yaml:"local_request_timeout"`
	// MaxHeaderBytes bounds an HTTP request head; larger heads get 431.
	// Default 65536, between 1024 and 1048576.
	MaxHeaderBytes int `yaml:"max_header_bytes"`
}

// Upstream is one outbound listener: plaintext in from the application,
// mTLS out to an instance of the destination service.
type Upstream struct {
	// Name is the destination service's name, used in logs and metrics and
	// as the Consul service name by default. Required and unique among
	// upstreams; letters, digits, '.', '-' and '_'.
	Name string `yaml:"name"`
	// Bind is host:port the application dials, e.g. 127.0.0.1:9191.
	// Required; no two listeners of the file may share it.
	Bind string `yaml:"bind"`
	// Protocol is the destination's protocol: tcp (default), http, http2 or
	// grpc.
	Protocol Protocol `yaml:"protocol"`
	// ConnectTimeout bounds the connect plus TLS handshake to an endpoint.
	// Default 5s.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// LoadBalancer picks the endpoint of each connection (tcp) or request
	// (http, http2, grpc).
	LoadBalancer LoadBalancer `yaml:"load_balancer"`
	// Endpoints lists the destination's instances (static discovery).
	// Exactly one of Endpoints and Consul is set.
	Endpoints []Endpoint `yaml:"endpoints"`
	// Consul discovers the destination's healthy instances in Consul.
	// Needs the top-level consul section.
	Consul *ConsulDiscovery `yaml:"consul"`
}

// The load-balancing policies.
const (
	RoundRobin   = "round_robin"
	LeastRequest = "least_request"
	RingHash     = "ring_hash"
	Maglev       = "maglev"
	Random       = "random"
)

// LoadBalancer is an upstream's load-balancing policy. The hash keys apply
// to ring_hash and maglev only, which need exactly one of them.
type LoadBalancer struct {
	// Policy is round_robin, least_request, ring_hash, maglev or random.
	// Default: round_robin for tcp, least_request for http, http2 and
	// grpc (the sidecar's defaults, as in the Consul mode without a
	// service-resolver).
	Policy string `yaml:"policy"`
	// HashHeader hashes requests by this request header's value (http,
	// http2 and grpc only).
	HashHeader string `yaml:"hash_header"`
	// HashCookie hashes requests by a cookie (http, http2 and grpc only).
	HashCookie *HashCookie `yaml:"hash_cookie"`
	// HashSourceIP hashes by the client's IP address.
	HashSourceIP bool `yaml:"hash_source_ip"`
}

// HashCookie is the cookie a hashing load balancer keys on.
type HashCookie struct {
	// Name is the cookie's name. Required.
	Name string `yaml:"name"`
	// TTL, when positive, makes the sidecar set the cookie with this
	// lifetime on responses to requests that lack it. 0 (default): the
	// cookie is read, never set.
	TTL time.Duration `yaml:"ttl"`
	// Path is the Path attribute of a cookie the sidecar sets (TTL > 0).
	Path string `yaml:"path"`
}

// Endpoint is one static instance of an upstream.
type Endpoint struct {
	// Address is host:port of the instance's sidecar public listener.
	// Required.
	Address string `yaml:"address"`
	// SPIFFEID is the identity the instance must present; a connection to
	// an instance presenting any other identity is refused. Required.
	SPIFFEID spiffeid.ID `yaml:"spiffe_id"`
	// Weight is the instance's relative share of new connections or
	// requests, 1 to 1000. Default 1.
	Weight int `yaml:"weight"`
}

// ConsulDiscovery finds an upstream's healthy instances in Consul's
// catalog (the sidecar registrations of the service).
type ConsulDiscovery struct {
	// Service is the Consul service name. Default: the upstream's Name.
	Service string `yaml:"service"`
	// Datacenter to look in. Empty: the consul section's, else the agent's.
	Datacenter string `yaml:"datacenter"`
	// Namespace of the service (Consul Enterprise). Empty: the ACL token's
	// namespace, "default" in Consul CE.
	Namespace string `yaml:"namespace"`
	// SPIFFEID is a text/template that renders the SPIFFE ID each instance
	// must present, from the Instance fields .Service, .Namespace,
	// .Datacenter, .Node, .Partition and .Meta (a map; a key the instance
	// lacks is an error), e.g.
	// "spiffe://example.org/ns/{{.Namespace}}/sa/{{.Service}}". Empty:
	// Consul's own format, for services whose identity is a Consul CA
	// certificate.
	SPIFFEID string `yaml:"spiffe_id"`
	// SPIFFEIDMeta names a service-meta key: an instance that has it must
	// present the SPIFFE ID it holds, whatever SPIFFEID says.
	SPIFFEIDMeta string `yaml:"spiffe_id_meta"`

	// tmpl is tmplSrc, the SPIFFEID Parse read, compiled. ExpectedID
	// compiles SPIFFEID on each call when it is not tmplSrc (a
	// ConsulDiscovery built or changed in code).
	tmpl    *template.Template
	tmplSrc string
}

// The authorization actions.
const (
	Allow = "allow"
	Deny  = "deny"
)

// Authorization is the inbound policy: either Rules and Default, or Consul
// intentions.
type Authorization struct {
	// Default is the action when no rule matches: deny (default) or allow.
	// Not used with ConsulIntentions, where Consul's default policy applies.
	Default string `yaml:"default"`
	// Rules are tried in order; the first whose matchers all match the
	// peer's SPIFFE ID decides.
	Rules []Rule `yaml:"rules"`
	// ConsulIntentions, when true, authorizes with the Consul intentions of
	// File.Service instead of Rules. Needs the consul section and consul
	// identity; exclusive with Rules.
	ConsulIntentions bool `yaml:"consul_intentions"`
}

// Rule is one authorization rule. In YAML it is a mapping with one key, the
// action, whose value holds the matchers:
//
//	rules:
//	  - allow: {trust_domain: example.org, path_prefix: /billing/}
//
// A rule has SPIFFEID alone, or TrustDomain with an optional PathPrefix.
type Rule struct {
	// Action is Allow or Deny.
	Action string `yaml:"-"`
	// SPIFFEID matches this exact SPIFFE ID.
	SPIFFEID string `yaml:"spiffe_id"`
	// TrustDomain matches every ID in this trust domain (a name such as
	// example.org).
	TrustDomain string `yaml:"trust_domain"`
	// PathPrefix, with TrustDomain, matches the IDs of the trust domain
	// whose path is this prefix or continues it at a "/" boundary: /billing
	// matches /billing and /billing/api, not /billing-eu; /billing/ only
	// the IDs below /billing. Starts with "/".
	PathPrefix string `yaml:"path_prefix"`
}

// String describes the rule as in the file, e.g. "allow trust_domain=example.org".
func (r Rule) String() string {
	s := r.Action
	if r.SPIFFEID != "" {
		s += " spiffe_id=" + r.SPIFFEID
	}
	if r.TrustDomain != "" {
		s += " trust_domain=" + r.TrustDomain
	}
	if r.PathPrefix != "" {
		s += " path_prefix=" + r.PathPrefix
	}
	return s
}

// Admin is the admin HTTP endpoint.
type Admin struct {
	// Bind is host:port of the admin listener. Default 127.0.0.1:19000;
	// "-" disables it.
	Bind string `yaml:"bind"`
}

// Telemetry configures tracing and the access log.
type Telemetry struct {
	// OTLPEndpoint is the OTLP trace collector, a URL such as
	// http://jaeger:4317 or host:port; setting it turns tracing on. Empty:
	// OTEL_EXPORTER_OTLP_ENDPOINT.
	OTLPEndpoint string `yaml:"otlp_endpoint"`
	// OTLPProtocol is grpc or http/protobuf. Empty: OTEL_EXPORTER_OTLP_PROTOCOL,
	// else grpc.
	OTLPProtocol string `yaml:"otlp_protocol"`
	// TraceSampling is the fraction of new traces sampled, 0 to 1
	// (parent-based: a sampled caller is always followed). nil:
	// OTEL_TRACES_SAMPLER, else 1.
	TraceSampling *float64 `yaml:"trace_sampling"`
	// AccessLog writes a line per request (per connection for tcp). nil:
	// no access log.
	AccessLog *AccessLog `yaml:"access_log"`
}

// AccessLog configures the access log.
type AccessLog struct {
	// Path is the file to append to, or "-" (default) for standard output.
	Path string `yaml:"path"`
	// Format is json (default) or text.
	Format string `yaml:"format"`
	// Sampling is the fraction of successful requests logged, 0 to 1;
	// errors are always logged. Default 1.
	Sampling *float64 `yaml:"sampling"`
}

package config

import (
	"github.com/outrider-mesh/outrider/gateway"
	"strings"
	"text/template"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/outrider-mesh/outrider/policy/pathnorm"
	"github.com/outrider-mesh/outrider/sidecar/overload"
)

// Defaults filled in by Load and Parse for keys the file leaves out.
const (
	DefaultPublicProtocol      = TCP
	DefaultLocalConnectTimeout = time.Second
	DefaultHandshakeTimeout    = 10 * time.Second
	DefaultLocalRequestTimeout = 15 * time.Second
	DefaultMaxHeaderBytes      = 64 << 10
	DefaultMaxHeaders          = 100
	DefaultIdleTimeout         = 90 * time.Second
	DefaultBodyIdleTimeout     = 60 * time.Second
	DefaultMaxInterim          = 10
	DefaultMaxStreams          = 1000
	DefaultWindowSize          = 1 << 20
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
	maxHeaders     = 10000
	maxWeight      = 1000
	maxInterim     = 1000
	maxStreams     = 100000
	minWindow      = 65535
	maxWindow      = 1<<31 - 1
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
	// Ingress are public HTTP(S) listeners for clients outside the mesh,
	// routed to Upstreams over mesh mTLS. See gateway/README.md.
	Ingress gateway.Ingresses `yaml:"ingress"`
	// Authorization decides which peers and requests Public lets in.
	Authorization Authorization `yaml:"authorization"`
	// Admin is the admin HTTP endpoint (/ready, /config_dump, /metrics).
	Admin Admin `yaml:"admin"`
	// Telemetry configures traces and the access log. The process's OTEL_*
	// environment variables and command-line flags win over it.
	Telemetry Telemetry `yaml:"telemetry"`
	// Overload is the process's budget of connections, requests and
	// memory beyond which it refuses work (sidecar/overload). The run
	// command's -max-connections, -max-requests and -max-memory flags win
	// over it.
	Overload overload.Config `yaml:"overload"`

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
	// MaxHeaders bounds the header fields of an HTTP request (431
	// beyond) and of the application's response (502). Default 100, as
	// Envoy's max_headers_count; between 1 and 10000.
	MaxHeaders int `yaml:"max_headers"`
	// IdleTimeout closes a keep-alive HTTP client connection that has not
	// finished its next request head this long after the previous
	// exchange: the idle wait and the head's arrival (slowloris)
	// together. Default 90s, above the 60s after which a client sidecar
	// drops an unused pooled connection; shorter, clients meet closed
	// connections, which they retry only for idempotent requests. The
	// upstream listeners use it too.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// BodyIdleTimeout bounds each wait for more of a request body (slow
	// POST): a body that makes no progress this long is cut and the
	// request answered 408. Not gRPC request streams (their deadline
	// bounds them). Default 60s; it cannot be turned off. The upstream
	// listeners use it too.
	BodyIdleTimeout time.Duration `yaml:"body_idle_timeout"`
	// MaxInterimResponses bounds the interim (1xx) responses relayed
	// before a final one; one more and the caller gets 502. Default 10,
	// between 1 and 1000. The upstream listeners use it too (and the
	// ingress requests routed to them).
	MaxInterimResponses int `yaml:"max_interim_responses"`
	// MaxConcurrentStreams bounds the HTTP/2 streams a client may have
	// open on one connection; the extra one is reset. Default 1000, between
	// 1 and 100000. The upstream listeners use it too.
	MaxConcurrentStreams int `yaml:"max_concurrent_streams"`
	// InitialStreamWindowSize and InitialConnectionWindowSize are the
	// HTTP/2 receive windows of the listener's connections, per stream
	// and per connection. Default 1 MiB each, between 65535 and
	// 2147483647. The upstream listeners use them too.
	InitialStreamWindowSize     int `yaml:"initial_stream_window_size"`
	InitialConnectionWindowSize int `yaml:"initial_connection_window_size"`
	// Gateway applies API-gateway features (rate limits, caching,
	// compression, aggregation, filtering) to requests for the local
	// service, after authorization; needs an HTTP protocol. See
	// gateway/README.md.
	Gateway *gateway.Config `yaml:"gateway"`
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

// Defaults of the authorization section's JWT providers.
const (
	DefaultJWTClockSkew       = 30 * time.Second
	DefaultJWKSRequestTimeout = 5 * time.Second
	DefaultJWKSCacheDuration  = 5 * time.Minute
	DefaultJWTCacheSize       = 1024
	DefaultJWTHeader          = "Authorization" // the default token location
	DefaultJWTValuePrefix     = "Bearer "
)

// defaultJWTAlgorithms are the signature algorithms a provider accepts
// when it lists none: every asymmetric JWS algorithm (RFC 7518, RFC 8037).
var defaultJWTAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// Bounds enforced by Validate on the authorization section.
const (
	maxNameLen           = 64 // rule and JWT provider names
	minJWKSCacheDuration = time.Second
)

// Authorization is the inbound policy: local Rules with a Default, Consul
// intentions, or both (the rules then are a layer over the intentions).
// Every rule whose matchers all match is considered: if any of them denies,
// the request is denied (deny wins); otherwise if any allows, it is
// allowed; otherwise Default decides. Rule order does not matter.
//
// The same type holds a policy file (ParsePolicy): the local layer of the
// Consul mode, whose keys are those of this section without
// consul_intentions.
type Authorization struct {
	// Default is the action when no rule matches: deny (default) or allow.
	// With ConsulIntentions, and in a policy file, it is the default of the
	// rules' layer and defaults to allow: the layer only adds restrictions
	// to the intentions, whose own default Consul decides. With
	// ConsulIntentions and no rules it is not used.
	Default string `yaml:"default"`
	// DryRun, when true, evaluates, logs and counts the rules, Default and
	// JWT (not the intentions), but a deny they produce is only reported
	// as "would deny": the request goes through. For rolling out a
	// default-deny policy safely. Needs rules.
	DryRun bool `yaml:"dry_run"`
	// PathNormalization says how an HTTP request's path is normalized
	// before the rules match it; the application receives the normalized
	// path.
	PathNormalization PathNormalization `yaml:"path_normalization"`
	// Rules are the local rules, combined as the type's comment says.
	Rules []Rule `yaml:"rules"`
	// JWT, when set, is required of every request before the rules apply
	// (as the JWT of a Consul service-intentions entry): a request
	// without a valid token is answered 401, one whose claims do not
	// verify 403. Needs an http, http2 or grpc public listener.
	JWT *JWTRequirement `yaml:"jwt"`
	// JWTProviders are the token issuers that JWT requirements name (as
	// Consul's jwt-provider config entries). A provider takes effect only
	// when a requirement names it; an unused provider does nothing.
	JWTProviders []JWTProvider `yaml:"jwt_providers"`
	// ConsulIntentions, when true, authorizes with the Consul intentions of
	// File.Service. With Rules too, the rules are an extra layer evaluated
	// with the intentions, and a deny from either wins. Needs the consul
	// section and consul identity. Not a key of a policy file.
	ConsulIntentions bool `yaml:"consul_intentions"`
}

// PathNormalization relaxes how request paths are normalized (package
// policy/pathnorm): percent-encoded unreserved characters are decoded, dot
// segments removed and, by default, runs of "/" merged; a path that cannot
// be normalized safely is answered 400. Paths are compared after
// normalization and case-sensitively: /ADMIN is not /admin.
type PathNormalization struct {
	// MergeSlashes merges runs of "/" into one. Default true; nil (a
	// PathNormalization built in code) is true too.
	MergeSlashes *bool `yaml:"merge_slashes"`
	// AllowEncodedSlash accepts %2F and %5C, kept encoded (never decoded).
	// Default false: such requests are answered 400. Unsafe in front of an
	// application that decodes them before routing.
	AllowEncodedSlash bool `yaml:"allow_encoded_slash"`
	// AllowBackslash accepts a raw "\" as data. Default false: such
	// requests are answered 400.
	AllowBackslash bool `yaml:"allow_backslash"`
}

// Options is p as the normalizer takes it.
func (p PathNormalization) Options() pathnorm.Options {
	return pathnorm.Options{
		KeepSlashes:       p.MergeSlashes != nil && !*p.MergeSlashes,
		AllowEncodedSlash: p.AllowEncodedSlash,
		AllowBackslash:    p.AllowBackslash,
	}
}

// Rule is one authorization rule. In YAML it is a mapping with one key, the
// action, whose value holds the matchers:
//
//	rules:
//	  - allow: {trust_domain: example.org, path_prefix: /billing/}
//	  - deny: {http: {path_prefix: /admin/}}
//
// A rule matches a request when all its matchers match. It has at most one
// peer matcher (SPIFFEID, SPIFFEIDPattern, or TrustDomain with an optional
// PathPrefix); with none it matches every peer. It needs at least one
// matcher of any kind: peer, HTTP or JWT.
type Rule struct {
	// Action is Allow or Deny.
	Action string `yaml:"-"`
	// Name names the rule in logs, metrics and /authz/explain: letters,
	// digits, '.', '-' and '_', at most 64, unique among the rules.
	// Default "rule N", N its position from 1.
	Name string `yaml:"name"`
	// SPIFFEID matches this exact SPIFFE ID.
	SPIFFEID string `yaml:"spiffe_id"`
	// SPIFFEIDPattern matches the SPIFFE IDs of a pattern such as
	// spiffe://example.org/ns/*/sa/web: "*" matches one whole path segment
	// (no "/"), and a final "/**" any remaining path of one or more
	// segments. No "*" in the trust domain.
	SPIFFEIDPattern string `yaml:"spiffe_id_pattern"`
	// TrustDomain matches every ID in this trust domain (a name such as
	// example.org).
	TrustDomain string `yaml:"trust_domain"`
	// PathPrefix, with TrustDomain, matches the IDs of the trust domain
	// whose path is this prefix or continues it at a "/" boundary: /billing
	// matches /billing and /billing/api, not /billing-eu; /billing/ only
	// the IDs below /billing. Starts with "/".
	PathPrefix string `yaml:"path_prefix"`
	// HTTP matches the request's path, method and headers. Needs an http,
	// http2 or grpc public listener.
	HTTP *HTTPMatch `yaml:"http"`
	// JWT matches a request that carries a valid token from one of the
	// providers whose claims verify. Needs an http, http2 or grpc public
	// listener.
	JWT *JWTRequirement `yaml:"jwt"`
}

// String describes the rule as in the file, e.g. "allow trust_domain=example.org".
// The HTTP matchers are shortened: headers by name, JWT by provider.
func (r Rule) String() string {
	s := r.Action
	add := func(key, v string) {
		if v != "" {
			s += " " + key + "=" + v
		}
	}
	add("spiffe_id", r.SPIFFEID)
	add("spiffe_id_pattern", r.SPIFFEIDPattern)
	add("trust_domain", r.TrustDomain)
	add("path_prefix", r.PathPrefix)
	if h := r.HTTP; h != nil {
		add("http.path_exact", h.PathExact)
		add("http.path_prefix", h.PathPrefix)
		add("http.path_regex", h.PathRegex)
		add("http.methods", strings.Join(h.Methods, ","))
		names := make([]string, len(h.Headers))
		for i, m := range h.Headers {
			names[i] = m.Name
		}
		add("http.headers", strings.Join(names, ","))
	}
	if j := r.JWT; j != nil {
		names := make([]string, len(j.Providers))
		for i, p := range j.Providers {
			names[i] = p.Name
		}
		add("jwt", strings.Join(names, ","))
	}
	return s
}

// HTTPMatch matches a request (Consul's IntentionHTTPPermission); every
// matcher given must match, and at least one is given.
type HTTPMatch struct {
	// PathExact matches this path exactly. At most one of PathExact,
	// PathPrefix and PathRegex; each starts with "/" and is compared with
	// the normalized path, without the query, case-sensitively.
	PathExact string `yaml:"path_exact"`
	// PathPrefix matches the paths that start with this string, a plain
	// prefix as in Consul and Envoy: /admin also matches /administrator;
	// /admin/ only the paths below /admin.
	PathPrefix string `yaml:"path_prefix"`
	// PathRegex matches the paths this regular expression (Go regexp, RE2
	// syntax) matches whole, as if written ^(?:re)$.
	PathRegex string `yaml:"path_regex"`
	// Methods matches these request methods, tokens written in upper case.
	// Methods are case-sensitive (RFC 9110): an allow rule for GET does not
	// allow "get"; a deny rule for DELETE also denies "delete", "Delete",
	// ... so that a case trick cannot get past a deny.
	Methods []string `yaml:"methods"`
	// Headers must all match.
	Headers []HeaderMatch `yaml:"headers"`
}

// HeaderMatch matches one request header field (Consul's
// IntentionHTTPHeaderPermission): exactly one of Present, Exact, Prefix,
// Suffix, Contains and Regex. A field sent more than once never matches:
// the request is answered 400.
type HeaderMatch struct {
	// Name is the header field name, compared without case; "host" is the
	// request's authority. Pseudo-headers (":authority") are not names.
	// Required.
	Name string `yaml:"name"`
	// Present matches a request that has the field, whatever its value.
	// Written only as true.
	Present bool `yaml:"present"`
	// Exact matches this value exactly.
	Exact string `yaml:"exact"`
	// Prefix matches values that start with this.
	Prefix string `yaml:"prefix"`
	// Suffix matches values that end with this.
	Suffix string `yaml:"suffix"`
	// Contains matches values that contain this.
	Contains string `yaml:"contains"`
	// Regex matches values this regular expression (RE2 syntax) matches
	// whole.
	Regex string `yaml:"regex"`
	// Invert negates the match: with Present, the field is absent.
	Invert bool `yaml:"invert"`
	// IgnoreCase compares Exact, Prefix, Suffix and Contains without ASCII
	// case. Not with Present or Regex (write (?i) in the regex).
	IgnoreCase bool `yaml:"ignore_case"`
}

// JWTRequirement needs a valid token from at least one of Providers whose
// claims verify (Consul's IntentionJWTRequirement).
type JWTRequirement struct {
	// Providers are tried in turn; at least one.
	Providers []JWTProviderRef `yaml:"providers"`
}

// JWTProviderRef names a provider of Authorization.JWTProviders and the
// claims its token must carry (Consul's IntentionJWTProvider).
type JWTProviderRef struct {
	// Name is the name of an entry of JWTProviders. Required.
	Name string `yaml:"name"`
	// VerifyClaims must all verify.
	VerifyClaims []ClaimVerification `yaml:"verify_claims"`
}

// ClaimVerification requires the claim at Path to have Value (Consul's
// IntentionJWTClaimVerification; package policy/jwtauth says how a list
// claim is matched).
type ClaimVerification struct {
	// Path is the claim's path in the token's payload: [scope], or
	// [realm_access, roles] for a nested claim. At least one element.
	Path []string `yaml:"path"`
	// Value is the value the claim must have. Required.
	Value string `yaml:"value"`
}

// JWTProvider is one token issuer and how its tokens are found, verified
// and forwarded (modelled on Consul's jwt-provider config entry).
type JWTProvider struct {
	// Name names the provider in requirements, logs and metrics. Required,
	// unique; letters, digits, '.', '-' and '_', at most 64.
	Name string `yaml:"name"`
	// Issuer is the value the token's iss claim must have. Required.
	Issuer string `yaml:"issuer"`
	// Audiences, when not empty, are the values of which the token's aud
	// claim must contain at least one.
	Audiences []string `yaml:"audiences"`
	// Algorithms are the JWS algorithms a token may be signed with.
	// Default RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512
	// and EdDSA. Asymmetric keys only: none, HS256, HS384 and HS512 are
	// errors.
	Algorithms []string `yaml:"algorithms"`
	// ClockSkew is the leeway allowed on the exp, nbf and iat claims.
	// Default 30s; not negative.
	ClockSkew time.Duration `yaml:"clock_skew"`
	// JWKS is where the verification keys come from. Required.
	JWKS JWKS `yaml:"jwks"`
	// Locations are where a request's token is looked for, in order.
	// Default one location: the Authorization header, after "Bearer ".
	Locations []JWTLocation `yaml:"locations"`
	// Forward passes what a verified token says to the application.
	Forward JWTForward `yaml:"forward"`
	// CacheSize is how many verified tokens are remembered, so that a
	// token seen again is not verified again (until it expires). Default
	// 1024; -1 disables the cache.
	CacheSize int `yaml:"cache_size"`
}

// JWKS is a JSON Web Key Set source: exactly one of Remote, File and
// Inline.
type JWKS struct {
	// Remote fetches the key set from a URL and refreshes it.
	Remote *RemoteJWKS `yaml:"remote"`
	// File reads the key set from a JSON file.
	File string `yaml:"file"`
	// Inline is the key set's JSON text, an object with a "keys" array.
	Inline string `yaml:"inline"`
}

// RemoteJWKS is a key set fetched over HTTP.
type RemoteJWKS struct {
	// URI is the key set's http:// or https:// URL. Required.
	URI string `yaml:"uri"`
	// RequestTimeout bounds one fetch. Default 5s.
	RequestTimeout time.Duration `yaml:"request_timeout"`
	// CacheDuration is how long a fetched key set is used before it is
	// fetched again. Default 5m, at least 1s.
	CacheDuration time.Duration `yaml:"cache_duration"`
}

// JWTLocation is one place a token may be: exactly one of Header,
// QueryParam and Cookie.
type JWTLocation struct {
	// Header is a request header field.
	Header *JWTHeader `yaml:"header"`
	// QueryParam is a query parameter of the request target.
	QueryParam *JWTQueryParam `yaml:"query_param"`
	// Cookie is a cookie.
	Cookie *JWTCookie `yaml:"cookie"`
}

// JWTHeader is a token in a request header field.
type JWTHeader struct {
	// Name is the header field name. Required.
	Name string `yaml:"name"`
	// ValuePrefix is what precedes the token in the value, e.g. "Bearer ";
	// empty: the whole value is the token.
	ValuePrefix string `yaml:"value_prefix"`
}

// JWTQueryParam is a token in a query parameter.
type JWTQueryParam struct {
	// Name is the parameter's name. Required.
	Name string `yaml:"name"`
}

// JWTCookie is a token in a cookie.
type JWTCookie struct {
	// Name is the cookie's name. Required.
	Name string `yaml:"name"`
}

// JWTForward passes a verified token's content to the application. The
// headers it sets are removed from every request first, so that only the
// sidecar sets them. Their names may not be hop-by-hop or framing headers
// (Connection, Content-Length, Host, TE, Transfer-Encoding, Upgrade, ...)
// nor a header a location reads the token from.
type JWTForward struct {
	// Claims set request headers to claim values.
	Claims []ClaimHeader `yaml:"claims"`
	// PayloadHeader, when set, is a request header set to the token's
	// payload.
	PayloadHeader string `yaml:"payload_header"`
	// StripToken removes the token from the request before it is
	// forwarded.
	StripToken bool `yaml:"strip_token"`
}

// ClaimHeader sets a request header to a claim's value.
type ClaimHeader struct {
	// Path is the claim's path in the payload, e.g. [sub]. At least one
	// element.
	Path []string `yaml:"path"`
	// Header is the header field set. Required.
	Header string `yaml:"header"`
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

package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/outrider-mesh/outrider/internal/confval"
	"github.com/outrider-mesh/outrider/policy/pathnorm"
)

// written reports whether the file gave path a value (not null). A File
// built in code has no record, so every zero value is defaulted.
func (f *File) written(path string) bool {
	k, ok := f.keys[path]
	return ok && !k.null
}

// line is the line of path in the file, or of its closest ancestor written
// there; 0 when unknown.
func (f *File) line(path string) int {
	for path != "" {
		if k, ok := f.keys[path]; ok {
			return k.line
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 0
}

// applyDefaults fills in the documented default of every key the file
// left out. A value written explicitly, even zero or "", is kept so that
// Validate reports it.
func (f *File) applyDefaults() {
	str := func(v *string, def, path string) {
		if *v == "" && !f.written(path) {
			*v = def
		}
	}
	dur := func(v *time.Duration, def time.Duration, path string) {
		if *v == 0 && !f.written(path) {
			*v = def
		}
	}
	num := func(v *int, def int, path string) {
		if *v == 0 && !f.written(path) {
			*v = def
		}
	}
	if p := f.Public; p != nil {
		str((*string)(&p.Protocol), string(DefaultPublicProtocol), "public.protocol")
		dur(&p.LocalConnectTimeout, DefaultLocalConnectTimeout, "public.local_connect_timeout")
		dur(&p.HandshakeTimeout, DefaultHandshakeTimeout, "public.handshake_timeout")
		dur(&p.LocalRequestTimeout, DefaultLocalRequestTimeout, "public.local_request_timeout")
		num(&p.MaxHeaderBytes, DefaultMaxHeaderBytes, "public.max_header_bytes")
		num(&p.MaxHeaders, DefaultMaxHeaders, "public.max_headers")
		dur(&p.IdleTimeout, DefaultIdleTimeout, "public.idle_timeout")
		dur(&p.BodyIdleTimeout, DefaultBodyIdleTimeout, "public.body_idle_timeout")
		num(&p.MaxInterimResponses, DefaultMaxInterim, "public.max_interim_responses")
		num(&p.MaxConcurrentStreams, DefaultMaxStreams, "public.max_concurrent_streams")
		num(&p.InitialStreamWindowSize, DefaultWindowSize, "public.initial_stream_window_size")
		num(&p.InitialConnectionWindowSize, DefaultWindowSize, "public.initial_connection_window_size")
	}
	for i := range f.Upstreams {
		u := &f.Upstreams[i]
		at := fmt.Sprintf("upstreams[%d].", i)
		str((*string)(&u.Protocol), string(TCP), at+"protocol")
		dur(&u.ConnectTimeout, DefaultConnectTimeout, at+"connect_timeout")
		lb := DefaultL4BalancePolicy
		if u.Protocol.L7() {
			lb = DefaultL7BalancePolicy
		}
		str(&u.LoadBalancer.Policy, lb, at+"load_balancer.policy")
		for j := range u.Endpoints {
			num(&u.Endpoints[j].Weight, DefaultWeight, fmt.Sprintf("%sendpoints[%d].weight", at, j))
		}
		if u.Consul != nil {
			str(&u.Consul.Service, u.Name, at+"consul.service")
		}
	}
	def := Deny
	if f.Authorization.ConsulIntentions {
		def = Allow // the rules' layer only restricts the intentions
	}
	f.authorizationDefaults(&f.Authorization, "authorization.", def)
	str(&f.Admin.Bind, DefaultAdminBind, "admin.bind")
	if a := f.Telemetry.AccessLog; a != nil {
		str(&a.Path, DefaultAccessLogPath, "telemetry.access_log.path")
		str(&a.Format, DefaultAccessLogFormat, "telemetry.access_log.format")
		if a.Sampling == nil {
			one := 1.0
			a.Sampling = &one
		}
	}
}

// authorizationDefaults fills in the defaults of an authorization section
// whose keys are at the path prefix at ("authorization." or "" for a
// policy file); def is the default of Default.
func (f *File) authorizationDefaults(a *Authorization, at, def string) {
	if a.Default == "" && !f.written(at+"default") {
		a.Default = def
	}
	if a.PathNormalization.MergeSlashes == nil {
		merge := true
		a.PathNormalization.MergeSlashes = &merge
	}
	for i := range a.Rules {
		r := &a.Rules[i]
		if r.Name == "" && !f.written(fmt.Sprintf("%srules[%d].%s.name", at, i, r.Action)) {
			r.Name = defaultRuleName(i)
		}
	}
	for i := range a.JWTProviders {
		p := &a.JWTProviders[i]
		pp := fmt.Sprintf("%sjwt_providers[%d].", at, i)
		if p.Algorithms == nil && !f.written(pp+"algorithms") {
			p.Algorithms = slices.Clone(defaultJWTAlgorithms)
		}
		if p.ClockSkew == 0 && !f.written(pp+"clock_skew") {
			p.ClockSkew = DefaultJWTClockSkew
		}
		if r := p.JWKS.Remote; r != nil {
			if r.RequestTimeout == 0 && !f.written(pp+"jwks.remote.request_timeout") {
				r.RequestTimeout = DefaultJWKSRequestTimeout
			}
			if r.CacheDuration == 0 && !f.written(pp+"jwks.remote.cache_duration") {
				r.CacheDuration = DefaultJWKSCacheDuration
			}
		}
		if p.Locations == nil && !f.written(pp+"locations") {
			p.Locations = []JWTLocation{{Header: &JWTHeader{Name: DefaultJWTHeader, ValuePrefix: DefaultJWTValuePrefix}}}
		}
		if p.CacheSize == 0 && !f.written(pp+"cache_size") {
			p.CacheSize = DefaultJWTCacheSize
		}
	}
}

// defaultRuleName is the name of the rule at index i that has none.
func defaultRuleName(i int) string { return "rule " + strconv.Itoa(i+1) }

// Validate checks f as Parse does after filling in the defaults: it
// returns nil, or every problem found, one per line, each naming the key
// path ("config: upstreams[0].bind: ..."; with the file and line for a
// File from Parse). Validate neither modifies f nor fills in defaults, so a
// File built in code sets every field that has one.
func (f *File) Validate() error {
	errs := f.validate(nil)
	if len(errs) == 0 {
		return nil
	}
	return joinErrors(errs, f.name)
}

// checker collects validation errors.
type checker struct {
	f    *File
	errs []*fieldError
	// failed reports the paths whose value Parse could not decode (nil
	// outside Parse); checks that involve several keys skip them.
	failed func(path string) bool
}

// ok reports whether every path was decoded.
func (c *checker) ok(paths ...string) bool {
	if c.failed == nil {
		return true
	}
	for _, p := range paths {
		if c.failed(p) {
			return false
		}
	}
	return true
}

func (c *checker) errorf(path, format string, args ...any) {
	c.errs = append(c.errs, &fieldError{line: c.f.line(path), path: path, msg: fmt.Sprintf(format, args...)})
}

// validate returns every problem with f. failed, when not nil, reports the
// key paths that failed to decode.
func (f *File) validate(failed func(path string) bool) []*fieldError {
	c := &checker{f: f, failed: failed}
	c.service()
	c.identity()
	c.consul()
	binds := c.public()
	binds = append(binds, c.upstreams()...)
	c.authorization()
	c.gateway()
	c.ingress()
	c.overload()
	if f.Admin.Bind != "-" {
		if c.hostPort("admin.bind", f.Admin.Bind, false) {
			binds = append(binds, listener{"admin.bind", f.Admin.Bind})
		}
	}
	c.conflicts(binds)
	c.telemetry()
	return c.errs
}

// name checks a service name: it goes into SPIFFE ID paths and metric
// labels.
func (c *checker) name(path, s string) {
	switch {
	case s == "":
		c.errorf(path, "required")
	case spiffeid.ValidatePathSegment(s) != nil:
		c.errorf(path, "%s: want letters, digits, '.', '-' and '_'", quote(s))
	}
}

func (c *checker) service() { c.name("service", c.f.Service) }

func (c *checker) identity() {
	id := c.f.Identity
	var set []string
	if id.SPIFFE != nil {
		set = append(set, "spiffe")
	}
	if id.Files != nil {
		set = append(set, "files")
	}
	if id.Consul != nil {
		set = append(set, "consul")
	}
	switch len(set) {
	case 0:
		c.errorf("identity", "want exactly one of spiffe, files or consul, got none")
		return
	case 1:
	default:
		c.errorf("identity", "want exactly one of spiffe, files or consul, got %s", strings.Join(set, " and "))
		return
	}
	if s := id.SPIFFE; s != nil && s.Socket != "" {
		if !workloadAddress(s.Socket) {
			c.errorf("identity.spiffe.socket", "%s is not a Workload API address (unix:///path or tcp://ip:port)", quote(s.Socket))
		}
	}
	if fi := id.Files; fi != nil {
		if fi.Cert == "" {
			c.errorf("identity.files.cert", "required")
		}
		if fi.Key == "" {
			c.errorf("identity.files.key", "required")
		}
		if len(fi.Bundles) == 0 {
			c.errorf("identity.files.bundles", "at least one trust domain is required")
		}
		for _, td := range sortedKeys(fi.Bundles) {
			path := join("identity.files.bundles", td)
			if err := trustDomainName(td); err != nil {
				c.errorf(path, "%s is not a trust domain name: %v", quote(td), err)
			}
			if len(fi.Bundles[td]) == 0 {
				c.errorf(path, "at least one bundle file is required")
			}
			for i, p := range fi.Bundles[td] {
				if p == "" {
					c.errorf(fmt.Sprintf("%s[%d]", path, i), "empty path")
				}
			}
		}
	}
	if id.Consul != nil && c.f.Consul == nil {
		c.errorf("identity.consul", "needs the consul section")
	}
}

// workloadAddress reports whether s is a Workload API address as
// go-spiffe's workloadapi.ValidateAddress accepts them on Unix.
func workloadAddress(s string) bool {
	u, err := url.Parse(s)
	if err != nil || u.Opaque != "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return false
	}
	switch u.Scheme {
	case "unix":
		return u.Host == "" && u.Path != ""
	case "tcp":
		ip := net.ParseIP(u.Hostname())
		return ip != nil && u.Port() != "" && u.Path == ""
	}
	return false
}

// trustDomainName checks a bare trust domain name (not a spiffe:// URI).
func trustDomainName(s string) error {
	td, err := spiffeid.TrustDomainFromString(s)
	if err != nil {
		return err
	}
	if td.Name() != s {
		return errors.New("want the name alone, such as example.org")
	}
	return nil
}

func (c *checker) consul() {
	k := c.f.Consul
	if k == nil {
		return
	}
	if k.Address != "" {
		if strings.Contains(k.Address, "://") {
			u, err := url.Parse(k.Address)
			switch {
			case err != nil:
				c.errorf("consul.address", "%s is not a URL: %v", quote(k.Address), err)
			case u.Scheme == "unix":
				if u.Path == "" {
					c.errorf("consul.address", "%s: want unix:///path/to/socket", quote(k.Address))
				}
			case u.Scheme == "http" || u.Scheme == "https":
				if u.Host == "" {
					c.errorf("consul.address", "%s has no host", quote(k.Address))
				}
			default:
				c.errorf("consul.address", "%s: want host:port, http://, https:// or unix://", quote(k.Address))
			}
		} else {
			c.hostPort("consul.address", k.Address, true)
		}
	}
	if t := k.TLS; t != nil && (t.CertFile == "") != (t.KeyFile == "") {
		if t.CertFile == "" {
			c.errorf("consul.tls.cert_file", "required with key_file")
		} else {
			c.errorf("consul.tls.key_file", "required with cert_file")
		}
	}
}

// listener is a bind address and the key that set it.
type listener struct{ path, addr string }

func (c *checker) public() []listener {
	p := c.f.Public
	if p == nil {
		return nil
	}
	var out []listener
	if c.hostPort("public.bind", p.Bind, false) {
		out = append(out, listener{"public.bind", p.Bind})
	}
	c.hostPort("public.local_service", p.LocalService, true)
	c.protocol("public.protocol", p.Protocol)
	c.positive("public.local_connect_timeout", p.LocalConnectTimeout)
	c.positive("public.handshake_timeout", p.HandshakeTimeout)
	c.positive("public.local_request_timeout", p.LocalRequestTimeout)
	c.between("public.max_header_bytes", p.MaxHeaderBytes, minHeaderBytes, maxHeaderBytes)
	c.between("public.max_headers", p.MaxHeaders, 1, maxHeaders)
	c.positive("public.idle_timeout", p.IdleTimeout)
	c.positive("public.body_idle_timeout", p.BodyIdleTimeout)
	c.between("public.max_interim_responses", p.MaxInterimResponses, 1, maxInterim)
	c.between("public.max_concurrent_streams", p.MaxConcurrentStreams, 1, maxStreams)
	c.between("public.initial_stream_window_size", p.InitialStreamWindowSize, minWindow, maxWindow)
	c.between("public.initial_connection_window_size", p.InitialConnectionWindowSize, minWindow, maxWindow)
	return out
}

// hostPort checks a host:port address with a numeric port; needHost
// rejects ":port". It reports whether s is valid.
func (c *checker) hostPort(path, s string, needHost bool) bool {
	if s == "" {
		c.errorf(path, "required")
		return false
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		c.errorf(path, "%s is not host:port", quote(s))
		return false
	}
	if needHost && host == "" {
		c.errorf(path, "%s has no host", quote(s))
		return false
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		c.errorf(path, "%s: port %q is not a number between 1 and 65535", quote(s), port)
		return false
	}
	return true
}

func (c *checker) protocol(path string, p Protocol) {
	switch p {
	case TCP, HTTP, HTTP2, GRPC:
		return
	}
	c.errorf(path, "want tcp, http, http2 or grpc, got %s", quote(string(p)))
}

func (c *checker) between(path string, n, lo, hi int) {
	if n < lo || n > hi {
		c.errorf(path, "%d is not between %d and %d", n, lo, hi)
	}
}

func (c *checker) positive(path string, d time.Duration) {
	if d <= 0 {
		c.errorf(path, "%v: want a positive duration", d)
	}
}

func (c *checker) upstreams() []listener {
	var out []listener
	names := map[string]string{}
	for i, u := range c.f.Upstreams {
		at := fmt.Sprintf("upstreams[%d]", i)
		c.name(at+".name", u.Name)
		if prev, dup := names[u.Name]; dup && u.Name != "" {
			c.errorf(at+".name", "%s is already the name of %s", quote(u.Name), prev)
		} else {
			names[u.Name] = at
		}
		if c.hostPort(at+".bind", u.Bind, false) {
			out = append(out, listener{at + ".bind", u.Bind})
		}
		c.protocol(at+".protocol", u.Protocol)
		c.positive(at+".connect_timeout", u.ConnectTimeout)
		c.loadBalancer(at+".load_balancer", u.LoadBalancer, u.Protocol)
		switch {
		case len(u.Endpoints) == 0 && u.Consul == nil && c.ok(at+".endpoints"):
			c.errorf(at, "want endpoints or consul, got neither")
		case len(u.Endpoints) > 0 && u.Consul != nil:
			c.errorf(at+".consul", "endpoints and consul are exclusive")
		}
		addrs := map[string]string{}
		for j, e := range u.Endpoints {
			ep := fmt.Sprintf("%s.endpoints[%d]", at, j)
			if c.hostPort(ep+".address", e.Address, true) {
				if prev, dup := addrs[e.Address]; dup {
					c.errorf(ep+".address", "%s is already the address of %s", quote(e.Address), prev)
				}
				addrs[e.Address] = ep
			}
			if e.SPIFFEID.IsZero() {
				c.errorf(ep+".spiffe_id", "required")
			}
			if e.Weight < 1 || e.Weight > maxWeight {
				c.errorf(ep+".weight", "%d is not between 1 and %d", e.Weight, maxWeight)
			}
		}
		if u.Consul != nil {
			c.consulDiscovery(at+".consul", u.Consul, u.Name)
		}
	}
	return out
}

func (c *checker) loadBalancer(path string, lb LoadBalancer, p Protocol) {
	var keys []string
	if lb.HashHeader != "" {
		keys = append(keys, "hash_header")
		if !p.L7() {
			c.errorf(path+".hash_header", "needs protocol http, http2 or grpc")
		} else if !token(lb.HashHeader) {
			c.errorf(path+".hash_header", "%s is not a header name", quote(lb.HashHeader))
		}
	}
	if k := lb.HashCookie; k != nil {
		keys = append(keys, "hash_cookie")
		cp := path + ".hash_cookie"
		if !p.L7() {
			c.errorf(cp, "needs protocol http, http2 or grpc")
		}
		switch {
		case k.Name == "":
			c.errorf(cp+".name", "required")
		case !token(k.Name):
			c.errorf(cp+".name", "%s is not a cookie name", quote(k.Name))
		}
		if k.TTL < 0 {
			c.errorf(cp+".ttl", "%v: want a positive duration, or 0", k.TTL)
		}
		if k.Path != "" && k.TTL <= 0 {
			c.errorf(cp+".path", "only used with a ttl (when the sidecar sets the cookie)")
		} else if k.Path != "" && (!strings.HasPrefix(k.Path, "/") || strings.ContainsAny(k.Path, "; \t\r\n")) {
			c.errorf(cp+".path", "%s is not a cookie path", quote(k.Path))
		}
	}
	if lb.HashSourceIP {
		keys = append(keys, "hash_source_ip")
	}
	switch lb.Policy {
	case RingHash, Maglev:
		if len(keys) != 1 && c.ok(path+".hash_header", path+".hash_cookie", path+".hash_source_ip") {
			c.errorf(path, "%s needs exactly one of hash_header, hash_cookie or hash_source_ip, got %d", lb.Policy, len(keys))
		}
	case RoundRobin, LeastRequest, Random:
		if len(keys) > 0 {
			c.errorf(path+"."+keys[0], "only used by the ring_hash and maglev policies")
		}
	default:
		c.errorf(path+".policy", "want round_robin, least_request, ring_hash, maglev or random, got %s", quote(lb.Policy))
	}
}

// token reports whether s is an HTTP token (RFC 9110), as header and
// cookie names are.
func token(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if b <= ' ' || b >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, b) >= 0 {
			return false
		}
	}
	return true
}

func (c *checker) consulDiscovery(path string, k *ConsulDiscovery, upstream string) {
	if c.f.Consul == nil {
		c.errorf(path, "needs the consul section")
	}
	if k.Service != "" || upstream != "" { // else the missing name is reported
		c.name(path+".service", k.Service)
	}
	if k.SPIFFEID != "" {
		if _, err := k.checkTemplate(); err != nil {
			c.errorf(path+".spiffe_id", "%v", err)
		}
	}
	if m := k.SPIFFEIDMeta; m != "" && !metaKey(m) {
		c.errorf(path+".spiffe_id_meta", "%s is not a service-meta key (up to 128 letters, digits, '-' and '_')", quote(m))
	}
}

// metaKey reports whether s is a valid Consul service-meta key.
func metaKey(s string) bool {
	if len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '-' || b == '_') {
			return false
		}
	}
	return true
}

func (c *checker) authorization() {
	a := &c.f.Authorization
	if a.ConsulIntentions {
		if c.f.Consul == nil {
			c.errorf("authorization.consul_intentions", "needs the consul section")
		}
		if c.f.Identity.Consul == nil {
			c.errorf("authorization.consul_intentions", "needs identity consul")
		}
		if len(a.Rules) == 0 && c.f.written("authorization.default") && c.ok("authorization.rules") {
			c.errorf("authorization.default", "not used with consul_intentions and no rules (Consul's default intention policy applies)")
		}
	}
	if c.f.Public == nil {
		switch {
		case len(a.Rules) > 0:
			c.errorf("authorization.rules", "no public listener to authorize (add the public section)")
		case a.JWT != nil:
			c.errorf("authorization.jwt", "no public listener to authorize (add the public section)")
		case a.ConsulIntentions:
			c.errorf("authorization.consul_intentions", "no public listener to authorize (add the public section)")
		}
	}
	s := layer{at: "authorization."}
	if p := c.f.Public; p != nil && c.ok("public.protocol") {
		s.protocol = p.Protocol
	}
	c.layer(a, s)
}

// layer is where an authorization section is: the authorization key of
// outrider.yaml, or the top level of a policy file.
type layer struct {
	at string // the key path prefix: "authorization." or ""
	// protocol is the public listener's; "" when unknown (a policy file,
	// or no public listener, which is reported apart), and then request
	// matchers are not checked against it.
	protocol Protocol
}

// needsL7 reports a request matcher at path on a listener that sees no
// requests.
func (c *checker) needsL7(s layer, path string) {
	if s.protocol == TCP { // an invalid protocol is reported apart
		c.errorf(path, "needs public.protocol http, http2 or grpc: it matches requests, which a tcp listener never sees")
	}
}

// layer checks the keys an authorization section and a policy file share.
func (c *checker) layer(a *Authorization, s layer) {
	at := s.at
	// With intentions and no rules, Default is not used (and reported
	// when written).
	if !(a.ConsulIntentions && len(a.Rules) == 0) && a.Default != Allow && a.Default != Deny {
		c.errorf(at+"default", "want allow or deny, got %s", quote(a.Default))
	}
	if a.DryRun && len(a.Rules) == 0 && c.ok(at+"rules") {
		c.errorf(at+"dry_run", "dry_run has no rules to try")
	}
	if c.f.written(at+"path_normalization") && s.protocol == TCP {
		c.errorf(at+"path_normalization", "only used with public.protocol http, http2 or grpc (a tcp listener sees no paths)")
	}
	providers := c.jwtProviders(a.JWTProviders, at+"jwt_providers")
	if a.JWT != nil {
		c.needsL7(s, at+"jwt")
		c.jwtRequirement(a.JWT, at+"jwt", providers)
	}
	opts := a.PathNormalization.Options()
	names := map[string]string{}
	for i, r := range a.Rules {
		rp := fmt.Sprintf("%srules[%d]", at, i)
		if r.Action != Allow && r.Action != Deny {
			c.errorf(rp, "want action allow or deny, got %s", quote(r.Action))
			continue
		}
		c.rule(r, i, rp+"."+r.Action, s, opts, providers, names)
	}
}

func (c *checker) rule(r Rule, i int, at string, s layer, opts pathnorm.Options, providers map[string]bool, names map[string]string) {
	if r.Name != defaultRuleName(i) && c.label(at+".name", r.Name) {
		if prev, dup := names[r.Name]; dup {
			c.errorf(at+".name", "%s is already the name of %s", quote(r.Name), prev)
		} else {
			names[r.Name] = strings.TrimSuffix(strings.TrimSuffix(at, ".allow"), ".deny")
		}
	}
	var peer []string
	if r.SPIFFEID != "" {
		peer = append(peer, "spiffe_id")
	}
	if r.SPIFFEIDPattern != "" {
		peer = append(peer, "spiffe_id_pattern")
	}
	switch {
	case r.TrustDomain != "":
		peer = append(peer, "trust_domain")
	case r.PathPrefix != "":
		peer = append(peer, "path_prefix")
	}
	switch {
	case len(peer) == 0 && r.HTTP == nil && r.JWT == nil:
		if c.decoded(at, reflect.TypeFor[Rule]()) {
			c.errorf(at, "want at least one matcher: spiffe_id, spiffe_id_pattern or trust_domain (the peer), http or jwt")
		}
	case len(peer) > 1:
		c.errorf(at, "want at most one peer matcher: spiffe_id, spiffe_id_pattern, or trust_domain with an optional path_prefix; got %s", strings.Join(peer, " and "))
	case len(peer) == 1 && peer[0] == "path_prefix":
		c.errorf(at+".path_prefix", "needs trust_domain")
	}
	if r.SPIFFEID != "" {
		if _, err := spiffeid.FromString(r.SPIFFEID); err != nil {
			c.errorf(at+".spiffe_id", "%s is not a SPIFFE ID: %v", quote(r.SPIFFEID), err)
		}
	}
	if r.SPIFFEIDPattern != "" {
		if err := checkPattern(r.SPIFFEIDPattern); err != nil {
			c.errorf(at+".spiffe_id_pattern", "%s is not a SPIFFE ID pattern: %v", quote(r.SPIFFEIDPattern), err)
		}
	}
	if r.TrustDomain != "" {
		if err := trustDomainName(r.TrustDomain); err != nil {
			c.errorf(at+".trust_domain", "%s is not a trust domain name: %v", quote(r.TrustDomain), err)
		}
	}
	if p := r.PathPrefix; p != "" {
		// A prefix may end in "/" (to stop at a segment boundary) or in
		// the middle of a segment; what precedes must be a valid path.
		if !strings.HasPrefix(p, "/") {
			c.errorf(at+".path_prefix", "%s does not start with /", quote(p))
		} else if err := spiffeid.ValidatePath(strings.TrimSuffix(p, "/")); err != nil {
			c.errorf(at+".path_prefix", "%s is not a SPIFFE ID path prefix: %v", quote(p), err)
		}
	}
	if r.HTTP != nil {
		c.needsL7(s, at+".http")
		c.httpMatch(r.HTTP, at+".http", opts)
	}
	if r.JWT != nil {
		c.needsL7(s, at+".jwt")
		c.jwtRequirement(r.JWT, at+".jwt", providers)
	}
}

// decoded reports whether every key of the mapping at path, of struct
// type t, was decoded (or left out): a check that the mapping has some key
// would only repeat a decoding error.
func (c *checker) decoded(path string, t reflect.Type) bool {
	for name := range yamlFields(t) {
		if !c.ok(join(path, name)) {
			return false
		}
	}
	return true
}

// label checks the name of a rule or a JWT provider; it reports whether
// the name is valid.
func (c *checker) label(path, s string) bool {
	switch {
	case s == "" && c.f.written(path):
		c.errorf(path, "empty (leave the key out for the default)")
	case s == "":
		c.errorf(path, "required")
	case len(s) > maxNameLen:
		c.errorf(path, "%s is longer than %d characters", quote(s), maxNameLen)
	case strings.Trim(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") != "":
		c.errorf(path, "%s: want letters, digits, '.', '-' and '_'", quote(s))
	default:
		return true
	}
	return false
}

// checkPattern checks a SPIFFE ID pattern: spiffe://td/path where a path
// segment may be "*", and the last one "**".
func checkPattern(p string) error {
	rest, ok := strings.CutPrefix(p, "spiffe://")
	if !ok {
		return errors.New("want spiffe://trust-domain/path, with * for a segment")
	}
	td, path, _ := strings.Cut(rest, "/")
	if strings.Contains(td, "*") {
		return errors.New(`"*" is not allowed in the trust domain`)
	}
	if path == "" {
		return errors.New("no path (use trust_domain to match a whole trust domain)")
	}
	segs := strings.Split(path, "/")
	for i, s := range segs {
		switch {
		case s == "**" && i < len(segs)-1:
			return errors.New(`"**" only as the last segment`)
		case s == "*" || s == "**":
			segs[i] = "x"
		case strings.Contains(s, "*"):
			return fmt.Errorf(`"*" only as a whole segment, got %s`, quote(s))
		}
	}
	_, err := spiffeid.FromString("spiffe://" + td + "/" + strings.Join(segs, "/"))
	return err
}

func (c *checker) httpMatch(h *HTTPMatch, at string, opts pathnorm.Options) {
	var paths []string
	for _, p := range []struct{ key, v string }{{"path_exact", h.PathExact}, {"path_prefix", h.PathPrefix}, {"path_regex", h.PathRegex}} {
		if p.v != "" || c.f.written(at+"."+p.key) {
			paths = append(paths, p.key)
		}
	}
	switch {
	case len(paths) == 0 && h.Methods == nil && h.Headers == nil:
		if c.decoded(at, reflect.TypeFor[HTTPMatch]()) {
			c.errorf(at, "want at least one of path_exact, path_prefix, path_regex, methods or headers")
		}
	case len(paths) > 1:
		c.errorf(at, "want at most one of path_exact, path_prefix or path_regex, got %s", strings.Join(paths, " and "))
	}
	if h.PathExact != "" || c.f.written(at+".path_exact") {
		c.requestPath(at+".path_exact", h.PathExact, h.PathExact, opts)
	}
	if p := h.PathPrefix; p != "" || c.f.written(at+".path_prefix") {
		// A prefix may end in the middle of a segment, even in "." or
		// "..", which are dot segments only when whole: normalize it as
		// the start of a longer path.
		c.requestPath(at+".path_prefix", p, p+"x", opts)
	}
	if re := h.PathRegex; re != "" || c.f.written(at+".path_regex") {
		if !strings.HasPrefix(re, "/") {
			c.errorf(at+".path_regex", "%s does not start with / (it is matched against the whole path)", quote(re))
		} else if err := compileRegex(re); err != nil {
			c.errorf(at+".path_regex", "%v", err)
		}
	}
	if h.Methods != nil && len(h.Methods) == 0 {
		c.errorf(at+".methods", "empty list (leave the key out to match every method)")
	}
	for i, m := range h.Methods {
		mp := fmt.Sprintf("%s.methods[%d]", at, i)
		switch {
		case !token(m):
			c.errorf(mp, "%s is not a method name", quote(m))
		case strings.ToUpper(m) != m:
			c.errorf(mp, "%s: methods are case-sensitive (RFC 9110); write %s", quote(m), quote(strings.ToUpper(m)))
		}
	}
	if h.Headers != nil && len(h.Headers) == 0 {
		c.errorf(at+".headers", "empty list (leave the key out)")
	}
	for i, m := range h.Headers {
		c.headerMatch(m, fmt.Sprintf("%s.headers[%d]", at, i))
	}
}

// requestPath checks a path or path prefix that rules compare with
// normalized request paths: norm, p itself or p as the start of a path,
// must already be normal, else the matcher could never match.
func (c *checker) requestPath(path, p, norm string, opts pathnorm.Options) {
	switch {
	case !strings.HasPrefix(p, "/"):
		c.errorf(path, "%s does not start with /", quote(p))
		return
	case strings.Contains(p, "?"):
		c.errorf(path, "%s has a query: paths are matched without it", quote(p))
		return
	}
	if i := strings.LastIndexByte(p, '%'); i >= 0 && i > len(p)-3 && norm != p {
		return // a prefix ending in part of an escape
	}
	n, err := pathnorm.String(norm, opts)
	switch {
	case err != nil:
		c.errorf(path, "%s can never match: requests with such a path are answered 400 (%v)", quote(p), err)
	case n != norm:
		want := n
		if norm != p {
			want = strings.TrimSuffix(n, "x")
		}
		c.errorf(path, "%s can never match: requests are matched after path normalization; write %s", quote(p), quote(want))
	}
}

// compileRegex checks a regular expression of a rule, which is matched
// against a whole path or value.
func compileRegex(re string) error {
	if _, err := regexp.Compile(re); err != nil {
		return fmt.Errorf("%s is not a regular expression (RE2 syntax): %v", quote(re), err)
	}
	if _, err := regexp.Compile(`^(?:` + re + `)$`); err != nil {
		return fmt.Errorf("%s is not a regular expression (RE2 syntax): %v", quote(re), err)
	}
	return nil
}

func (c *checker) headerMatch(m HeaderMatch, at string) {
	switch {
	case m.Name == "":
		c.errorf(at+".name", "required")
	case strings.HasPrefix(m.Name, ":"):
		c.errorf(at+".name", "%s is a pseudo-header: match the path with path_exact, path_prefix or path_regex, the method with methods, the authority with the host header", quote(m.Name))
	case !token(m.Name):
		c.errorf(at+".name", "%s is not a header name", quote(m.Name))
	}
	var set []string
	if m.Present || c.f.written(at+".present") {
		set = append(set, "present")
		if !m.Present && c.ok(at+".present") {
			c.errorf(at+".present", "only true may be written (leave the key out; invert: true matches an absent header)")
		}
	}
	for _, v := range []struct{ key, v string }{{"exact", m.Exact}, {"prefix", m.Prefix}, {"suffix", m.Suffix}, {"contains", m.Contains}, {"regex", m.Regex}} {
		if v.v == "" && !c.f.written(at+"."+v.key) {
			continue
		}
		set = append(set, v.key)
		if v.v == "" {
			c.errorf(at+"."+v.key, "empty (present: true matches any value)")
		}
	}
	switch {
	case len(set) == 0:
		if c.decoded(at, reflect.TypeFor[HeaderMatch]()) {
			c.errorf(at, "want exactly one of present, exact, prefix, suffix, contains or regex, got none")
		}
	case len(set) > 1:
		c.errorf(at, "want exactly one of present, exact, prefix, suffix, contains or regex, got %s", strings.Join(set, " and "))
	}
	if m.Regex != "" {
		if err := compileRegex(m.Regex); err != nil {
			c.errorf(at+".regex", "%v", err)
		}
	}
	if m.IgnoreCase {
		switch {
		case m.Present:
			c.errorf(at+".ignore_case", "not used with present")
		case m.Regex != "":
			c.errorf(at+".ignore_case", "not used with regex (write (?i) in the regex)")
		}
	}
}

// jwtRequirement checks a requirement; providers holds the names of the
// jwt_providers entries.
func (c *checker) jwtRequirement(j *JWTRequirement, at string, providers map[string]bool) {
	if len(j.Providers) == 0 && c.ok(at+".providers") {
		c.errorf(at+".providers", "want at least one provider")
	}
	seen := map[string]string{}
	for i, p := range j.Providers {
		pp := fmt.Sprintf("%s.providers[%d]", at, i)
		switch {
		case p.Name == "":
			c.errorf(pp+".name", "required")
		case !providers[p.Name]:
			msg := fmt.Sprintf("no jwt_providers entry is named %s", quote(p.Name))
			if m := closest(p.Name, sortedKeys(providers)); m != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", m)
			}
			c.errorf(pp+".name", "%s", msg)
		}
		if prev, dup := seen[p.Name]; dup && p.Name != "" {
			c.errorf(pp+".name", "%s is already listed (%s)", quote(p.Name), prev)
		} else {
			seen[p.Name] = pp
		}
		for k, v := range p.VerifyClaims {
			vp := fmt.Sprintf("%s.verify_claims[%d]", pp, k)
			c.claimPath(vp+".path", v.Path)
			if v.Value == "" {
				c.errorf(vp+".value", "required")
			}
		}
	}
}

// claimPath checks the path of a claim in a token's payload.
func (c *checker) claimPath(path string, p []string) {
	if len(p) == 0 {
		if c.ok(path) {
			c.errorf(path, "want a claim's path, a list of names such as [sub] or [realm_access, roles]")
		}
		return
	}
	for i, s := range p {
		if s == "" {
			c.errorf(fmt.Sprintf("%s[%d]", path, i), "empty claim name")
		}
	}
}

// refusedAlgorithms are JWS algorithms a provider may not accept, and why.
var refusedAlgorithms = map[string]string{
	"none":  "unsigned tokens are never accepted",
	"HS256": "a symmetric (shared secret) algorithm; only asymmetric keys are supported",
	"HS384": "a symmetric (shared secret) algorithm; only asymmetric keys are supported",
	"HS512": "a symmetric (shared secret) algorithm; only asymmetric keys are supported",
}

// noForward are the header fields a provider may not set: hop-by-hop and
// framing fields, which the proxy itself manages.
var noForward = []string{"connection", "content-length", "host", "keep-alive", "proxy-authenticate",
	"proxy-authorization", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}

// jwtProviders checks the providers and returns the set of their names.
func (c *checker) jwtProviders(ps []JWTProvider, at string) map[string]bool {
	names := map[string]bool{}
	where := map[string]string{}
	for i, p := range ps {
		pp := fmt.Sprintf("%s[%d]", at, i)
		if c.label(pp+".name", p.Name) {
			if prev, dup := where[p.Name]; dup {
				c.errorf(pp+".name", "%s is already the name of %s", quote(p.Name), prev)
			} else {
				where[p.Name] = pp
			}
		}
		if p.Name != "" {
			names[p.Name] = true // referring to it is not an error too
		}
		if p.Issuer == "" {
			c.errorf(pp+".issuer", "required")
		}
		for k, a := range p.Audiences {
			if a == "" {
				c.errorf(fmt.Sprintf("%s.audiences[%d]", pp, k), "empty audience")
			}
		}
		c.algorithms(pp+".algorithms", p.Algorithms)
		if p.ClockSkew < 0 {
			c.errorf(pp+".clock_skew", "%v: want a positive duration, or 0", p.ClockSkew)
		}
		c.jwks(pp+".jwks", p.JWKS)
		if p.Locations != nil && len(p.Locations) == 0 {
			c.errorf(pp+".locations", "empty list (leave the key out for the default, the Authorization header)")
		}
		tokenHeaders := map[string]string{}
		for k, l := range p.Locations {
			lp := fmt.Sprintf("%s.locations[%d]", pp, k)
			if h := c.location(lp, l); h != "" {
				where := lp + ".header.name"
				if !c.f.written(pp+".locations") && c.f.keys != nil {
					where += ", the default"
				}
				tokenHeaders[strings.ToLower(h)] = where
			}
		}
		set := map[string]string{}
		forward := func(path, h string) {
			switch {
			case h == "":
				c.errorf(path, "required")
			case !token(h):
				c.errorf(path, "%s is not a header name", quote(h))
			case slices.Contains(noForward, strings.ToLower(h)):
				c.errorf(path, "%s is a hop-by-hop or framing header, which the proxy manages", quote(h))
			case tokenHeaders[strings.ToLower(h)] != "":
				c.errorf(path, "%s is where the token is read from (%s)", quote(h), tokenHeaders[strings.ToLower(h)])
			case set[strings.ToLower(h)] != "":
				c.errorf(path, "%s is already set by %s", quote(h), set[strings.ToLower(h)])
			default:
				set[strings.ToLower(h)] = path
			}
		}
		for k, h := range p.Forward.Claims {
			hp := fmt.Sprintf("%s.forward.claims[%d]", pp, k)
			c.claimPath(hp+".path", h.Path)
			forward(hp+".header", h.Header)
		}
		if h := p.Forward.PayloadHeader; h != "" || c.f.written(pp+".forward.payload_header") {
			forward(pp+".forward.payload_header", h)
		}
		switch n := p.CacheSize; {
		case n == 0:
			c.errorf(pp+".cache_size", "0: want a positive size, or -1 to disable the cache")
		case n < -1:
			c.errorf(pp+".cache_size", "%d: want a positive size, or -1 to disable the cache", n)
		}
	}
	return names
}

func (c *checker) algorithms(path string, algs []string) {
	if len(algs) == 0 && c.ok(path) {
		c.errorf(path, "empty list (leave the key out for the default, every asymmetric algorithm)")
	}
next:
	for i, a := range algs {
		ap := fmt.Sprintf("%s[%d]", path, i)
		if slices.Contains(defaultJWTAlgorithms, a) {
			continue
		}
		for r, why := range refusedAlgorithms {
			if strings.EqualFold(a, r) {
				c.errorf(ap, "%s: %s", quote(a), why)
				continue next
			}
		}
		msg := fmt.Sprintf("want one of %s, got %s", strings.Join(defaultJWTAlgorithms, ", "), quote(a))
		for _, k := range defaultJWTAlgorithms {
			if strings.EqualFold(a, k) {
				msg += fmt.Sprintf(" (did you mean %q? algorithm names are case-sensitive)", k)
			}
		}
		c.errorf(ap, "%s", msg)
	}
}

func (c *checker) jwks(at string, k JWKS) {
	var set []string
	if k.Remote != nil {
		set = append(set, "remote")
	}
	if k.File != "" || c.f.written(at+".file") {
		set = append(set, "file")
	}
	if k.Inline != "" || c.f.written(at+".inline") {
		set = append(set, "inline")
	}
	switch {
	case len(set) == 0:
		if c.decoded(at, reflect.TypeFor[JWKS]()) {
			c.errorf(at, "want exactly one of remote, file or inline, got none")
		}
		return
	case len(set) > 1:
		c.errorf(at, "want exactly one of remote, file or inline, got %s", strings.Join(set, " and "))
		return
	}
	switch {
	case k.Remote != nil:
		r := k.Remote
		u, err := url.Parse(r.URI)
		switch {
		case r.URI == "":
			c.errorf(at+".remote.uri", "required")
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Hostname() == "":
			c.errorf(at+".remote.uri", "%s: want an http:// or https:// URL with a host", quote(r.URI))
		}
		c.positive(at+".remote.request_timeout", r.RequestTimeout)
		if r.CacheDuration < minJWKSCacheDuration {
			c.errorf(at+".remote.cache_duration", "%v: want at least %v", r.CacheDuration, minJWKSCacheDuration)
		}
	case k.File == "" && k.Inline == "":
		c.errorf(at+"."+set[0], "empty")
	case k.Inline != "":
		if err := checkJWKS(k.Inline); err != nil {
			c.errorf(at+".inline", "not a JSON Web Key Set: %v", err)
		}
	}
}

// checkJWKS checks that s is a JSON object with a non-empty "keys" array
// of objects; the keys themselves are checked by the verifier.
func checkJWKS(s string) error {
	var set map[string]json.RawMessage
	if err := json.Unmarshal([]byte(s), &set); err != nil {
		return err
	}
	raw, ok := set["keys"]
	if !ok {
		return errors.New(`no "keys" member`)
	}
	var keys []json.RawMessage
	if err := json.Unmarshal(raw, &keys); err != nil || keys == nil {
		return errors.New(`"keys" is not an array`)
	}
	if len(keys) == 0 {
		return errors.New(`"keys" is empty`)
	}
	for i, k := range keys {
		var key map[string]json.RawMessage
		if err := json.Unmarshal(k, &key); err != nil || key == nil {
			return fmt.Errorf("keys[%d] is not an object", i)
		}
	}
	return nil
}

// location checks one token location; it returns the header name of a
// header location.
func (c *checker) location(at string, l JWTLocation) string {
	var set []string
	if l.Header != nil {
		set = append(set, "header")
	}
	if l.QueryParam != nil {
		set = append(set, "query_param")
	}
	if l.Cookie != nil {
		set = append(set, "cookie")
	}
	switch {
	case len(set) == 0:
		if c.decoded(at, reflect.TypeFor[JWTLocation]()) {
			c.errorf(at, "want exactly one of header, query_param or cookie, got none")
		}
		return ""
	case len(set) > 1:
		c.errorf(at, "want exactly one of header, query_param or cookie, got %s", strings.Join(set, " and "))
		return ""
	}
	switch {
	case l.Header != nil:
		switch h := l.Header.Name; {
		case h == "":
			c.errorf(at+".header.name", "required")
		case !token(h):
			c.errorf(at+".header.name", "%s is not a header name", quote(h))
		default:
			return h
		}
	case l.QueryParam != nil:
		switch q := l.QueryParam.Name; {
		case q == "":
			c.errorf(at+".query_param.name", "required")
		case !token(q) || strings.ContainsAny(q, "&=+%"):
			c.errorf(at+".query_param.name", "%s is not a query parameter name", quote(q))
		}
	case l.Cookie != nil:
		switch k := l.Cookie.Name; {
		case k == "":
			c.errorf(at+".cookie.name", "required")
		case !token(k):
			c.errorf(at+".cookie.name", "%s is not a cookie name", quote(k))
		}
	}
	return ""
}

// conflicts reports listeners that cannot be bound together: the same
// port on the same host, or on any host when one is a wildcard.
func (c *checker) conflicts(ls []listener) {
	exact := map[string]listener{}   // by host:port
	firstOn := map[string]listener{} // the first listener on each port
	wildOn := map[string]listener{}  // the first wildcard listener on each port
	for _, l := range ls {
		host, port, _ := net.SplitHostPort(l.addr)
		prev, clash := exact[net.JoinHostPort(host, port)]
		if !clash && wildcard(host) {
			prev, clash = firstOn[port]
		}
		if !clash {
			prev, clash = wildOn[port]
		}
		if clash {
			// Report on the key the file wrote, not on a default.
			this, other := l, prev
			if !c.f.written(this.path) && c.f.written(other.path) {
				this, other = other, this
			}
			note := ""
			if !c.f.written(other.path) && c.f.keys != nil {
				note = ", the default"
			}
			c.errorf(this.path, "%s conflicts with %s (%s%s)", quote(this.addr), other.path, other.addr, note)
			continue
		}
		exact[net.JoinHostPort(host, port)] = l
		if _, ok := firstOn[port]; !ok {
			firstOn[port] = l
		}
		if _, ok := wildOn[port]; !ok && wildcard(host) {
			wildOn[port] = l
		}
	}
}

func wildcard(host string) bool {
	ip := net.ParseIP(host)
	return host == "" || ip != nil && ip.IsUnspecified()
}

func (c *checker) telemetry() {
	t := c.f.Telemetry
	if e := t.OTLPEndpoint; e != "" {
		s := e
		if !strings.Contains(s, "://") {
			s = "http://" + s
		}
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
			c.errorf("telemetry.otlp_endpoint", "%s: want an http:// or https:// URL, or host:port", quote(e))
		}
	}
	switch t.OTLPProtocol {
	case "", "grpc", "http/protobuf":
	default:
		c.errorf("telemetry.otlp_protocol", "want grpc or http/protobuf, got %s", quote(t.OTLPProtocol))
	}
	c.fraction("telemetry.trace_sampling", t.TraceSampling)
	if a := t.AccessLog; a != nil {
		if a.Path == "" {
			c.errorf("telemetry.access_log.path", `want a file path or "-" for standard output`)
		}
		if a.Format != "json" && a.Format != "text" {
			c.errorf("telemetry.access_log.format", "want json or text, got %s", quote(a.Format))
		}
		c.fraction("telemetry.access_log.sampling", a.Sampling)
	}
}

func (c *checker) fraction(path string, f *float64) {
	if f != nil && !(*f >= 0 && *f <= 1) {
		c.errorf(path, "%v is not a fraction between 0 and 1", *f)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// gateway checks public.gateway: its own rules, and that the listener
// serves HTTP.
func (c *checker) gateway() {
	p := c.f.Public
	if p == nil || p.Gateway == nil {
		return
	}
	for _, fe := range confval.Fields(confval.Prefix("public.gateway", p.Gateway.Validate())) {
		if c.failed == nil || !c.failed(fe.Path) {
			c.errorf(fe.Path, "%s", fe.Msg)
		}
	}
	if p.Gateway.Enabled() && !p.Protocol.L7() {
		c.errorf("public.gateway", "needs public.protocol http, http2 or grpc (got %s)", p.Protocol)
	}
}

// overload checks the overload section.
func (c *checker) overload() {
	for _, fe := range confval.Fields(confval.Prefix("overload", c.f.Overload.Validate())) {
		c.errorf(fe.Path, "%s", fe.Msg)
	}
}

// ingress checks the ingress listeners and that their routes name
// upstreams of the file.
func (c *checker) ingress() {
	for _, fe := range confval.Fields(confval.Prefix("ingress", c.f.Ingress.Validate())) {
		if c.failed == nil || !c.failed(fe.Path) {
			c.errorf(fe.Path, "%s", fe.Msg)
		}
	}
	for i, l := range c.f.Ingress {
		for j, r := range l.Routes {
			if r.Upstream != "" && !slices.ContainsFunc(c.f.Upstreams, func(u Upstream) bool { return u.Name == r.Upstream }) {
				c.errorf(fmt.Sprintf("ingress[%d].routes[%d].upstream", i, j), "%s is not the name of one of the upstreams", quote(r.Upstream))
			}
		}
	}
}

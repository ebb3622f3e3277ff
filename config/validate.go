package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
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
	if !f.Authorization.ConsulIntentions {
		str(&f.Authorization.Default, Deny, "authorization.default")
	}
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
	if n := p.MaxHeaderBytes; n < minHeaderBytes || n > maxHeaderBytes {
		c.errorf("public.max_header_bytes", "%d is not between %d and %d", n, minHeaderBytes, maxHeaderBytes)
	}
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
	a := c.f.Authorization
	if a.ConsulIntentions {
		if c.f.Consul == nil {
			c.errorf("authorization.consul_intentions", "needs the consul section")
		}
		if c.f.Identity.Consul == nil {
			c.errorf("authorization.consul_intentions", "needs identity consul")
		}
		if len(a.Rules) > 0 {
			c.errorf("authorization.rules", "exclusive with consul_intentions")
		}
		if a.Default != "" {
			c.errorf("authorization.default", "not used with consul_intentions (Consul's default intention policy applies)")
		}
	} else if a.Default != Allow && a.Default != Deny {
		c.errorf("authorization.default", "want allow or deny, got %s", quote(a.Default))
	}
	if c.f.Public == nil {
		switch {
		case len(a.Rules) > 0:
			c.errorf("authorization.rules", "no public listener to authorize (add the public section)")
		case a.ConsulIntentions:
			c.errorf("authorization.consul_intentions", "no public listener to authorize (add the public section)")
		}
	}
	for i, r := range a.Rules {
		at := fmt.Sprintf("authorization.rules[%d]", i)
		if r.Action != Allow && r.Action != Deny {
			c.errorf(at, "want action allow or deny, got %s", quote(r.Action))
			continue
		}
		at += "." + r.Action
		switch {
		case r.SPIFFEID == "" && r.TrustDomain == "" && !c.ok(at+".spiffe_id", at+".trust_domain", at+".path_prefix"):
		case r.SPIFFEID == "" && r.TrustDomain == "":
			if r.PathPrefix != "" {
				c.errorf(at+".path_prefix", "needs trust_domain")
			} else {
				c.errorf(at, "want spiffe_id, or trust_domain with an optional path_prefix")
			}
		case r.SPIFFEID != "" && (r.TrustDomain != "" || r.PathPrefix != ""):
			c.errorf(at+".spiffe_id", "exclusive with trust_domain and path_prefix")
		}
		if r.SPIFFEID != "" {
			if _, err := spiffeid.FromString(r.SPIFFEID); err != nil {
				c.errorf(at+".spiffe_id", "%s is not a SPIFFE ID: %v", quote(r.SPIFFEID), err)
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
	}
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

package filter

import (
	"errors"
	"net/http"
	"net/netip"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/outrider-mesh/outrider/gateway/clientip"
	"github.com/outrider-mesh/outrider/internal/confval"
)

// Config is a route's security filtering. The zero Config filters
// nothing, and New's Wrap then returns the next handler unchanged.
type Config struct {
	// AllowCIDRs, when set, admits only clients whose address (the TCP
	// peer, or the address the listener's trusted proxies forwarded in
	// X-Forwarded-For) is in one of these prefixes or single addresses,
	// IPv4 or IPv6; others get 403.
	AllowCIDRs []string `yaml:"allow_cidrs"`
	// DenyCIDRs refuses clients in these prefixes with 403, whatever
	// AllowCIDRs says: deny wins.
	DenyCIDRs []string `yaml:"deny_cidrs"`
	// MaxBodyBytes bounds a request body as received (before any
	// decompression by the route's compress section). A Content-Length
	// above it is answered 413 before anything is read; a body of unknown
	// length (chunked, HTTP/2 without content-length) is counted as it is
	// read and never passed on past the limit. Default 0: no limit.
	MaxBodyBytes confval.ByteSize `yaml:"max_body_bytes"`
	// MaxHeaders bounds the request's header fields (Host counts as one),
	// 1 to 10000; more get 431. A tighter bound than the listener's
	// max_headers for this route; a looser one has no effect. Default 0:
	// the listener's bound only.
	MaxHeaders int `yaml:"max_headers"`
	// MaxHeaderBytes bounds the total length of the request's header
	// field names and values (Host included); more get 431. A tighter
	// bound than the listener's max_header_bytes (which counts the whole
	// head). Default 0: the listener's bound only.
	MaxHeaderBytes confval.ByteSize `yaml:"max_header_bytes"`
	// CORS answers preflight requests and adds the CORS response headers
	// for allowed origins (Fetch standard). Off unless allow_origins is
	// set.
	CORS CORS `yaml:"cors"`
	// ResponseHeaders are set on and removed from every response of the
	// route, after the security_headers preset.
	ResponseHeaders ResponseHeaders `yaml:"response_headers"`
	// SecurityHeaders adds a preset to every response of the route:
	// X-Content-Type-Options: nosniff, X-Frame-Options: DENY,
	// Referrer-Policy: no-referrer (each replacing the response's own),
	// and Content-Security-Policy: default-src 'none'; frame-ancestors
	// 'none' only when the response has neither a Content-Security-Policy
	// nor a Content-Security-Policy-Report-Only of its own.
	// response_headers' set and remove apply after it, so they override
	// it.
	SecurityHeaders bool `yaml:"security_headers"`
}

// CORS is the route's cross-origin resource sharing policy.
type CORS struct {
	// AllowOrigins are the origins allowed: exact ("https://app.example.com",
	// "http://localhost:8080": scheme, host and port if not the default,
	// no path), a single leading wildcard label ("https://*.example.com"
	// matches https://a.example.com, not https://example.com nor
	// https://a.b.example.com), or "*" alone (every origin; not with
	// allow_credentials). Compared without case. Required to turn CORS on.
	AllowOrigins []string `yaml:"allow_origins"`
	// AllowMethods are the methods a preflight may ask for. GET, HEAD and
	// POST are always allowed (CORS-safelisted). "*" allows any (the
	// requested method is echoed).
	AllowMethods []string `yaml:"allow_methods"`
	// AllowHeaders are the request headers a preflight may ask for,
	// without case. "*" allows any (the requested ones are echoed).
	AllowHeaders []string `yaml:"allow_headers"`
	// ExposeHeaders are the response headers scripts may read
	// (Access-Control-Expose-Headers) beyond the safelisted ones.
	ExposeHeaders []string `yaml:"expose_headers"`
	// AllowCredentials sends Access-Control-Allow-Credentials: true, so
	// that browsers send cookies and read the answer. Not with the "*"
	// origin.
	AllowCredentials bool `yaml:"allow_credentials"`
	// MaxAge is how long browsers may cache a preflight answer
	// (Access-Control-Max-Age, whole seconds). Default 0: not sent
	// (browsers then use 5 s).
	MaxAge time.Duration `yaml:"max_age"`
}

// ResponseHeaders edits the route's responses.
type ResponseHeaders struct {
	// Set maps header names to the value each response gets, replacing
	// the response's own.
	Set map[string]string `yaml:"set"`
	// Remove lists header names removed from each response.
	Remove []string `yaml:"remove"`
}

// Enabled reports whether c filters anything.
func (c Config) Enabled() bool {
	return len(c.AllowCIDRs) > 0 || len(c.DenyCIDRs) > 0 || c.MaxBodyBytes > 0 || c.MaxHeaders > 0 ||
		c.MaxHeaderBytes > 0 || c.CORS.enabled() || len(c.ResponseHeaders.Set) > 0 ||
		len(c.ResponseHeaders.Remove) > 0 || c.SecurityHeaders
}

func (c CORS) enabled() bool { return len(c.AllowOrigins) > 0 }

// maxFields matches the listener's own bound on max_headers.
const maxFields = 10000

// Validate reports every problem in c, as FieldErrors joined.
func (c Config) Validate() error {
	var errs []error
	bad := func(path, format string, args ...any) {
		errs = append(errs, confval.Errorf(path, format, args...))
	}
	for _, l := range []struct {
		key  string
		list []string
	}{{"allow_cidrs", c.AllowCIDRs}, {"deny_cidrs", c.DenyCIDRs}} {
		for i, s := range l.list {
			if _, err := clientip.ParsePrefix(s); err != nil {
				bad(l.key+"["+strconv.Itoa(i)+"]", "%v", err)
			}
		}
	}
	if c.MaxBodyBytes < 0 {
		bad("max_body_bytes", "negative size (want 0 for no limit, or a size such as \"10MiB\")")
	}
	if c.MaxHeaders < 0 || c.MaxHeaders > maxFields {
		bad("max_headers", "%d out of range (want 1 to %d, or 0 for the listener's bound)", c.MaxHeaders, maxFields)
	}
	if c.MaxHeaderBytes < 0 {
		bad("max_header_bytes", "negative size (want 0 for the listener's bound, or a size such as \"8KiB\")")
	}
	if err := c.CORS.validate(); err != nil {
		errs = append(errs, confval.Prefix("cors", err))
	}
	if err := c.ResponseHeaders.validate(c.CORS.enabled()); err != nil {
		errs = append(errs, confval.Prefix("response_headers", err))
	}
	return errors.Join(errs...)
}

func (c CORS) validate() error {
	var errs []error
	bad := func(path, format string, args ...any) {
		errs = append(errs, confval.Errorf(path, format, args...))
	}
	if !c.enabled() {
		if len(c.AllowMethods) > 0 || len(c.AllowHeaders) > 0 || len(c.ExposeHeaders) > 0 || c.AllowCredentials || c.MaxAge != 0 {
			bad("allow_origins", "required: CORS is off without it, so the other cors keys would do nothing")
		}
		return errors.Join(errs...)
	}
	for i, s := range c.AllowOrigins {
		p := "allow_origins[" + strconv.Itoa(i) + "]"
		if s == "*" {
			if len(c.AllowOrigins) > 1 {
				bad(p, "\"*\" allows every origin: list it alone")
			}
			if c.AllowCredentials {
				bad(p, "\"*\" cannot be used with allow_credentials (browsers refuse it, and echoing every origin with credentials would let any site read authenticated answers); list the origins")
			}
			continue
		}
		if _, err := parseOrigin(s); err != nil {
			bad(p, "%v", err)
		}
	}
	for i, m := range c.AllowMethods {
		if m != "*" && !validToken(m) {
			bad("allow_methods["+strconv.Itoa(i)+"]", "%q is not an HTTP method", m)
		}
	}
	for _, l := range []struct {
		key  string
		list []string
	}{{"allow_headers", c.AllowHeaders}, {"expose_headers", c.ExposeHeaders}} {
		for i, h := range l.list {
			if h != "*" && !validToken(h) {
				bad(l.key+"["+strconv.Itoa(i)+"]", "%q is not a header name", h)
			}
		}
	}
	if c.AllowCredentials && slices.Contains(c.ExposeHeaders, "*") {
		bad("expose_headers", "\"*\" exposes nothing with allow_credentials (browsers read it as a header name); list the headers")
	}
	if c.MaxAge < 0 || c.MaxAge%time.Second != 0 {
		bad("max_age", "%s: want a whole number of seconds such as \"10m\", or 0 to send none", c.MaxAge)
	}
	return errors.Join(errs...)
}

// reserved are response fields a filter must not set or remove: they
// frame the message or belong to the connection.
var reserved = []string{"Connection", "Content-Length", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade", "Host"}

func (r ResponseHeaders) validate(cors bool) error {
	var errs []error
	bad := func(path, format string, args ...any) {
		errs = append(errs, confval.Errorf(path, format, args...))
	}
	check := func(path, name string) {
		canon := textproto.CanonicalMIMEHeaderKey(name)
		switch {
		case !validToken(name):
			bad(path, "%q is not a header name", name)
		case slices.Contains(reserved, canon):
			bad(path, "%s frames the message or the connection; it cannot be changed here", canon)
		case cors && isCORSHeader(canon):
			bad(path, "%s is set by the route's cors section", canon)
		}
	}
	removed := map[string]int{}
	for i, name := range r.Remove {
		p := "remove[" + strconv.Itoa(i) + "]"
		check(p, name)
		canon := textproto.CanonicalMIMEHeaderKey(name)
		if j, dup := removed[canon]; dup {
			bad(p, "%s is also remove[%d]", canon, j)
		}
		removed[canon] = i
	}
	names := make([]string, 0, len(r.Set))
	for name := range r.Set {
		names = append(names, name)
	}
	slices.Sort(names)
	set := map[string]string{}
	for _, name := range names {
		p := "set." + name
		check(p, name)
		canon := textproto.CanonicalMIMEHeaderKey(name)
		if other, dup := set[canon]; dup {
			bad(p, "the same header as set.%s (names are compared without case)", other)
		}
		set[canon] = name
		if j, both := removed[canon]; both {
			bad(p, "%s is also remove[%d]; set replaces the response's value already", canon, j)
		}
		if v := r.Set[name]; !validValue(v) {
			bad(p, "%q: a value must not contain CR, LF, NUL or other control characters", v)
		} else if v == "" {
			bad(p, "empty value; to drop the header, list it under remove")
		}
	}
	return errors.Join(errs...)
}

// isCORSHeader reports whether canon (canonical) is a CORS response field.
func isCORSHeader(canon string) bool { return strings.HasPrefix(canon, "Access-Control-") }

// validToken reports whether s is an RFC 9110 token (a method or a field
// name).
func validToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"(),/:;<=>?@[\\]{}", c) >= 0 {
			return false
		}
	}
	return s != ""
}

// validValue reports whether s can be sent as a field value: no control
// characters other than horizontal tab (so no CR, LF or NUL), no DEL.
func validValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// origin is one compiled allow_origins entry.
type origin struct {
	// exact is the whole origin, lower case; empty for a wildcard.
	exact string
	// echo is exact as a header value, shared by every response.
	echo []string
	// prefix ("https://") and suffix (".example.com:8443") surround the
	// wildcard label.
	prefix, suffix string
}

// parseOrigin compiles an allow_origins entry other than "*": an exact
// origin or one with a single leading wildcard label.
func parseOrigin(s string) (origin, error) {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return origin{}, errors.New(strconv.Quote(s) + ": write an internationalized host name in its ASCII (punycode) form, as browsers send it")
		}
	}
	l := strings.ToLower(s)
	scheme, rest, ok := strings.Cut(l, "://")
	if !ok || !validScheme(scheme) {
		return origin{}, errors.New(strconv.Quote(s) + " is not an origin: want scheme://host[:port], such as \"https://app.example.com\"")
	}
	if strings.ContainsAny(rest, "/?#@") {
		return origin{}, errors.New(strconv.Quote(s) + " is not an origin: an origin is scheme://host[:port], without a path (not even \"/\"), query, fragment or user")
	}
	host, port := rest, ""
	if i := strings.LastIndexByte(rest, ':'); i >= 0 && !strings.HasSuffix(rest, "]") {
		host, port = rest[:i], rest[i+1:]
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || port[0] == '0' {
			return origin{}, errors.New(strconv.Quote(s) + ": " + strconv.Quote(port) + " is not a port")
		}
	}
	wild := strings.HasPrefix(host, "*.")
	name := host
	if wild {
		name = host[2:]
	}
	if strings.Contains(name, "*") {
		return origin{}, errors.New(strconv.Quote(s) + ": a wildcard may only be the whole first label of the host, as in \"https://*.example.com\"")
	}
	if !validHost(name) || wild && strings.HasPrefix(name, "[") {
		return origin{}, errors.New(strconv.Quote(s) + ": " + strconv.Quote(host) + " is not a host name or IP address")
	}
	if !wild {
		return origin{exact: l, echo: []string{l}}, nil
	}
	sfx := host[1:]
	if port != "" {
		sfx += ":" + port
	}
	return origin{prefix: scheme + "://", suffix: sfx}, nil
}

func validScheme(s string) bool {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// validHost accepts a DNS name (letters, digits, '-' in dot-separated
// non-empty labels, lower case), an IPv4 address or a bracketed IPv6 one.
func validHost(h string) bool {
	if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		a, err := netip.ParseAddr(h[1 : len(h)-1])
		return err == nil && a.Is6() && a.Zone() == ""
	}
	if h == "" || len(h) > 253 {
		return false
	}
	for label := range strings.SplitSeq(h, ".") {
		if !validLabel(label) {
			return false
		}
	}
	return true
}

func validLabel(l string) bool {
	if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	for i := 0; i < len(l); i++ {
		if c := l[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// match reports whether the request's Origin value o is allowed by p,
// and the value to echo in Access-Control-Allow-Origin. Case is ignored
// for ASCII letters only: no other byte matches a letter.
func (p *origin) match(o string) ([]string, bool) {
	if p.exact != "" {
		if foldEqual(o, p.exact) {
			return p.echo, true
		}
		return nil, false
	}
	n := len(o) - len(p.prefix) - len(p.suffix)
	if n < 1 || !foldEqual(o[:len(p.prefix)], p.prefix) || !foldEqual(o[len(o)-len(p.suffix):], p.suffix) {
		return nil, false
	}
	if !validLabelFold(o[len(p.prefix) : len(p.prefix)+n]) {
		return nil, false
	}
	return []string{o}, true
}

// foldEqual reports whether s equals lower, which is lower case, with
// ASCII letters of s compared without case.
func foldEqual(s, lower string) bool {
	if len(s) != len(lower) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// validLabelFold is validLabel without case.
func validLabelFold(l string) bool {
	if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	for i := 0; i < len(l); i++ {
		if c := l[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// safelistedMethod reports the methods the Fetch standard never needs a
// preflight's permission for.
func safelistedMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodPost
}

package sidecar

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/outrider-mesh/outrider/policy"
	"github.com/outrider-mesh/outrider/policy/jwtauth"
	"github.com/outrider-mesh/outrider/policy/pathnorm"
	"github.com/outrider-mesh/outrider/sidecar/http1"
	"github.com/outrider-mesh/outrider/telemetry/tracing"
)

// Per-request authorization on the inbound side of HTTP services: the
// request's path is normalized (package pathnorm) and the normalized path is
// both what the rules match and what the application receives; bearer
// tokens are verified by the JWT providers the deciding rules name; the
// decision goes to metrics, the log, the server span and the access log;
// a denial is answered here and never forwarded.

// Error codes of policy answers (x-outrider-error).
const (
	errUnauthenticated = "unauthenticated"
	errAmbiguousHeader = "ambiguous_header"
	errBadPath         = "bad_path"
)

// connAuthz decides the requests of one inbound connection, from one peer.
// It is used on the connection's goroutine (HTTP/1.1) or by concurrent
// stream handlers (HTTP/2): it holds no per-request state.
type connAuthz struct {
	in   *inbound
	peer spiffeid.ID
}

// decide authorizes r and records the decision in metrics and logs.
func (a *connAuthz) decide(r *policy.Request) policy.Decision {
	in := a.in
	d := in.authz.Authorize(a.peer, r)
	switch {
	case d.DryRun:
		in.metrics.AuthzWouldDeny(d.Rule)
		if n, ok := in.dryRunLog.Allow(); ok {
			in.log.Info("dry run: request would be denied", "peer", a.peer.String(), "method", r.Method, "path", r.Path,
				"rule", d.Rule, "reason", d.Reason, "not_logged_since_last", n)
		}
	default:
		in.metrics.AuthzDecision(d.Allow, d.Rule)
	}
	if !d.Allow {
		in.stat.denied.Add(1)
		in.log.Warn("request denied", "peer", a.peer.String(), "method", r.Method, "path", r.Path,
			"status", d.Code.Status(), "rule", d.Rule, "reason", d.Reason)
	}
	return d
}

// denial is how a denied request is answered.
type denial struct {
	status    int
	code      string // x-outrider-error
	body      string
	grpc      int    // gRPC status code
	challenge string // WWW-Authenticate, for 401
}

func denialFor(d policy.Decision, tokenErr error) denial {
	switch d.Code {
	case policy.CodeUnauthenticated:
		challenge := `Bearer realm="` + d.Provider + `"`
		var je *jwtauth.Error
		if errors.As(tokenErr, &je) {
			challenge = je.WWWAuthenticate()
		}
		return denial{401, errUnauthenticated, "unauthenticated", 16, challenge}
	case policy.CodeBadRequest:
		return denial{400, errAmbiguousHeader, "a header the policy depends on was sent more than once", 3, ""}
	default:
		return denial{403, errDenied, "denied by policy", 7, ""}
	}
}

// noteDecision puts the decision on the server span (when it records).
func noteDecision(span trace.Span, d policy.Decision) {
	if span == nil || !span.IsRecording() {
		return
	}
	verdict := "deny"
	switch {
	case d.DryRun:
		verdict = "would_deny"
	case d.Allow:
		verdict = "allow"
	}
	tracing.SetAttributes(span, attribute.String("outrider.authz.decision", verdict), attribute.String("outrider.authz.rule", d.Rule))
}

// h1Headers is policy.Headers over an HTTP/1.1 head.
type h1Headers struct{ h *http1.Header }

func (h h1Headers) Header(name string) (string, int) {
	v, n := h.h.Lookup(name)
	return unsafeString(v), n
}

// Joined is route.Headers': the values of a repeated field, joined.
func (h h1Headers) Joined(name string) string {
	return string(bytes.Join(h.h.Values(name), []byte(",")))
}

// h1JWTRequest is jwtauth.Request over an HTTP/1.1 head.
type h1JWTRequest struct{ req *http1.RequestHead }

func (r h1JWTRequest) Header(name string) (string, int) { return h1Headers{&r.req.Header}.Header(name) }

func (r h1JWTRequest) Query(name string) (string, bool) {
	v, ok := r.req.Query(name)
	return unsafeString(v), ok
}

func (r h1JWTRequest) Cookie(name string) (string, bool) {
	v, ok := r.req.Header.Cookie(name)
	return unsafeString(v), ok
}

// tokenMemo verifies each provider's token at most once per request and
// remembers what it found, for forwarding claims and stripping the token
// once the request is allowed. One per HTTP/1.1 connection (reset per
// request) or per HTTP/2 request.
type tokenMemo struct {
	v       *jwtauth.Verifier
	req     jwtauth.Request
	results []tokenResult
}

type tokenResult struct {
	provider string
	claims   *jwtauth.Claims
	found    jwtauth.Found
	err      error
}

func (m *tokenMemo) reset(req jwtauth.Request) {
	m.req = req
	clear(m.results)
	m.results = m.results[:0]
}

// Authenticate implements policy.Authenticator.
func (m *tokenMemo) Authenticate(provider string) (policy.Claims, error) {
	for i := range m.results {
		if r := &m.results[i]; r.provider == provider {
			if r.err != nil {
				return nil, r.err
			}
			return r.claims, nil
		}
	}
	c, found, err := m.v.Authenticate(provider, m.req)
	m.results = append(m.results, tokenResult{provider: provider, claims: c, found: found, err: err})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// errFor is the verification error of provider's token, if one was tried.
// verified returns the claims of the first token verified for the
// request, nil when none was.
func (m *tokenMemo) verified() *jwtauth.Claims {
	for _, r := range m.results {
		if r.err == nil && r.claims != nil {
			return r.claims
		}
	}
	return nil
}

func (m *tokenMemo) errFor(provider string) error {
	for _, r := range m.results {
		if r.provider == provider {
			return r.err
		}
	}
	return nil
}

// headerEditor is what forwarding claims and stripping tokens change.
type headerEditor interface {
	set(name, value string)
	del(name string)
	// cookie returns the Cookie field values; setCookies replaces them.
	cookies() []string
	setCookies(values []string)
	// stripQuery removes a query parameter from the request target.
	stripQuery(name string)
}

// spoofable removes, from every request, the fields the providers
// forward claims in: only the sidecar may set them.
func spoofable(v *jwtauth.Verifier, e headerEditor) {
	for _, name := range v.ForwardedHeaders() {
		e.del(name)
	}
}

// forward applies the verified providers' forwarding: claims as headers,
// the payload header, and the token stripped when configured.
func (m *tokenMemo) forward(e headerEditor) {
	for _, r := range m.results {
		if r.err != nil || r.claims == nil {
			continue
		}
		p, ok := m.v.Provider(r.provider)
		if !ok {
			continue
		}
		for _, c := range p.ForwardClaims {
			if v, ok := r.claims.Text(c.Path); ok && validFieldValue(v) {
				e.set(c.Header, v)
			}
		}
		if p.ForwardPayloadHeader != "" {
			e.set(p.ForwardPayloadHeader, r.claims.Payload())
		}
		if p.StripToken {
			strip(e, r.found.Location)
		}
	}
}

func strip(e headerEditor, loc jwtauth.Location) {
	switch {
	case loc.Header != "":
		e.del(loc.Header)
	case loc.Query != "":
		e.stripQuery(loc.Query)
	case loc.Cookie != "":
		var out []string
		for _, v := range e.cookies() {
			if kept := dropCookie(v, loc.Cookie); kept != "" {
				out = append(out, kept)
			}
		}
		e.setCookies(out)
	}
}

// dropCookie removes the pairs named name from a Cookie field value.
func dropCookie(v, name string) string {
	var kept []string
	for _, pair := range strings.Split(v, ";") {
		pair = strings.TrimSpace(pair)
		k, _, _ := strings.Cut(pair, "=")
		if pair != "" && k != name {
			kept = append(kept, pair)
		}
	}
	return strings.Join(kept, "; ")
}

// dropQuery removes the parameters named name from a raw query.
func dropQuery(q, name string) string {
	var kept []string
	for _, kv := range strings.Split(q, "&") {
		k, _, _ := strings.Cut(kv, "=")
		if dk, err := url.QueryUnescape(k); err == nil && dk == name {
			continue
		}
		if kv != "" {
			kept = append(kept, kv)
		}
	}
	return strings.Join(kept, "&")
}

func validFieldValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// h1Editor edits an HTTP/1.1 request head.
type h1Editor struct{ hc *h1Conn }

func (e h1Editor) set(name, value string) { e.hc.req.Header.Set(name, value) }
func (e h1Editor) del(name string)        { e.hc.req.Header.Del(name) }

func (e h1Editor) cookies() []string {
	var out []string
	for _, v := range e.hc.req.Header.Values("Cookie") {
		out = append(out, string(v))
	}
	return out
}

func (e h1Editor) setCookies(values []string) {
	e.hc.req.Header.Del("Cookie")
	for _, v := range values {
		e.hc.req.Header.Add("Cookie", v)
	}
}

func (e h1Editor) stripQuery(name string) {
	t := string(e.hc.req.Target)
	path, q, ok := strings.Cut(t, "?")
	if !ok {
		return
	}
	if q = dropQuery(q, name); q != "" {
		path += "?" + q
	}
	e.hc.targetBuf = append(e.hc.targetBuf[:0], path...)
	e.hc.req.Target = e.hc.targetBuf
}

// h2Editor edits a net/http request.
type h2Editor struct{ r *http.Request }

func (e h2Editor) set(name, value string) { e.r.Header.Set(name, value) }
func (e h2Editor) del(name string)        { e.r.Header.Del(name) }
func (e h2Editor) cookies() []string      { return e.r.Header.Values("Cookie") }
func (e h2Editor) setCookies(values []string) {
	e.r.Header.Del("Cookie")
	for _, v := range values {
		e.r.Header.Add("Cookie", v)
	}
}

func (e h2Editor) stripQuery(name string) {
	e.r.URL.RawQuery = dropQuery(e.r.URL.RawQuery, name)
}

// h2Headers is policy.Headers over net/http's header map (names arrive
// canonical).
type h2Headers http.Header

func (h h2Headers) Header(name string) (string, int) {
	v := h[name]
	if len(v) == 0 {
		return "", 0
	}
	return v[0], len(v)
}

// Joined is route.Headers': the values of a repeated field, joined.
func (h h2Headers) Joined(name string) string { return strings.Join(h[name], ",") }

// h2JWTRequest is jwtauth.Request over a net/http request.
type h2JWTRequest struct{ r *http.Request }

func (r h2JWTRequest) Header(name string) (string, int) {
	v := r.r.Header[textproto.CanonicalMIMEHeaderKey(name)]
	if len(v) == 0 {
		return "", 0
	}
	return v[0], len(v)
}

func (r h2JWTRequest) Query(name string) (string, bool) {
	q := r.r.URL.Query()
	if _, ok := q[name]; !ok {
		return "", false
	}
	return q.Get(name), true
}

func (r h2JWTRequest) Cookie(name string) (string, bool) {
	c, err := r.r.Cookie(name)
	if err != nil {
		return "", false
	}
	return c.Value, true
}

// splitTarget finds the path of an origin-form or absolute-form request
// target: target[start:end] is the path, target[end:] the query (with its
// '?'). ok is false for an authority-form (CONNECT) or asterisk-form
// target, which has no path (start == end == len). The scheme of an
// absolute-form target is matched without case, as http1 accepts it (RFC
// 9110 section 4.2.3): "HTTP://web/admin" has the path /admin. An
// absolute-form target without a path ("http://web", "http://web?q") has
// an empty one (start == end), which stands for "/" (RFC 9110 section
// 4.2.3: an empty path is equivalent to "/"); callers route and authorize
// it as "/", and normalizeH1 forwards it with "/".
func splitTarget(t []byte) (start, end int, ok bool) {
	switch {
	case len(t) > 0 && t[0] == '/':
		start = 0
	case hasPrefixFold(t, "http://") || hasPrefixFold(t, "https://"):
		rest := t[bytes.Index(t, []byte("://"))+3:]
		i := bytes.IndexAny(rest, "/?")
		if i < 0 {
			return len(t), len(t), true
		}
		start = len(t) - len(rest) + i
	default:
		return len(t), len(t), false
	}
	end = len(t)
	if i := bytes.IndexByte(t[start:], '?'); i >= 0 {
		end = start + i
	}
	return start, end, true
}

// hasPrefixFold reports whether t begins with the lower-case ASCII prefix,
// ignoring ASCII case only.
func hasPrefixFold(t []byte, prefix string) bool {
	if len(t) < len(prefix) {
		return false
	}
	for i := range len(prefix) {
		if c := t[i]; c != prefix[i] && !('A' <= c && c <= 'Z' && c+'a'-'A' == prefix[i]) {
			return false
		}
	}
	return true
}

// rootPath is the path of an absolute-form target that has none.
var rootPath = []byte("/")

// normalizeH1 normalizes the path of hc.req's target; when it changes,
// the target is rebuilt in the connection's buffer. It returns the path
// the rules see.
func (hc *h1Conn) normalizeH1(o pathnorm.Options) (string, error) {
	t := hc.req.Target
	start, end, ok := splitTarget(t)
	if !ok {
		if len(t) > 0 && t[0] == '*' {
			return "*", nil
		}
		return "", nil
	}
	path := t[start:end]
	np := rootPath // "http://web" is forwarded as "http://web/"
	if len(path) > 0 {
		var err error
		if np, err = pathnorm.Normalize(hc.pathBuf[:0], path, o); err != nil {
			return "", err
		}
		if len(np) == len(path) && &np[0] == &path[0] {
			return unsafeString(path), nil
		}
		hc.pathBuf = np[:0]
	}
	// targetBuf and pathBuf are the connection's own; t is the head's.
	buf := append(hc.targetBuf[:0], t[:start]...)
	buf = append(buf, np...)
	buf = append(buf, t[end:]...)
	hc.targetBuf = buf
	hc.req.Target = buf
	return unsafeString(buf[start : start+len(np)]), nil
}

// normalizeH2 normalizes r's path the same way: the rules see it and the
// application receives it. The raw path as sent is normalized (not the
// decoded r.URL.Path), so encoded slashes and dot segments are seen.
func normalizeH2(r *http.Request, o pathnorm.Options) (string, error) {
	raw := r.URL.EscapedPath()
	if r.RequestURI != "" && r.RequestURI[0] == '/' {
		raw, _, _ = strings.Cut(r.RequestURI, "?")
	}
	if raw == "" || r.Method == http.MethodConnect {
		return raw, nil
	}
	np, err := pathnorm.String(raw, o)
	if err != nil {
		return "", err
	}
	u, err := url.Parse(np)
	if err != nil {
		return "", err
	}
	r.URL.Path, r.URL.RawPath = u.Path, u.RawPath
	return np, nil
}

// logBadPath logs a request refused for its path, once per request.
func logBadPath(log *slog.Logger, peer, method, target string, err error) {
	if log.Enabled(context.Background(), slog.LevelWarn) {
		log.Warn("request with a malformed path rejected", "peer", peer, "method", method, "target", target, "reason", err)
	}
}

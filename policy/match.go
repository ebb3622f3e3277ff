package policy

import (
	"errors"
	"fmt"
	"strings"

	"github.com/outrider-mesh/outrider/internal/httpmatch"
)

// HTTPMatch matches a request by path, method and headers; every matcher
// given must match. It is the HTTP part of a Consul intention permission
// (IntentionHTTPPermission) and of a local rule.
type HTTPMatch struct {
	// At most one of PathExact, PathPrefix and PathRegex. Each is compared
	// with Request.Path, the normalized path without the query, case
	// sensitively. PathPrefix is a plain string prefix, as in Consul and
	// Envoy ("/admin" also covers "/administrator"; write "/admin/" to
	// stop at a segment). PathRegex (RE2 syntax) must match the whole path.
	PathExact, PathPrefix, PathRegex string
	// Methods, when not empty, lists the methods that match.
	Methods []string
	// Headers must all match.
	Headers []HeaderMatch
}

// HeaderMatch matches one request header field (IntentionHTTPHeaderPermission).
// Exactly one of Present, Exact, Prefix, Suffix, Contains and Regex is set.
// A header sent more than once never matches: the request is answered 400
// (CodeBadRequest), because a rule must not guess which value counts.
type HeaderMatch struct {
	Name                                   string
	Present                                bool
	Exact, Prefix, Suffix, Contains, Regex string
	// Invert negates the match (with Present: the header is absent).
	Invert bool
	// IgnoreCase compares Exact, Prefix, Suffix and Contains without ASCII
	// case.
	IgnoreCase bool
}

// JWTRequirement needs a valid token from any one of Providers whose
// claims all verify (IntentionJWTRequirement).
type JWTRequirement struct {
	Providers []JWTProvider
}

// JWTProvider names a provider and the claims its token must carry.
type JWTProvider struct {
	Name         string
	VerifyClaims []ClaimCheck
}

// ClaimCheck requires the claim at Path to have Value (Claims.Match).
type ClaimCheck struct {
	Path  []string
	Value string
}

// httpMatcher is a compiled HTTPMatch.
type httpMatcher struct {
	path            httpmatch.Path
	methods         []string
	methodsFoldCase bool // deny: methods match whatever their case
	headers         []httpmatch.Header
}

// compileHTTP validates m. deny makes methods match without case, so that
// a case trick cannot pass a deny while an allow stays exact: both fail
// closed. A nil m compiles to nil (no HTTP matcher).
func compileHTTP(m *HTTPMatch, deny bool) (*httpMatcher, error) {
	if m == nil {
		return nil, nil
	}
	c := &httpMatcher{methodsFoldCase: deny}
	path, err := httpmatch.CompilePath(httpmatch.PathSpec{Exact: m.PathExact, Prefix: m.PathPrefix, Regex: m.PathRegex})
	if err != nil {
		return nil, err
	}
	c.path = path
	for _, meth := range m.Methods {
		if meth == "" || strings.ContainsAny(meth, " \t\r\n") {
			return nil, fmt.Errorf("method %q is not a token", meth)
		}
		c.methods = append(c.methods, meth)
	}
	for i, h := range m.Headers {
		hm, err := compileHeader(h)
		if err != nil {
			return nil, fmt.Errorf("header %d (%s): %w", i, h.Name, err)
		}
		c.headers = append(c.headers, hm)
	}
	return c, nil
}

// compileHeader compiles one header criterion. An inverted value matcher
// matches an absent header (the header is "not equal"), as policy has always
// done; Envoy's RBAC HeaderMatcher, which Consul generates for intentions,
// would not match it.
func compileHeader(h HeaderMatch) (httpmatch.Header, error) {
	return httpmatch.CompileHeader(httpmatch.HeaderSpec{Name: h.Name, Present: h.Present, Exact: h.Exact,
		Prefix: h.Prefix, Suffix: h.Suffix, Contains: h.Contains, Regex: h.Regex, Invert: h.Invert,
		IgnoreCase: h.IgnoreCase, InvertMatchesAbsent: true})
}

// outcome of matching a request against one matcher.
type outcome uint8

const (
	noMatch outcome = iota
	match
	// ambiguous: a header the matcher depends on was sent twice.
	ambiguous
)

// match reports whether r matches; ambiguous names the header field.
func (c *httpMatcher) match(r *Request) (outcome, string) {
	if !c.path.Matches(r.Path) {
		return noMatch, ""
	}
	if len(c.methods) > 0 && !c.methodMatches(r.Method) {
		return noMatch, ""
	}
	for i := range c.headers {
		h := &c.headers[i]
		v, n := "", 0
		if r.Header != nil {
			v, n = r.Header.Header(h.Name())
		}
		if n > 1 {
			return ambiguous, h.Name()
		}
		if !h.Matches(v, n == 1) {
			return noMatch, ""
		}
	}
	return match, ""
}

func (c *httpMatcher) methodMatches(m string) bool {
	for _, want := range c.methods {
		if m == want || c.methodsFoldCase && strings.EqualFold(m, want) {
			return true
		}
	}
	return false
}

// jwtMatcher is a compiled JWTRequirement.
type jwtMatcher struct {
	providers []JWTProvider
}

func compileJWT(j *JWTRequirement) (*jwtMatcher, error) {
	if j == nil {
		return nil, nil
	}
	if len(j.Providers) == 0 {
		return nil, errors.New("JWT requirement names no provider")
	}
	m := &jwtMatcher{}
	for i, p := range j.Providers {
		if p.Name == "" {
			return nil, fmt.Errorf("JWT provider %d has no name", i)
		}
		for k, c := range p.VerifyClaims {
			if len(c.Path) == 0 {
				return nil, fmt.Errorf("JWT provider %s: VerifyClaims[%d] has an empty path", p.Name, k)
			}
		}
		m.providers = append(m.providers, JWTProvider{Name: p.Name, VerifyClaims: append([]ClaimCheck(nil), p.VerifyClaims...)})
	}
	return m, nil
}

// jwtOutcome is what a JWT requirement found.
type jwtOutcome struct {
	ok bool
	// unauthenticated: no provider had a valid token (provider names the
	// first tried); otherwise a token was valid but its claims did not
	// verify.
	unauthenticated bool
	provider        string
}

func (m *jwtMatcher) match(r *Request) jwtOutcome {
	out := jwtOutcome{unauthenticated: true, provider: m.providers[0].Name}
	for i := range m.providers {
		p := &m.providers[i]
		if r.Auth == nil {
			continue
		}
		claims, err := r.Auth.Authenticate(p.Name)
		if err != nil {
			continue
		}
		out.unauthenticated = false
		if claimsMatch(claims, p.VerifyClaims) {
			return jwtOutcome{ok: true, provider: p.Name}
		}
	}
	return out
}

func claimsMatch(c Claims, checks []ClaimCheck) bool {
	for _, k := range checks {
		if !c.Match(k.Path, k.Value) {
			return false
		}
	}
	return true
}

// describeHTTP renders a matcher for summaries, e.g.
// "path_prefix=/admin methods=GET,HEAD header x-a exact".
func describeHTTP(m *HTTPMatch) string {
	if m == nil {
		return ""
	}
	var parts []string
	switch {
	case m.PathExact != "":
		parts = append(parts, "path_exact="+m.PathExact)
	case m.PathPrefix != "":
		parts = append(parts, "path_prefix="+m.PathPrefix)
	case m.PathRegex != "":
		parts = append(parts, "path_regex="+m.PathRegex)
	}
	if len(m.Methods) > 0 {
		parts = append(parts, "methods="+strings.Join(m.Methods, ","))
	}
	for _, h := range m.Headers {
		s := "header " + h.Name
		if h.Invert {
			s += " not"
		}
		switch {
		case h.Present:
			s += " present"
		case h.Exact != "":
			s += " exact=" + h.Exact
		case h.Prefix != "":
			s += " prefix=" + h.Prefix
		case h.Suffix != "":
			s += " suffix=" + h.Suffix
		case h.Contains != "":
			s += " contains=" + h.Contains
		case h.Regex != "":
			s += " regex=" + h.Regex
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

func describeJWT(j *JWTRequirement) string {
	if j == nil {
		return ""
	}
	var names []string
	for _, p := range j.Providers {
		s := p.Name
		for _, c := range p.VerifyClaims {
			s += " " + strings.Join(c.Path, ".") + "=" + c.Value
		}
		names = append(names, s)
	}
	return "jwt " + strings.Join(names, " | ")
}

// names returns the provider names a requirement uses.
func (j *JWTRequirement) names() []string {
	if j == nil {
		return nil
	}
	var out []string
	for _, p := range j.Providers {
		out = append(out, p.Name)
	}
	return out
}

package main

import (
	"fmt"
	"log/slog"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/outrider-mesh/outrider/config"
	"github.com/outrider-mesh/outrider/policy"
	"github.com/outrider-mesh/outrider/policy/jwtauth"
)

// localPolicy is an authorization section (outrider.yaml's, or a -policy
// file's) turned into what the sidecar runs.
type localPolicy struct {
	rules *policy.Rules
	// jwt is nil without jwt_providers.
	jwt *jwtauth.Verifier
}

// compilePolicy compiles a's rules and JWT providers. Key paths in errors
// are prefixed with at ("authorization." in outrider.yaml, "" in a
// -policy file).
func compilePolicy(a *config.Authorization, at string, log *slog.Logger) (*localPolicy, error) {
	rules := make([]policy.Rule, len(a.Rules))
	for i, r := range a.Rules {
		rule, err := localRule(r)
		if err != nil {
			return nil, fmt.Errorf("%srules[%d]: %w", at, i, err)
		}
		rules[i] = rule
	}
	c, err := policy.CompileRules(rules, policy.RulesOptions{
		DefaultAllow: a.Default == config.Allow, DryRun: a.DryRun, JWT: jwtRequirement(a.JWT)})
	if err != nil {
		return nil, fmt.Errorf("%s%w", at, err)
	}
	lp := &localPolicy{rules: c}
	if len(a.JWTProviders) > 0 {
		providers := make([]jwtauth.Provider, len(a.JWTProviders))
		for i, p := range a.JWTProviders {
			providers[i] = jwtProvider(p)
		}
		v, err := jwtauth.New(providers, jwtauth.WithLogger(log))
		if err != nil {
			return nil, fmt.Errorf("%sjwt_providers: %w", at, err)
		}
		lp.jwt = v
	}
	for _, name := range c.Providers() {
		if lp.jwt == nil {
			return nil, fmt.Errorf("%sjwt: provider %q is not in jwt_providers", at, name)
		}
		if _, ok := lp.jwt.Provider(name); !ok {
			return nil, fmt.Errorf("%sjwt: provider %q is not in jwt_providers", at, name)
		}
	}
	return lp, nil
}

func localRule(r config.Rule) (policy.Rule, error) {
	rule := policy.Rule{Name: r.Name, Allow: r.Action == config.Allow, PathPrefix: r.PathPrefix, Pattern: r.SPIFFEIDPattern,
		JWT: jwtRequirement(r.JWT)}
	var err error
	if r.SPIFFEID != "" {
		if rule.ID, err = spiffeid.FromString(r.SPIFFEID); err != nil {
			return rule, fmt.Errorf("spiffe_id: %w", err)
		}
	}
	if r.TrustDomain != "" {
		if rule.TrustDomain, err = spiffeid.TrustDomainFromString(r.TrustDomain); err != nil {
			return rule, fmt.Errorf("trust_domain: %w", err)
		}
	}
	if h := r.HTTP; h != nil {
		rule.HTTP = &policy.HTTPMatch{PathExact: h.PathExact, PathPrefix: h.PathPrefix, PathRegex: h.PathRegex, Methods: h.Methods}
		for _, m := range h.Headers {
			rule.HTTP.Headers = append(rule.HTTP.Headers, policy.HeaderMatch{Name: m.Name, Present: m.Present, Exact: m.Exact,
				Prefix: m.Prefix, Suffix: m.Suffix, Contains: m.Contains, Regex: m.Regex, Invert: m.Invert, IgnoreCase: m.IgnoreCase})
		}
	}
	return rule, nil
}

func jwtRequirement(j *config.JWTRequirement) *policy.JWTRequirement {
	if j == nil {
		return nil
	}
	r := &policy.JWTRequirement{}
	for _, p := range j.Providers {
		jp := policy.JWTProvider{Name: p.Name}
		for _, c := range p.VerifyClaims {
			jp.VerifyClaims = append(jp.VerifyClaims, policy.ClaimCheck{Path: c.Path, Value: c.Value})
		}
		r.Providers = append(r.Providers, jp)
	}
	return r
}

func jwtProvider(p config.JWTProvider) jwtauth.Provider {
	out := jwtauth.Provider{Name: p.Name, Issuer: p.Issuer, Audiences: p.Audiences, Algorithms: p.Algorithms,
		ClockSkew: p.ClockSkew, ForwardPayloadHeader: p.Forward.PayloadHeader, StripToken: p.Forward.StripToken,
		CacheSize: p.CacheSize}
	switch k := p.JWKS; {
	case k.Remote != nil:
		out.KeySet.Remote = &jwtauth.Remote{URI: k.Remote.URI, RequestTimeout: k.Remote.RequestTimeout, CacheDuration: k.Remote.CacheDuration}
	case k.File != "":
		out.KeySet.File = k.File
	default:
		out.KeySet.JWKS = []byte(k.Inline)
	}
	for _, l := range p.Locations {
		switch {
		case l.Header != nil:
			out.Locations = append(out.Locations, jwtauth.Location{Header: l.Header.Name, ValuePrefix: l.Header.ValuePrefix})
		case l.QueryParam != nil:
			out.Locations = append(out.Locations, jwtauth.Location{Query: l.QueryParam.Name})
		case l.Cookie != nil:
			out.Locations = append(out.Locations, jwtauth.Location{Cookie: l.Cookie.Name})
		}
	}
	for _, c := range p.Forward.Claims {
		out.ForwardClaims = append(out.ForwardClaims, jwtauth.ClaimHeader{Path: c.Path, Header: c.Header})
	}
	return out
}

package policy

import (
	"fmt"
	"strconv"

	"github.com/hashicorp/consul/api"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// permission is one compiled L7 permission of an intention.
type permission struct {
	http     *httpMatcher
	jwt      *jwtMatcher
	decision Decision
	summary  PermissionSummary
}

// compilePermissions compiles an L7 intention's permissions. Consul
// evaluates them top to bottom and the first whose HTTP (and JWT) criteria
// match decides; a request that matches none gets the default intention
// behaviour.
func compilePermissions(name string, perms []*api.IntentionPermission) ([]permission, error) {
	out := make([]permission, 0, len(perms))
	for i, p := range perms {
		pname := name + " permission " + strconv.Itoa(i+1)
		if p == nil {
			return nil, fmt.Errorf("permission %d is nil", i+1)
		}
		var allow bool
		switch p.Action {
		case api.IntentionActionAllow:
			allow = true
		case api.IntentionActionDeny:
		default:
			return nil, fmt.Errorf("permission %d: Action %q is neither allow nor deny", i+1, p.Action)
		}
		if p.HTTP == nil && p.JWT == nil {
			return nil, fmt.Errorf("permission %d has neither HTTP nor JWT criteria", i+1)
		}
		var hm *HTTPMatch
		if p.HTTP != nil {
			hm = &HTTPMatch{PathExact: p.HTTP.PathExact, PathPrefix: p.HTTP.PathPrefix, PathRegex: p.HTTP.PathRegex,
				Methods: p.HTTP.Methods}
			for _, h := range p.HTTP.Header {
				hm.Headers = append(hm.Headers, HeaderMatch{Name: h.Name, Present: h.Present, Exact: h.Exact,
					Prefix: h.Prefix, Suffix: h.Suffix, Contains: h.Contains, Regex: h.Regex, Invert: h.Invert, IgnoreCase: h.IgnoreCase})
			}
		}
		h, err := compileHTTP(hm, !allow)
		if err != nil {
			return nil, fmt.Errorf("permission %d: %w", i+1, err)
		}
		jr := fromConsulJWT(p.JWT)
		j, err := compileJWT(jr)
		if err != nil {
			return nil, fmt.Errorf("permission %d: %w", i+1, err)
		}
		action, verdict := "deny", "denies"
		if allow {
			action, verdict = "allow", "allows"
		}
		match := describeHTTP(hm)
		if s := describeJWT(jr); s != "" {
			match += " " + s
		}
		d := Decision{Allow: allow, Rule: pname, Reason: pname + " (" + match + ") " + verdict + " the request"}
		if !allow {
			d.Code = CodeForbidden
		}
		out = append(out, permission{http: h, jwt: j, decision: d,
			summary: PermissionSummary{Rule: pname, Action: action, Match: match}})
	}
	return out, nil
}

func fromConsulJWT(j *api.IntentionJWTRequirement) *JWTRequirement {
	if j == nil {
		return nil
	}
	r := &JWTRequirement{}
	for _, p := range j.Providers {
		if p == nil {
			continue
		}
		jp := JWTProvider{Name: p.Name}
		for _, c := range p.VerifyClaims {
			if c != nil {
				jp.VerifyClaims = append(jp.VerifyClaims, ClaimCheck{Path: c.Path, Value: c.Value})
			}
		}
		r.Providers = append(r.Providers, jp)
	}
	return r
}

// source finds the highest-precedence intention whose source is src, or
// returns the decision that ends the search (not a Consul identity, other
// trust domain, no match).
func (in *Intentions) source(src spiffeid.ID) (*rule, Decision) {
	if in == nil {
		return nil, Decision{Allow: false, Rule: RuleNotLoaded, Reason: "intentions not loaded"}
	}
	d, sid, ok := in.identity(src)
	if !ok {
		return nil, d
	}
	partition := orDefault(sid.Partition)
	for i := range in.rules {
		if r := &in.rules[i]; r.matches(partition, sid.Namespace, sid.Service) {
			return r, Decision{}
		}
	}
	return nil, in.defaultDecision
}

// Admit decides, at the handshake of a connection to an HTTP service,
// whether src may send requests: as AuthorizeL4, except that an L7
// intention admits the peer and leaves each request to its permissions.
func (in *Intentions) Admit(src spiffeid.ID) Decision {
	r, d := in.source(src)
	if r == nil {
		return d
	}
	if r.perms != nil {
		return r.admit
	}
	return r.decision
}

// Authorize decides one request to an HTTP service. The highest-precedence
// intention matching the source decides: an L4 one by its action; an L7
// one by its first permission whose criteria match the request, else by
// the default policy (Consul: "traffic that fails to match any of the
// provided permissions ... will be subject to the default intention
// behavior"). A header that a permission depends on, sent twice, is a 400;
// a request that only an allow permission's missing or invalid token keeps
// out, with a default deny, is a 401. It allocates nothing on the allow
// path.
func (in *Intentions) Authorize(src spiffeid.ID, req *Request) Decision {
	r, d := in.source(src)
	if r == nil {
		return d
	}
	if r.perms == nil {
		return r.decision
	}
	authFailed := ""
	for i := range r.perms {
		p := &r.perms[i]
		if p.http != nil {
			o, hdr := p.http.match(req)
			if o == ambiguous {
				return ambiguousDenial(p.decision.Rule, hdr)
			}
			if o != match {
				continue
			}
		}
		if p.jwt != nil {
			o := p.jwt.match(req)
			if !o.ok {
				if o.unauthenticated && p.decision.Allow && authFailed == "" {
					authFailed = o.provider
				}
				continue
			}
		}
		return p.decision
	}
	if authFailed != "" && !r.noPerm.Allow {
		d := r.noPermAuthFail
		d.Provider = authFailed
		return d
	}
	return r.noPerm
}

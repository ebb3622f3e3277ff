package sidecar

import (
	"net/http"
	"net/textproto"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/outrider-mesh/outrider/mtls"
	"github.com/outrider-mesh/outrider/policy"
)

// Explanation is the answer of GET /authz/explain: what the current policy
// would decide for a peer and a request, and why, without sending traffic.
type Explanation struct {
	Peer     string `json:"peer"`
	Protocol string `json:"protocol"`
	// Request is the request that was decided; absent for a tcp service.
	Request *ExplainedRequest `json:"request,omitempty"`
	// Status is how the sidecar would answer: 200 when allowed (the request
	// goes to the application), else 400, 401 or 403; for a connection to a
	// tcp service, 200 or 403 (the connection is closed).
	Status   int             `json:"status"`
	Decision policy.Decision `json:"decision"`
	// Layers are the decisions of the intentions and the local rules on
	// their own, when both apply.
	Layers []policy.Layer `json:"layers"`
	// Tokens are the JWT verifications the decision needed.
	Tokens []ExplainedToken `json:"tokens,omitempty"`
}

// ExplainedRequest is the request as the rules saw it.
type ExplainedRequest struct {
	Method string `json:"method"`
	Path   string `json:"path"`
	// NormalizedPath is the path after normalization: what rules match
	// and the application would receive.
	NormalizedPath string `json:"normalized_path"`
	// PathError, when set, is why the path is refused (status 400).
	PathError string `json:"path_error,omitempty"`
}

// ExplainedToken is one provider's token verification.
type ExplainedToken struct {
	Provider string `json:"provider"`
	Valid    bool   `json:"valid"`
	Error    string `json:"error,omitempty"`
}

// handleExplain answers GET /authz/explain?peer=<SPIFFE ID>|source=<Consul
// service>&method=GET&path=/x&header=Name:%20value&protocol=http|tcp.
// header may repeat; a bearer token is given as an Authorization header.
// protocol defaults to the public listener's.
func (s *Sidecar) handleExplain(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	bad := func(msg string) { http.Error(w, "explain: "+msg, http.StatusBadRequest) }
	peer, err := s.explainPeer(q.Get("peer"), q.Get("source"))
	if err != nil {
		bad(err.Error())
		return
	}
	proto := Protocol(q.Get("protocol"))
	if proto == "" {
		proto = TCP
		if c := s.config.Load(); c != nil {
			proto = c.Public.Protocol
		}
	}
	if proto != TCP && !proto.L7() {
		bad("protocol must be tcp, http, http2 or grpc")
		return
	}
	ex := Explanation{Peer: peer.String(), Protocol: string(proto), Layers: []policy.Layer{}}
	p := s.authz.Load()
	if !proto.L7() {
		ex.Decision, ex.Layers = policy.Explain(p, peer, nil, true)
		ex.Status = decisionStatus(ex.Decision)
		writeJSON(w, ex)
		return
	}
	method, path := cmpOr(q.Get("method"), "GET"), cmpOr(q.Get("path"), "/")
	if !strings.HasPrefix(path, "/") {
		bad("path must start with /")
		return
	}
	req, err := http.NewRequest(method, "http://explain"+path, nil)
	if err != nil {
		bad(err.Error())
		return
	}
	req.RequestURI = path
	for _, h := range q["header"] {
		name, value, ok := strings.Cut(h, ":")
		if !ok || strings.TrimSpace(name) == "" {
			bad("header " + h + " is not Name: value")
			return
		}
		req.Header.Add(textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(name)), strings.TrimSpace(value))
	}
	ex.Request = &ExplainedRequest{Method: method, Path: path}
	np, err := normalizeH2(req, s.opts.PathNormalization)
	if err != nil {
		ex.Request.PathError = err.Error()
		ex.Status = 400
		ex.Decision = policy.Decision{Rule: "path-normalization", Reason: err.Error(), Code: policy.CodeBadRequest}
		writeJSON(w, ex)
		return
	}
	ex.Request.NormalizedPath = np
	pr := &policy.Request{Method: method, Path: np, Header: h2Headers(req.Header)}
	var tokens *tokenMemo
	if s.opts.JWT != nil {
		spoofable(s.opts.JWT, h2Editor{req})
		tokens = &tokenMemo{v: s.opts.JWT, req: h2JWTRequest{req}}
		pr.Auth = tokens
	}
	ex.Decision, ex.Layers = policy.Explain(p, peer, pr, false)
	ex.Status = decisionStatus(ex.Decision)
	if tokens != nil {
		for _, t := range tokens.results {
			et := ExplainedToken{Provider: t.provider, Valid: t.err == nil}
			if t.err != nil {
				et.Error = t.err.Error()
			}
			ex.Tokens = append(ex.Tokens, et)
		}
	}
	writeJSON(w, ex)
}

// explainPeer reads the peer: a SPIFFE ID, or a Consul service name in
// the sidecar's own trust domain and datacenter.
func (s *Sidecar) explainPeer(peer, source string) (spiffeid.ID, error) {
	switch {
	case peer != "" && source != "":
		return spiffeid.ID{}, errString("give peer or source, not both")
	case peer != "":
		return spiffeid.FromString(peer)
	case source != "":
		id := s.currentIdentity()
		if id == nil {
			return spiffeid.ID{}, errString("no identity loaded yet")
		}
		svid, err := id.GetX509SVID()
		if err != nil {
			return spiffeid.ID{}, err
		}
		own, err := mtls.ParseServiceID(svid.ID)
		if err != nil {
			return spiffeid.ID{}, errString("source= needs a Consul identity; give peer=<SPIFFE ID>")
		}
		return mtls.ServiceID{TrustDomain: own.TrustDomain, Partition: own.Partition, Namespace: "default",
			Datacenter: own.Datacenter, Service: source}.ID()
	}
	return spiffeid.ID{}, errString("peer=<SPIFFE ID> or source=<service> is required")
}

type errString string

func (e errString) Error() string { return string(e) }

func decisionStatus(d policy.Decision) int {
	if d.Allow {
		return 200
	}
	return d.Code.Status()
}

func cmpOr(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

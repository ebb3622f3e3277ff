package route

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/hashicorp/consul/api"

	"github.com/outrider-mesh/outrider/internal/httpmatch"
)

// Error is a Compile error: Node is the chain node's key ("" for the chain
// itself), Field the path of the bad field within it, named as in the
// config entry (e.g. "Routes[0].Match.HTTP.PathRegex").
type Error struct {
	Node, Field string
	Err         error
}

func (e *Error) Error() string {
	s := "route: "
	if e.Node != "" {
		s += e.Node + ": "
	}
	if e.Field != "" {
		s += e.Field + ": "
	}
	return s + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// fieldErr is an Error without its node, which compileNode fills in.
func fieldErr(field string, err error) error { return &Error{Field: field, Err: err} }

// Compile validates c and compiles it into a Table. It rejects what Consul
// rejects when the entries are written and what Envoy would reject when
// it receives the configuration Consul generates (an invalid regex, a
// header modifier on a pseudo-header or Host), and the few things this
// package does not do (Envoy header value substitutions, a PathPrefix
// that reaches into the query). The error, an *Error, names the node and
// the field, e.g.
//
//	route: router:api.default.default: Routes[0].Match.HTTP.PathRegex: error parsing regexp: ...
//
// c is not retained nor modified.
func Compile(c *Chain) (*Table, error) {
	if c == nil {
		return nil, &Error{Err: errors.New("chain is nil")}
	}
	cc := compiler{chain: c, resolvers: map[string]*Resolver{}, targets: map[string]*Target{}}
	start := c.Nodes[c.StartNode]
	if c.StartNode == "" || start == nil {
		return nil, &Error{Field: "StartNode", Err: fmt.Errorf("%q is not a node of the chain", c.StartNode)}
	}
	t := &Table{Protocol: c.Protocol}
	switch start.Type {
	case NodeRouter:
		for i, cr := range start.Routes {
			rt, err := cc.route(start, i, cr)
			if err != nil {
				return nil, nodeErr(c.StartNode, err)
			}
			t.Routes = append(t.Routes, rt)
		}
		if len(t.Routes) == 0 {
			return nil, &Error{Node: c.StartNode, Field: "Routes", Err: errors.New("router has no routes")}
		}
	case NodeSplitter, NodeResolver:
		rt := &Route{Name: c.StartNode, match: matcher{path: catchAll}}
		if err := cc.destination(rt, c.StartNode, start); err != nil {
			return nil, err
		}
		if start.Type == NodeResolver && start.Resolver != nil {
			rt.RequestTimeout = start.Resolver.RequestTimeout
		}
		t.Routes = []*Route{rt}
	default:
		return nil, &Error{Node: c.StartNode, Field: "Type", Err: fmt.Errorf("unknown node type %q", start.Type)}
	}
	for _, r := range cc.resolvers {
		t.Resolvers = append(t.Resolvers, r)
	}
	slices.SortFunc(t.Resolvers, func(a, b *Resolver) int { return strings.Compare(a.Name, b.Name) })
	for _, tg := range cc.targets {
		t.Targets = append(t.Targets, tg)
	}
	slices.SortFunc(t.Targets, func(a, b *Target) int { return strings.Compare(a.ID, b.ID) })
	return t, nil
}

// catchAll is Consul's default route match, PathPrefix "/".
var catchAll, _ = httpmatch.CompilePath(httpmatch.PathSpec{Prefix: "/"})

// nodeErr puts node into a field error that has none.
func nodeErr(node string, err error) error {
	var e *Error
	if errors.As(err, &e) && e.Node == "" {
		return &Error{Node: node, Field: e.Field, Err: e.Err}
	}
	return err
}

type compiler struct {
	chain     *Chain
	resolvers map[string]*Resolver // by node key
	targets   map[string]*Target   // by ID
}

// route compiles a router node's route i.
func (cc *compiler) route(router *Node, i int, cr *ChainRoute) (*Route, error) {
	prefix := fmt.Sprintf("Routes[%d]", i)
	if cr == nil {
		return nil, fieldErr(prefix, errors.New("route is null"))
	}
	rt := &Route{Name: fmt.Sprintf("%s:%s#%d", NodeRouter, router.Name, i)}
	var def api.ServiceRoute
	if cr.Definition != nil {
		def = *cr.Definition
	}
	m, err := compileMatch(def.Match, prefix+".Match.HTTP")
	if err != nil {
		return nil, err
	}
	rt.match = m
	if d := def.Destination; d != nil {
		if d.PrefixRewrite != "" {
			switch {
			case def.Match == nil || def.Match.HTTP == nil || def.Match.HTTP.PathPrefix == "" && def.Match.HTTP.PathExact == "":
				return nil, fieldErr(prefix+".Destination.PrefixRewrite", errors.New("needs PathExact or PathPrefix (as Consul requires)"))
			case def.Match.HTTP.PathExact != "":
				rt.rewriteLen = -1
			default:
				rt.rewriteLen = len(def.Match.HTTP.PathPrefix)
			}
			if !strings.HasPrefix(d.PrefixRewrite, "/") {
				return nil, fieldErr(prefix+".Destination.PrefixRewrite", fmt.Errorf("%q does not start with /", d.PrefixRewrite))
			}
			rt.PrefixRewrite = d.PrefixRewrite
		}
		rt.RequestTimeout, rt.IdleTimeout = d.RequestTimeout, d.IdleTimeout
		if rt.Retry, err = compileRetry(d, prefix+".Destination"); err != nil {
			return nil, err
		}
		if rt.RequestHeaders, err = compileModifiers(d.RequestHeaders, prefix+".Destination.RequestHeaders"); err != nil {
			return nil, err
		}
		if rt.ResponseHeaders, err = compileModifiers(d.ResponseHeaders, prefix+".Destination.ResponseHeaders"); err != nil {
			return nil, err
		}
	}
	next := cc.chain.Nodes[cr.NextNode]
	if next == nil {
		return nil, fieldErr(prefix+".NextNode", fmt.Errorf("%q is not a node of the chain", cr.NextNode))
	}
	if next.Type != NodeSplitter && next.Type != NodeResolver {
		return nil, fieldErr(prefix+".NextNode", fmt.Errorf("%q is a %s, want a splitter or resolver", cr.NextNode, next.Type))
	}
	if err := cc.destination(rt, cr.NextNode, next); err != nil {
		return nil, err
	}
	return rt, nil
}

// destination fills rt's splits from the splitter or resolver node n
// (key key). Errors carry their node.
func (cc *compiler) destination(rt *Route, key string, n *Node) error {
	rt.LoadBalancer = n.LoadBalancer
	if n.Type == NodeResolver {
		r, err := cc.resolver(key, n)
		if err != nil {
			return err
		}
		rt.Splits = []*Split{{Weight: 10000, Resolver: r}}
		rt.total = 10000
		return nil
	}
	if len(n.Splits) == 0 {
		return &Error{Node: key, Field: "Splits", Err: errors.New("splitter has no splits")}
	}
	for i, cs := range n.Splits {
		prefix := fmt.Sprintf("Splits[%d]", i)
		if cs == nil {
			return &Error{Node: key, Field: prefix, Err: errors.New("split is null")}
		}
		w := math.Round(float64(cs.Weight) * 100)
		if !(w >= 0 && w <= 10000) {
			return &Error{Node: key, Field: prefix + ".Weight", Err: fmt.Errorf("%v is not between 0 and 100", cs.Weight)}
		}
		s := &Split{Weight: uint32(w)}
		if d := cs.Definition; d != nil {
			var err error
			if s.RequestHeaders, err = compileModifiers(d.RequestHeaders, prefix+".RequestHeaders"); err != nil {
				return nodeErr(key, err)
			}
			if s.ResponseHeaders, err = compileModifiers(d.ResponseHeaders, prefix+".ResponseHeaders"); err != nil {
				return nodeErr(key, err)
			}
		}
		next := cc.chain.Nodes[cs.NextNode]
		switch {
		case next == nil:
			return &Error{Node: key, Field: prefix + ".NextNode", Err: fmt.Errorf("%q is not a node of the chain", cs.NextNode)}
		case next.Type != NodeResolver:
			return &Error{Node: key, Field: prefix + ".NextNode", Err: fmt.Errorf("%q is a %s, want a resolver", cs.NextNode, next.Type)}
		}
		r, err := cc.resolver(cs.NextNode, next)
		if err != nil {
			return err
		}
		s.Resolver = r
		rt.Splits = append(rt.Splits, s)
		rt.total += s.Weight
	}
	if rt.total == 0 {
		return &Error{Node: key, Field: "Splits", Err: errors.New("the weights add up to 0")}
	}
	return nil
}

// resolver compiles (once) the resolver node n with key key.
func (cc *compiler) resolver(key string, n *Node) (*Resolver, error) {
	if r := cc.resolvers[key]; r != nil {
		return r, nil
	}
	if n.Resolver == nil {
		return nil, &Error{Node: key, Field: "Resolver", Err: errors.New("resolver node has no Resolver")}
	}
	r := &Resolver{Name: n.Name, ConnectTimeout: n.Resolver.ConnectTimeout, LoadBalancer: n.LoadBalancer}
	ids := []string{n.Resolver.Target}
	fields := []string{"Resolver.Target"}
	if f := n.Resolver.Failover; f != nil {
		for i, id := range f.Targets {
			ids = append(ids, id)
			fields = append(fields, fmt.Sprintf("Resolver.Failover.Targets[%d]", i))
		}
	}
	for i, id := range ids {
		tg, err := cc.target(id)
		if err != nil {
			return nil, &Error{Node: key, Field: fields[i], Err: err}
		}
		if !slices.Contains(r.Targets, tg) {
			r.Targets = append(r.Targets, tg)
		}
	}
	if r.ConnectTimeout == 0 {
		r.ConnectTimeout = r.Targets[0].ConnectTimeout
	}
	cc.resolvers[key] = r
	return r, nil
}

func (cc *compiler) target(id string) (*Target, error) {
	if t := cc.targets[id]; t != nil {
		return t, nil
	}
	ct := cc.chain.Targets[id]
	if ct == nil {
		return nil, fmt.Errorf("%q is not a target of the chain", id)
	}
	t := &Target{ID: id, Service: ct.Service, ServiceSubset: ct.ServiceSubset, Namespace: ct.Namespace,
		Partition: ct.Partition, Datacenter: ct.Datacenter, Peer: ct.Peer, Filter: ct.Subset.Filter,
		OnlyPassing: ct.Subset.OnlyPassing, ConnectTimeout: ct.ConnectTimeout, SNI: ct.SNI}
	cc.targets[id] = t
	return t, nil
}

// compileMatch compiles a route's match; nil or empty matches every path
// that starts with "/" (Consul's default PathPrefix "/"). prefix is e.g.
// "Routes[0].Match.HTTP".
func compileMatch(rm *api.ServiceRouteMatch, prefix string) (matcher, error) {
	var m matcher
	if rm == nil || rm.HTTP == nil || rm.HTTP.PathExact == "" && rm.HTTP.PathPrefix == "" && rm.HTTP.PathRegex == "" {
		m.path = catchAll
	}
	if rm == nil || rm.HTTP == nil {
		return m, nil
	}
	h := rm.HTTP
	for _, p := range [...]struct{ field, v string }{{"PathExact", h.PathExact}, {"PathPrefix", h.PathPrefix}} {
		if strings.ContainsAny(p.v, "?#") {
			return matcher{}, fieldErr(prefix+"."+p.field, fmt.Errorf("%q reaches into the query (Envoy would match it against the path and query; Request.Path has no query)", p.v))
		}
	}
	if h.PathExact != "" || h.PathPrefix != "" || h.PathRegex != "" {
		path, err := httpmatch.CompilePath(httpmatch.PathSpec{Exact: h.PathExact, Prefix: h.PathPrefix, Regex: h.PathRegex,
			IgnoreCase: h.CaseInsensitive})
		if err != nil {
			var pe *httpmatch.PathError
			if errors.As(err, &pe) && pe.Field != "" {
				return matcher{}, fieldErr(prefix+"."+pe.Field, pe.Err)
			}
			return matcher{}, fieldErr(prefix, err)
		}
		m.path = path
	}
	for j, meth := range h.Methods {
		if meth == "" || strings.ContainsAny(meth, " \t\r\n") {
			return matcher{}, fieldErr(fmt.Sprintf("%s.Methods[%d]", prefix, j), fmt.Errorf("%q is not a method", meth))
		}
		m.methods = append(m.methods, meth)
	}
	for j, hd := range h.Header {
		hm, err := httpmatch.CompileHeader(httpmatch.HeaderSpec{Name: hd.Name, Present: hd.Present, Exact: hd.Exact,
			Prefix: hd.Prefix, Suffix: hd.Suffix, Regex: hd.Regex, Invert: hd.Invert})
		if err != nil {
			return matcher{}, fieldErr(fmt.Sprintf("%s.Header[%d]", prefix, j), err)
		}
		m.headers = append(m.headers, hm)
	}
	for j, q := range h.QueryParam {
		f := fmt.Sprintf("%s.QueryParam[%d]", prefix, j)
		if q.Name == "" {
			return matcher{}, fieldErr(f+".Name", errors.New("missing"))
		}
		qm := queryMatcher{name: q.Name, present: q.Present, exact: q.Exact}
		k := 0
		if q.Present {
			k++
		}
		if q.Exact != "" {
			k++
		}
		if q.Regex != "" {
			k++
			re, err := httpmatch.CompileFull(q.Regex)
			if err != nil {
				return matcher{}, fieldErr(f+".Regex", err)
			}
			qm.re = re
		}
		if k != 1 {
			return matcher{}, fieldErr(f, errors.New("exactly one of Present, Exact and Regex"))
		}
		m.query = append(m.query, qm)
	}
	return m, nil
}

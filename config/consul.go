package config

import (
	"cmp"
	"errors"
	"fmt"
	"strings"
	"text/template"
	"text/template/parse"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// ErrConsulDefaultID is returned by ConsulDiscovery.ExpectedID when neither
// the template nor the instance's meta gives an ID: the caller derives the
// ID in Consul's own format.
var ErrConsulDefaultID = errors.New("config: no spiffe_id template or meta: use Consul's SPIFFE ID format")

// Instance is what ConsulDiscovery.ExpectedID knows of one Consul service
// instance; its fields are the ones a spiffe_id template can use.
type Instance struct {
	Service    string
	Namespace  string
	Datacenter string
	Node       string
	Partition  string
	// Meta is the instance's service meta.
	Meta map[string]string
}

// ExpectedID returns the SPIFFE ID inst must present: the value of its
// SPIFFEIDMeta key when it has one (not empty), else the SPIFFEID template
// rendered for inst. With neither it returns ErrConsulDefaultID. It is safe
// for concurrent use and does not block.
func (c *ConsulDiscovery) ExpectedID(inst Instance) (spiffeid.ID, error) {
	if c.SPIFFEIDMeta != "" {
		if v := inst.Meta[c.SPIFFEIDMeta]; v != "" {
			id, err := spiffeid.FromString(v)
			if err != nil {
				return spiffeid.ID{}, fmt.Errorf("config: service meta %s=%s is not a SPIFFE ID: %w", c.SPIFFEIDMeta, quote(v), err)
			}
			return id, nil
		}
	}
	if c.SPIFFEID == "" {
		return spiffeid.ID{}, ErrConsulDefaultID
	}
	t := c.tmpl
	if t == nil || c.tmplSrc != c.SPIFFEID {
		var err error
		if t, err = parseTemplate(c.SPIFFEID); err != nil {
			return spiffeid.ID{}, fmt.Errorf("config: spiffe_id: %w", err)
		}
	}
	return render(t, inst)
}

func parseTemplate(s string) (*template.Template, error) {
	t, err := template.New("spiffe_id").Option("missingkey=error").Parse(s)
	if err != nil {
		return nil, fmt.Errorf("%s is not a template: %w", quote(s), err)
	}
	return t, nil
}

func render(t *template.Template, inst Instance) (spiffeid.ID, error) {
	var b strings.Builder
	if err := t.Execute(&b, inst); err != nil {
		return spiffeid.ID{}, fmt.Errorf("config: spiffe_id template: %w", err)
	}
	id, err := spiffeid.FromString(b.String())
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("config: spiffe_id template rendered %s, not a SPIFFE ID: %w", quote(b.String()), err)
	}
	return id, nil
}

// checkTemplate parses the SPIFFEID template and renders it for a sample
// instance of the service, whose meta has every key the template reads.
func (c *ConsulDiscovery) checkTemplate() (*template.Template, error) {
	t, err := parseTemplate(c.SPIFFEID)
	if err != nil {
		return nil, err
	}
	meta := map[string]string{}
	for _, k := range metaFields(t.Tree.Root) {
		meta[k] = "meta-" + k
	}
	sample := Instance{
		Service:    cmp.Or(c.Service, "service"),
		Namespace:  cmp.Or(c.Namespace, "default"),
		Datacenter: cmp.Or(c.Datacenter, "dc1"),
		Node:       "node-1",
		Partition:  "default",
		Meta:       meta,
	}
	var b strings.Builder
	if err := t.Execute(&b, sample); err != nil {
		return nil, fmt.Errorf("the template fails for a sample instance: %w", err)
	}
	if _, err := spiffeid.FromString(b.String()); err != nil {
		return nil, fmt.Errorf("the template renders %s for a sample instance, not a SPIFFE ID: %w", quote(b.String()), err)
	}
	return t, nil
}

// metaFields returns the keys X of the .Meta.X fields the template reads.
func metaFields(n parse.Node) []string {
	var keys []string
	var walk func(parse.Node)
	walk = func(n parse.Node) {
		switch n := n.(type) {
		case *parse.ListNode:
			if n == nil {
				return
			}
			for _, c := range n.Nodes {
				walk(c)
			}
		case *parse.ActionNode:
			walk(n.Pipe)
		case *parse.PipeNode:
			if n == nil {
				return
			}
			for _, c := range n.Cmds {
				walk(c)
			}
		case *parse.CommandNode:
			for _, a := range n.Args {
				walk(a)
			}
		case *parse.ChainNode:
			walk(n.Node)
		case *parse.FieldNode:
			if len(n.Ident) >= 2 && n.Ident[0] == "Meta" {
				keys = append(keys, n.Ident[1])
			}
		case *parse.VariableNode:
			if len(n.Ident) >= 3 && n.Ident[0] == "$" && n.Ident[1] == "Meta" {
				keys = append(keys, n.Ident[2])
			}
		case *parse.IfNode:
			walk(n.Pipe)
			walk(n.List)
			walk(n.ElseList)
		case *parse.RangeNode:
			walk(n.Pipe)
			walk(n.List)
			walk(n.ElseList)
		case *parse.WithNode:
			walk(n.Pipe)
			walk(n.List)
			walk(n.ElseList)
		case *parse.TemplateNode:
			walk(n.Pipe)
		}
	}
	walk(n)
	return keys
}

// compile caches the templates of a File that passed validation.
func (f *File) compile() {
	for i := range f.Upstreams {
		if k := f.Upstreams[i].Consul; k != nil && k.SPIFFEID != "" {
			k.tmpl, _ = parseTemplate(k.SPIFFEID)
			k.tmplSrc = k.SPIFFEID
		}
	}
}

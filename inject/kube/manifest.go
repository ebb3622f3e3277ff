package kube

import (
	"fmt"
	"strconv"

	"go.yaml.in/yaml/v3"

	"github.com/outrider-mesh/outrider/inject"
	"github.com/outrider-mesh/outrider/inject/internal/yamlnode"
)

// Inject adds the sidecar to every opted-in workload of data, a stream of
// YAML documents, and returns the new stream. Documents and objects it
// does not change are re-encoded as they were (comments and key order
// kept); when nothing changes, data itself is returned. Errors name the
// document, the object, the field and the line.
func Inject(data []byte, o inject.Options) ([]byte, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	return yamlnode.Rewrite(data, func(docs []*yaml.Node) (bool, error) {
		changed := false
		for i, d := range docs {
			if d.Kind != yaml.DocumentNode || len(d.Content) == 0 {
				continue
			}
			ok, err := injectObject(d.Content[0], "", i+1, o)
			if err != nil {
				return false, err
			}
			changed = changed || ok
		}
		return changed, nil
	})
}

// injectObject injects object, or each item of a List.
func injectObject(object *yaml.Node, prefix string, doc int, o inject.Options) (bool, error) {
	if yamlnode.String(yamlnode.Get(object, "kind")) == "List" {
		changed := false
		for i, item := range yamlnode.Items(yamlnode.Get(object, "items")) {
			ok, err := injectObject(item, prefix+"items["+strconv.Itoa(i)+"].", doc, o)
			if err != nil {
				return false, err
			}
			changed = changed || ok
		}
		return changed, nil
	}
	w, ok := findWorkload(object, prefix)
	if !ok {
		return false, nil
	}
	c, err := plan(w, doc, o)
	if err != nil || c == nil {
		return false, err
	}
	c.apply(w)
	return true, nil
}

// apply writes c into w's nodes.
func (c *change) apply(w *workload) {
	ctr := yamlnode.MustEncode(c.container)
	list := "containers"
	if c.native {
		list = "initContainers"
	}
	seq := yamlnode.Get(w.spec, list)
	switch {
	case seq == nil || seq.Kind != yaml.SequenceNode:
		seq = &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		yamlnode.Set(w.spec, list, seq)
		seq.Content = []*yaml.Node{ctr}
	case c.native: // first, so that later init containers can use the upstreams
		seq.Content = append([]*yaml.Node{ctr}, seq.Content...)
	default:
		seq.Content = append(seq.Content, ctr)
	}
	ann := yamlnode.Get(w.meta, "annotations")
	if ann == nil || ann.Kind != yaml.MappingNode {
		ann = yamlnode.Mapping()
		yamlnode.Set(w.meta, "annotations", ann)
	}
	yamlnode.Set(ann, inject.AnnotationStatus, yamlnode.Scalar(inject.StatusInjected))
	if c.grace != nil {
		yamlnode.Set(w.spec, "terminationGracePeriodSeconds", &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: fmt.Sprint(*c.grace)})
	}
}

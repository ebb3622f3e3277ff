package kube

import (
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/outrider-mesh/outrider/inject"
	"github.com/outrider-mesh/outrider/inject/internal/yamlnode"
)

// PodPatch returns the JSON Patch that injects the sidecar into pod, a
// Pod as JSON (an admission request's object). It returns no operations
// for a Pod that is not opted in or already has a sidecar.
func PodPatch(pod []byte, o inject.Options) ([]Operation, error) {
	var doc yaml.Node // JSON is YAML: one parser for manifests and Pods
	if err := yaml.Unmarshal(pod, &doc); err != nil {
		return nil, fmt.Errorf("kube: decoding the pod: %w", err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("kube: decoding the pod: not a JSON object")
	}
	object := doc.Content[0]
	if k := yamlnode.Get(object, "kind"); k == nil { // AdmissionReview objects carry their kind; be lenient
		yamlnode.Set(object, "kind", yamlnode.Scalar("Pod"))
	} else if yamlnode.String(k) != "Pod" {
		return nil, fmt.Errorf("kube: want a Pod, got kind %q", yamlnode.String(k))
	}
	w, ok := findWorkload(object, "")
	if !ok {
		return nil, nil
	}
	c, err := plan(w, 0, o)
	if err != nil || c == nil {
		return nil, err
	}
	return c.operations(w), nil
}

// operations are c as JSON Patch operations on the Pod w.
func (c *change) operations(w *workload) []Operation {
	var ops []Operation
	list := "containers"
	if c.native {
		list = "initContainers"
	}
	switch {
	case yamlnode.Get(w.spec, list) == nil:
		ops = append(ops, Operation{Op: "add", Path: "/spec/" + list, Value: []Container{c.container}})
	case c.native:
		ops = append(ops, Operation{Op: "add", Path: "/spec/" + list + "/0", Value: c.container})
	default:
		ops = append(ops, Operation{Op: "add", Path: "/spec/" + list + "/-", Value: c.container})
	}
	if yamlnode.Get(w.meta, "annotations") == nil {
		ops = append(ops, Operation{Op: "add", Path: "/metadata/annotations", Value: map[string]string{inject.AnnotationStatus: inject.StatusInjected}})
	} else {
		ops = append(ops, Operation{Op: "add", Path: "/metadata/annotations/" + pointerEscape(inject.AnnotationStatus), Value: inject.StatusInjected})
	}
	if c.grace != nil {
		ops = append(ops, Operation{Op: "add", Path: "/spec/terminationGracePeriodSeconds", Value: *c.grace})
	}
	return ops
}

// pointerEscape escapes a JSON Pointer reference token (RFC 6901).
func pointerEscape(s string) string {
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(s)
}

package kube

import (
	"cmp"
	"fmt"
	"math"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/outrider-mesh/outrider/inject"
	"github.com/outrider-mesh/outrider/inject/internal/yamlnode"
)

// sidecarUID is the image's nonroot user (distroless, see Dockerfile).
const sidecarUID = 65532

// defaultGracePeriod is Kubernetes' terminationGracePeriodSeconds default.
const defaultGracePeriod = 30

// workload is the pod template of one object.
type workload struct {
	object string     // `Deployment "web"`
	prefix string     // key path of the pod template, "" for a Pod
	name   string     // the object's name
	meta   *yaml.Node // pod template metadata
	spec   *yaml.Node // pod spec
	job    bool       // its pods run to completion
}

// templatePaths are where each kind holds its pod template.
var templatePaths = map[string][]string{
	"Pod":         nil,
	"Deployment":  {"spec", "template"},
	"StatefulSet": {"spec", "template"},
	"DaemonSet":   {"spec", "template"},
	"ReplicaSet":  {"spec", "template"},
	"Job":         {"spec", "template"},
	"CronJob":     {"spec", "jobTemplate", "spec", "template"},
}

// findWorkload returns the pod template of object, false for kinds without
// one and for objects whose template has no metadata (no annotations, so
// nothing to inject).
func findWorkload(object *yaml.Node, prefix string) (*workload, bool) {
	kind := yamlnode.String(yamlnode.Get(object, "kind"))
	path, ok := templatePaths[kind]
	if !ok {
		return nil, false
	}
	name := yamlnode.String(yamlnode.Path(object, "metadata", "name"))
	w := &workload{
		object: fmt.Sprintf("%s %q", kind, name),
		name:   name,
		job:    kind == "Job" || kind == "CronJob",
	}
	tmpl := yamlnode.Path(object, path...)
	if len(path) > 0 {
		w.prefix = prefix + strings.Join(path, ".") + "."
	} else {
		w.prefix = prefix
	}
	w.meta, w.spec = yamlnode.Get(tmpl, "metadata"), yamlnode.Get(tmpl, "spec")
	if kind == "Pod" {
		if name == "" { // a Pod of a controller, as the webhook sees it
			gen := strings.TrimSuffix(yamlnode.String(yamlnode.Get(w.meta, "generateName")), "-")
			w.name, w.object = gen, fmt.Sprintf("Pod %q", gen)
		}
		for _, ref := range yamlnode.Items(yamlnode.Get(w.meta, "ownerReferences")) {
			w.job = w.job || yamlnode.String(yamlnode.Get(ref, "kind")) == "Job"
		}
	}
	if w.meta == nil || w.meta.Kind != yaml.MappingNode || w.spec == nil || w.spec.Kind != yaml.MappingNode {
		return nil, false
	}
	return w, true
}

// change is what injecting one workload does.
type change struct {
	container Container
	native    bool   // into initContainers, first
	grace     *int64 // new terminationGracePeriodSeconds
}

// plan decides the change for w; nil when w is not opted in or already
// has a sidecar.
func plan(w *workload, doc int, o inject.Options) (*change, error) {
	annNode := yamlnode.Get(w.meta, "annotations")
	ann := yamlnode.StringMap(annNode)
	on, err := inject.Enabled(ann)
	if err != nil {
		return nil, w.fail(doc, annNode, err)
	}
	if !on || w.hasSidecar() {
		return nil, nil
	}
	labels := yamlnode.StringMap(yamlnode.Get(w.meta, "labels"))
	spec, err := o.Spec(inject.Workload{
		Annotations: ann,
		Name:        cmp.Or(labels["app.kubernetes.io/name"], labels["app"], w.name),
		Ports:       w.ports(),
	})
	if err != nil {
		return nil, w.fail(doc, annNode, err)
	}
	c := &change{native: o.NativeSidecar || w.job}
	c.container = sidecar(spec, o, c.native)
	need := int64(math.Ceil(o.ShutdownTime().Seconds()))
	if g := yamlnode.Get(w.spec, "terminationGracePeriodSeconds"); g != nil {
		if cur, err := strconv.ParseInt(yamlnode.String(g), 10, 64); err != nil || cur < need {
			c.grace = &need
		}
	} else if need > defaultGracePeriod {
		c.grace = &need
	}
	return c, nil
}

// fail locates err, a *inject.FieldError naming an annotation, in the file.
func (w *workload) fail(doc int, annotations *yaml.Node, err error) error {
	at := inject.Error{Doc: doc, Object: w.object, Path: w.prefix + "metadata.annotations", Line: w.meta.Line}
	return inject.Locate(at, err, func(field string) int { return yamlnode.KeyLine(annotations, field) })
}

// hasSidecar reports whether the pod already runs a container named
// outrider, as a container or an init container.
func (w *workload) hasSidecar() bool {
	for _, list := range []string{"containers", "initContainers"} {
		for _, c := range yamlnode.Items(yamlnode.Get(w.spec, list)) {
			if yamlnode.String(yamlnode.Get(c, "name")) == inject.SidecarName {
				return true
			}
		}
	}
	return false
}

// ports lists the containerPorts of the application's containers.
func (w *workload) ports() []inject.Port {
	var out []inject.Port
	for _, c := range yamlnode.Items(yamlnode.Get(w.spec, "containers")) {
		for _, p := range yamlnode.Items(yamlnode.Get(c, "ports")) {
			n, err := strconv.Atoi(yamlnode.String(yamlnode.Get(p, "containerPort")))
			if err != nil {
				continue
			}
			out = append(out, inject.Port{Name: yamlnode.String(yamlnode.Get(p, "name")), Number: n})
		}
	}
	return out
}

// sidecar is the container for spec.
func sidecar(s inject.Spec, o inject.Options, native bool) Container {
	field := func(path string) *EnvVarSource {
		return &EnvVarSource{FieldRef: &ObjectFieldSelector{FieldPath: path}}
	}
	env := []EnvVar{
		{Name: "POD_NAME", ValueFrom: field("metadata.name")},
		{Name: "POD_IP", ValueFrom: field("status.podIP")},
		{Name: "HOST_IP", ValueFrom: field("status.hostIP")},
		{Name: "CONSUL_HTTP_ADDR", Value: cmp.Or(o.ConsulAddr, "$(HOST_IP):8500")},
	}
	if name, key, ok := strings.Cut(o.TokenSecret, "/"); ok {
		env = append(env, EnvVar{Name: "CONSUL_HTTP_TOKEN", ValueFrom: &EnvVarSource{SecretKeyRef: &SecretKeySelector{Name: name, Key: key}}})
	}
	probe := func(live bool, period, failures int) Probe {
		return Probe{Exec: ExecAction{Command: s.Check(live)}, PeriodSeconds: period, TimeoutSeconds: 3, FailureThreshold: failures}
	}
	c := Container{
		Name:  inject.SidecarName,
		Image: s.Image,
		Args:  s.Args(inject.Instance{ID: "$(POD_NAME)", ServiceAddress: "$(POD_IP)", PublicAddress: "$(POD_IP)"}, o),
		Env:   env,
		Ports: []ContainerPort{{Name: inject.SidecarName, ContainerPort: s.PublicPort}},
		Resources: Resources{
			Requests: resourceList(o.CPURequest, o.MemoryRequest),
			Limits:   resourceList(o.CPULimit, o.MemoryLimit),
		},
		// Up to two minutes to register and get a certificate.
		StartupProbe:   probe(false, 1, 120),
		ReadinessProbe: probe(false, 5, 2),
		LivenessProbe:  probe(true, 10, 3),
		SecurityContext: SecurityContext{
			RunAsNonRoot:           true,
			RunAsUser:              sidecarUID,
			RunAsGroup:             sidecarUID,
			ReadOnlyRootFilesystem: true,
			Capabilities:           Capabilities{Drop: []string{"ALL"}},
			SeccompProfile:         SeccompProfile{Type: "RuntimeDefault"},
		},
	}
	if native {
		c.RestartPolicy = "Always"
	}
	return c
}

func resourceList(cpu, memory string) *ResourceList {
	if cpu == "" && memory == "" {
		return nil
	}
	return &ResourceList{CPU: cpu, Memory: memory}
}

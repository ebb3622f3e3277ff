// Package compose injects the Outrider sidecar into Compose files.
//
// For each service S opted in by its labels (see package inject), Inject
// adds a service "S-outrider" right after it. The sidecar joins S's
// network namespace (network_mode: "service:S"), so the application
// reaches its upstreams at 127.0.0.1 and the sidecar reaches the
// application at 127.0.0.1. The sidecar registers S with the address
// 127.0.0.1 and itself with the public address S: the Compose DNS name
// of S, which other containers resolve on S's networks and which the
// sidecar shares with S.
//
// Because the sidecar has no network of its own, its public port is a
// port of S: Inject adds it to S's expose list. That is all other
// services of the project need (containers on a Compose network reach
// each other's ports whether published or not); it is deliberately not
// added to S's ports, which would publish the mTLS port on the host. Add
// it there yourself to reach the mesh from outside the project.
//
// The sidecar has an exec healthcheck (outrider wait, no shell needed),
// runs as 65532:65532 with a read-only root file system, restarts unless
// stopped, and has a stop_grace_period covering its drain (drain delay,
// shutdown grace period and drain timeout: 30s with outrider run's
// defaults), so Compose does not kill it mid-drain. Its instance ID is S, so a service scaled to more than
// one replica would register one instance over another; give each
// replica its own service instead. Labels that only come from a merged
// anchor (<<: *x) are not seen.
package compose

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/outrider-mesh/outrider/inject"
	"github.com/outrider-mesh/outrider/inject/internal/yamlnode"
)

// DefaultConsulAddr is the sidecars' CONSUL_HTTP_ADDR unless
// Options.ConsulAddr says otherwise: a service named consul.
const DefaultConsulAddr = "consul:8500"

// IsCompose reports whether doc, a decoded YAML document, is a Compose
// file: a mapping with a services mapping and no Kubernetes kind.
func IsCompose(doc *yaml.Node) bool {
	root := doc
	if root != nil && root.Kind == yaml.DocumentNode && len(root.Content) > 0 {
		root = root.Content[0]
	}
	s := yamlnode.Get(root, "services")
	return s != nil && s.Kind == yaml.MappingNode && yamlnode.Get(root, "kind") == nil
}

// sidecarService is the service added for each injected one; field order
// is key order in the file.
type sidecarService struct {
	Image       string      `yaml:"image"`
	Command     []string    `yaml:"command"`
	NetworkMode string      `yaml:"network_mode"`
	DependsOn   []string    `yaml:"depends_on"`
	Environment environment `yaml:"environment"`
	User        string      `yaml:"user"`
	ReadOnly    bool        `yaml:"read_only"`
	Restart     string      `yaml:"restart"`
	// StopGracePeriod covers the sidecar's whole shutdown (Compose's
	// default, 10s, is shorter than outrider run's defaults allow).
	StopGracePeriod string      `yaml:"stop_grace_period"`
	Healthcheck     healthcheck `yaml:"healthcheck"`
}

type environment struct {
	ConsulHTTPAddr string `yaml:"CONSUL_HTTP_ADDR"`
}

type healthcheck struct {
	Test        []string `yaml:"test"`
	Interval    string   `yaml:"interval"`
	Timeout     string   `yaml:"timeout"`
	Retries     int      `yaml:"retries"`
	StartPeriod string   `yaml:"start_period"`
}

// Inject adds a sidecar service for every opted-in service of data, a
// Compose file, and returns the new file; data itself when nothing
// changes. Errors name the service, the label and the line.
func Inject(data []byte, o inject.Options) ([]byte, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	return yamlnode.Rewrite(data, func(docs []*yaml.Node) (bool, error) {
		if len(docs) != 1 || !IsCompose(docs[0]) {
			return false, errors.New("compose: not a Compose file: want one YAML document with a top-level services mapping")
		}
		services := yamlnode.Get(docs[0].Content[0], "services")
		changed := false
		// Walk a snapshot: injecting inserts entries after the current one.
		entries := slices.Clone(services.Content)
		for i := 0; i+1 < len(entries); i += 2 {
			ok, err := injectService(services, entries[i].Value, yamlnode.Resolve(entries[i+1]), o)
			if err != nil {
				return false, err
			}
			changed = changed || ok
		}
		return changed, nil
	})
}

// injectService injects the service name (node svc) of services.
func injectService(services *yaml.Node, name string, svc *yaml.Node, o inject.Options) (bool, error) {
	if svc == nil || svc.Kind != yaml.MappingNode {
		return false, nil
	}
	labelNode := yamlnode.Get(svc, "labels")
	labels := yamlnode.StringMap(labelNode)
	fail := func(err error) error {
		at := inject.Error{Object: fmt.Sprintf("service %q", name), Path: "services." + name + ".labels", Line: svc.Line}
		return inject.Locate(at, err, func(field string) int { return yamlnode.KeyLine(labelNode, field) })
	}
	on, err := inject.Enabled(labels)
	if err != nil {
		return false, fail(err)
	}
	sidecarName := name + "-" + inject.SidecarName
	if !on || yamlnode.Get(services, sidecarName) != nil {
		return false, nil
	}
	ports, err := servicePorts(name, svc)
	if err != nil {
		return false, err
	}
	spec, err := o.Spec(inject.Workload{Annotations: labels, Name: name, Ports: ports})
	if err != nil {
		return false, fail(err)
	}
	sc := yamlnode.MustEncode(sidecarService{
		Image:           spec.Image,
		Command:         spec.Args(inject.Instance{ID: name, ServiceAddress: "127.0.0.1", PublicAddress: name}, o),
		NetworkMode:     "service:" + name,
		DependsOn:       []string{name},
		Environment:     environment{ConsulHTTPAddr: cmp.Or(o.ConsulAddr, DefaultConsulAddr)},
		User:            "65532:65532",
		ReadOnly:        true,
		Restart:         "unless-stopped",
		StopGracePeriod: fmt.Sprintf("%ds", int64(math.Ceil(o.ShutdownTime().Seconds()))),
		Healthcheck:     healthcheck{Test: append([]string{"CMD"}, spec.Check(false)...), Interval: "10s", Timeout: "3s", Retries: 3, StartPeriod: "30s"},
	})
	// Quoted as Compose's documentation writes them ("65532:65532" would be
	// a sexagesimal number to a YAML 1.1 reader).
	for _, v := range []*yaml.Node{yamlnode.Get(sc, "network_mode"), yamlnode.Get(sc, "user")} {
		v.Style = yaml.DoubleQuotedStyle
	}
	test := yamlnode.Path(sc, "healthcheck", "test")
	test.Style = yaml.FlowStyle
	for _, v := range test.Content {
		v.Style = yaml.DoubleQuotedStyle
	}
	// Right after the application's entry.
	at := slices.IndexFunc(services.Content, func(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Value == name })
	services.Content = slices.Insert(services.Content, at+2, yamlnode.Scalar(sidecarName), sc)

	expose := yamlnode.Get(svc, "expose")
	public := strconv.Itoa(spec.PublicPort)
	if expose == nil || expose.Kind != yaml.SequenceNode {
		expose = &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		yamlnode.Set(svc, "expose", expose)
	}
	if !slices.ContainsFunc(yamlnode.Items(expose), func(n *yaml.Node) bool { p, _ := portOf(n.Value); return p == spec.PublicPort }) {
		expose.Content = append(expose.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: public, Style: yaml.DoubleQuotedStyle})
	}
	markInjected(svc, labelNode)
	return true, nil
}

// markInjected adds the status label, in the labels' own form.
func markInjected(svc, labels *yaml.Node) {
	switch {
	case labels == nil:
		labels = yamlnode.Mapping()
		yamlnode.Set(svc, "labels", labels)
		fallthrough
	case labels.Kind == yaml.MappingNode:
		yamlnode.Set(labels, inject.AnnotationStatus, yamlnode.Scalar(inject.StatusInjected))
	case labels.Kind == yaml.SequenceNode:
		labels.Content = append(labels.Content, yamlnode.Scalar(inject.AnnotationStatus+"="+inject.StatusInjected))
	}
}

// servicePorts lists the container ports of svc: its expose entries, then
// the container side of its ports entries.
func servicePorts(name string, svc *yaml.Node) ([]inject.Port, error) {
	var out []inject.Port
	for _, key := range []string{"expose", "ports"} {
		for _, item := range yamlnode.Items(yamlnode.Get(svc, key)) {
			v := yamlnode.String(item)
			if item.Kind == yaml.MappingNode { // long syntax
				v = yamlnode.String(yamlnode.Get(item, "target"))
			}
			p, err := portOf(v)
			if err != nil {
				return nil, &inject.Error{Object: fmt.Sprintf("service %q", name), Path: "services." + name + "." + key, Line: item.Line, Err: err}
			}
			out = append(out, inject.Port{Number: p})
		}
	}
	return out, nil
}

// portOf reads the container port of an expose or short ports entry:
// "80", "8080:80", "127.0.0.1:8080:80/tcp", "3000-3005" (the first).
func portOf(v string) (int, error) {
	s := v
	if i := strings.LastIndex(s, ":"); i >= 0 {
		s = s[i+1:]
	}
	s, _, _ = strings.Cut(s, "/")
	s, _, _ = strings.Cut(s, "-")
	p, err := strconv.Atoi(s)
	if err != nil || p <= 0 || p > 65535 {
		return 0, fmt.Errorf("%q: no container port", v)
	}
	return p, nil
}

package config

import (
	"fmt"
	"os"
	"reflect"
	"slices"
)

// policyFile is the YAML shape of a policy file: the keys of an
// authorization section, without consul_intentions.
type policyFile struct {
	Default           string            `yaml:"default"`
	DryRun            bool              `yaml:"dry_run"`
	PathNormalization PathNormalization `yaml:"path_normalization"`
	Rules             []Rule            `yaml:"rules"`
	JWT               *JWTRequirement   `yaml:"jwt"`
	JWTProviders      []JWTProvider     `yaml:"jwt_providers"`
}

// LoadPolicy reads and parses the policy file at path; see ParsePolicy.
func LoadPolicy(path string) (*Authorization, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return ParsePolicy(path, data)
}

// ParsePolicy decodes data, the contents of the policy file called name
// (used in error messages only), fills in the defaults and validates the
// result, as Parse does for outrider.yaml. A policy file is the local
// authorization layer of the Consul mode (outrider run -sidecar-for SERVICE
// -policy FILE), applied on top of the service's intentions: its top-level
// keys are those of outrider.yaml's authorization section except
// consul_intentions, and Default defaults to allow, so that the layer only
// adds restrictions. Key paths in errors are relative to the file's top
// level: "config: policy.yaml:3: rules[0].allow.http.methods[0]: ...".
//
// The file does not say the service's protocol, so request matchers (http,
// jwt) are not checked against it: on a tcp service they never match. The
// returned Authorization has ConsulIntentions false.
func ParsePolicy(name string, data []byte) (*Authorization, error) {
	f := &File{name: name, keys: map[string]keyInfo{}}
	root, ferr := parseYAML(data)
	if ferr != nil {
		return nil, ferr.withFile(name)
	}
	var p policyFile
	d := &decoder{keys: f.keys, bad: map[string]bool{}}
	if root != nil {
		d.budget = aliasFactor*countNodes(root) + aliasSlack
		d.value(root, reflect.ValueOf(&p).Elem(), "")
	}
	a := &Authorization{
		Default: p.Default, DryRun: p.DryRun, PathNormalization: p.PathNormalization,
		Rules: p.Rules, JWT: p.JWT, JWTProviders: p.JWTProviders,
	}
	f.authorizationDefaults(a, "", Allow)
	errs := d.errs
	for _, e := range f.validatePolicy(a, d.failed) {
		if !d.failed(e.path) {
			errs = append(errs, e)
		}
	}
	if len(errs) > 0 {
		slices.SortStableFunc(errs, func(a, b *fieldError) int { return a.line - b.line })
		return nil, joinErrors(errs, name)
	}
	return a, nil
}

// validatePolicy returns every problem with a, a policy file's contents;
// f holds the file's name and key lines (none for a policy built in code).
func (f *File) validatePolicy(a *Authorization, failed func(path string) bool) []*fieldError {
	c := &checker{f: f, failed: failed}
	c.layer(a, layer{})
	return c.errs
}

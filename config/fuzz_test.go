package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse checks that Parse never panics, that every error line carries
// the package prefix, and that a File it accepts validates again.
func FuzzParse(f *testing.F) {
	addSeeds(f, "testdata/*.yaml", "testdata/bad/*.yaml", "../examples/static/*.yaml")
	f.Add([]byte("a: &a [*a]"))
	f.Add([]byte("&a [*a, *a]"))
	f.Add([]byte("service: web\nidentity: {spiffe: {}}\nupstreams: [&u {name: a, bind: ':1', endpoints: [*u]}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse("f.yaml", data)
		if err != nil {
			if file != nil {
				t.Fatal("a File and an error")
			}
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, "config: f.yaml") {
					t.Fatalf("error line %q lacks the prefix", line)
				}
			}
			return
		}
		if err := file.Validate(); err != nil {
			t.Fatalf("Parse accepted a File that Validate rejects: %v", err)
		}
		for i := range file.Upstreams {
			if c := file.Upstreams[i].Consul; c != nil {
				_, _ = c.ExpectedID(Instance{Service: "s", Meta: map[string]string{"k": "v"}})
			}
		}
	})
}

// FuzzParsePolicy checks that ParsePolicy never panics, that every error
// line carries the package prefix, and that a policy it accepts validates
// again.
func FuzzParsePolicy(f *testing.F) {
	addSeeds(f, "testdata/policy/*.yaml", "testdata/policy/bad/*.yaml")
	f.Add([]byte("rules: &r [{deny: {http: {path_prefix: /a}}}, {allow: *r}]"))
	f.Add([]byte("rules: [{allow: {spiffe_id_pattern: 'spiffe://x/*/**'}}]"))
	f.Add([]byte("rules: [{allow: {http: {path_prefix: '/a/%2'}}}]"))
	f.Add([]byte("jwt_providers: [{name: a, issuer: i, jwks: {inline: '{\"keys\":[{}]}'}}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := ParsePolicy("p.yaml", data)
		if err != nil {
			if a != nil {
				t.Fatal("a policy and an error")
			}
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, "config: p.yaml") {
					t.Fatalf("error line %q lacks the prefix", line)
				}
			}
			return
		}
		if errs := (&File{}).validatePolicy(a, nil); len(errs) > 0 {
			t.Fatalf("ParsePolicy accepted a policy that validation rejects: %v", joinErrors(errs, ""))
		}
		_ = a.PathNormalization.Options()
		for _, r := range a.Rules {
			_ = r.String()
		}
	})
}

// addSeeds adds every file matching the patterns to f's corpus.
func addSeeds(f *testing.F, patterns ...string) {
	for _, pattern := range patterns {
		files, err := filepath.Glob(pattern)
		if err != nil {
			f.Fatal(err)
		}
		for _, name := range files {
			data, err := os.ReadFile(name)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
}

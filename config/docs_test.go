package config

import (
	"bytes"
	"os"
	"reflect"
	"regexp"
	"slices"
	"testing"

	"github.com/outrider-mesh/outrider/gateway"
)

// keyPaths lists every key path of type t as CONFIG.md writes them:
// "upstreams[].endpoints[].weight", and for a rule
// "authorization.rules[].<action>.spiffe_id".
func keyPaths(t reflect.Type, prefix string) []string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == reflect.TypeFor[Rule]():
		paths := []string{prefix + ".allow", prefix + ".deny"}
		for i := range t.NumField() {
			if name := yamlName(t.Field(i)); name != "" {
				p := prefix + ".<action>." + name
				paths = append(paths, p)
				paths = append(paths, keyPaths(t.Field(i).Type, p)...)
			}
		}
		return paths
	case t == reflect.TypeFor[gateway.Config](), t == reflect.TypeFor[gateway.Ingresses]():
		// Documented in gateway/README.md, whose own test checks it.
		return nil
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct:
		return keyPaths(t.Elem(), prefix+"[]")
	case t.Kind() != reflect.Struct || t == durationType || t.Implements(textType) || reflect.PointerTo(t).Implements(textType):
		return nil
	}
	var paths []string
	for i := range t.NumField() {
		f := t.Field(i)
		name := yamlName(f)
		if name == "" {
			continue
		}
		p := join(prefix, name)
		paths = append(paths, p)
		paths = append(paths, keyPaths(f.Type, p)...)
	}
	return paths
}

// tableKeys returns the keys the table rows of doc name in their first
// column.
func tableKeys(doc []byte) []string {
	var keys []string
	for _, m := range regexp.MustCompile("(?m)^\\| `([^`]+)` \\|").FindAllSubmatch(doc, -1) {
		keys = append(keys, string(m[1]))
	}
	return keys
}

// TestDocs checks that CONFIG.md documents every key of File, and only
// keys of File, and that its policy file section lists the keys of a
// policy file.
func TestDocs(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("CONFIG.md")
	if err != nil {
		t.Fatal(err)
	}
	// The first column of each table row names a key: of File, then of a
	// policy file in the last section.
	main, policyDoc, ok := bytes.Cut(doc, []byte("\n## Policy file (-policy)\n"))
	if !ok {
		t.Fatal(`CONFIG.md has no "## Policy file (-policy)" section`)
	}
	documented := tableKeys(main)
	keys := keyPaths(reflect.TypeFor[File](), "")
	if len(keys) < 50 {
		t.Fatalf("only %d keys found in File: %q", len(keys), keys)
	}
	for _, k := range keys {
		if !slices.Contains(documented, k) {
			t.Errorf("CONFIG.md does not document %s", k)
		}
	}
	for _, k := range documented {
		if !slices.Contains(keys, k) {
			t.Errorf("CONFIG.md documents %s, which File does not have", k)
		}
	}
	var policyKeys []string
	for name := range yamlFields(reflect.TypeFor[policyFile]()) {
		policyKeys = append(policyKeys, name)
		if !slices.Contains(keys, "authorization."+name) {
			t.Errorf("policy file key %s is not a key of authorization", name)
		}
	}
	slices.Sort(policyKeys)
	if got := slices.Sorted(slices.Values(tableKeys(policyDoc))); !slices.Equal(got, policyKeys) {
		t.Errorf("the policy file section documents %q, want %q", got, policyKeys)
	}
	// Every key must also appear in the example.
	example, err := os.ReadFile("../examples/static/outrider.yaml")
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, k := range keys {
		names[regexp.MustCompile(`[^.\]>]+$`).FindString(k)] = true
	}
	for name := range names {
		if !regexp.MustCompile(`(?m)[\s{,]` + regexp.QuoteMeta(name) + `:`).Match(example) {
			t.Errorf("examples/static/outrider.yaml does not mention %s (even in a comment)", name)
		}
	}
}

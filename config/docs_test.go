package config

import (
	"os"
	"reflect"
	"regexp"
	"slices"
	"testing"
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
				paths = append(paths, prefix+".<action>."+name)
			}
		}
		return paths
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

// TestDocs checks that CONFIG.md documents every key of File, and only
// keys of File.
func TestDocs(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("CONFIG.md")
	if err != nil {
		t.Fatal(err)
	}
	// The first column of each table row names a key.
	var documented []string
	for _, m := range regexp.MustCompile("(?m)^\\| `([^`]+)` \\|").FindAllSubmatch(doc, -1) {
		documented = append(documented, string(m[1]))
	}
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

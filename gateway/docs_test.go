package gateway

import (
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// keyPaths lists the key paths of t as the README's tables write them
// ("routes[].match.path_prefix"), stopping at the feature packages'
// Configs, which their own READMEs document.
func keyPaths(t reflect.Type, prefix string, stop func(reflect.Type) bool) []string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct {
		return keyPaths(t.Elem(), prefix+"[]", stop)
	}
	if t.Kind() != reflect.Struct || stop(t) || t.PkgPath() != reflect.TypeFor[Config]().PkgPath() {
		return nil
	}
	var out []string
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		p := name
		if prefix != "" {
			p = prefix + "." + name
		}
		out = append(out, p)
		out = append(out, keyPaths(t.Field(i).Type, p, stop)...)
	}
	return out
}

// TestREADMEDocumentsEveryKey checks that README.md's gateway and
// ingress tables list every key of Config and Ingress.
func TestREADMEDocumentsEveryKey(t *testing.T) {
	doc, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	var documented []string
	for _, m := range regexp.MustCompile("(?m)^\\| `([^`]+)` \\|").FindAllSubmatch(doc, -1) {
		documented = append(documented, string(m[1]))
	}
	stop := func(t reflect.Type) bool { return t == reflect.TypeFor[Config]() }
	keys := keyPaths(reflect.TypeFor[Config](), "", func(reflect.Type) bool { return false })
	keys = append(keys, keyPaths(reflect.TypeFor[Ingress](), "", stop)...)
	for _, k := range keys {
		if !slices.Contains(documented, k) {
			t.Errorf("README.md does not document %s", k)
		}
	}
}

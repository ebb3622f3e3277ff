package manifest

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/outrider-mesh/outrider/inject"
	"github.com/outrider-mesh/outrider/inject/internal/yamlnode"
)

var testOptions = inject.Options{Image: "outrider:test"}

func TestDetect(t *testing.T) {
	for file, want := range map[string]Format{
		"../compose/testdata/mesh.in.yaml":  Compose,
		"../kube/testdata/multidoc.in.yaml": Kubernetes,
		"../kube/testdata/pod.in.yaml":      Kubernetes,
	} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if got := Detect(b); got != want {
			t.Errorf("Detect(%s) = %s, want %s", file, got, want)
		}
	}
	// A Kubernetes object with a services key is not Compose.
	if got := Detect([]byte("kind: Thing\nservices: {a: {}}\n")); got != Kubernetes {
		t.Errorf("Detect(kind with services) = %s", got)
	}
}

// FuzzInject: no input makes Inject panic, and what it returns parses and
// is a fixed point.
func FuzzInject(f *testing.F) {
	for _, pattern := range []string{"../kube/testdata/*.in.yaml", "../compose/testdata/*.in.yaml"} {
		files, _ := filepath.Glob(pattern)
		for _, file := range files {
			b, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	f.Add([]byte("services: {web: {labels: [outrider.io/inject=true], expose: [80]}}"))
	f.Add([]byte("kind: Pod\nmetadata: {annotations: {outrider.io/inject: 'true'}}\nspec: {containers: [{ports: [{containerPort: 1}]}]}"))
	f.Add([]byte("a: &x {kind: Pod}\nb: *x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		out, err := Inject(data, Auto, testOptions)
		if err != nil {
			return
		}
		if _, err := yamlnode.Decode(out); err != nil {
			t.Fatalf("output does not parse: %v\n%s", err, out)
		}
		again, err := Inject(out, Auto, testOptions)
		if err != nil {
			t.Fatalf("injecting the output: %v\n%s", err, out)
		}
		if !bytes.Equal(again, out) {
			t.Fatalf("not idempotent:\n%s\n---- again:\n%s", out, again)
		}
	})
}

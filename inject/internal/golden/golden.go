// Package golden runs golden-file tests for the injector's format
// packages: testdata/NAME.in.yaml is injected and compared with
// testdata/NAME.golden.yaml; `go test -update` rewrites the golden files.
// Only tests import it.
package golden

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// Inject is the function under test.
type Inject func([]byte) ([]byte, error)

// Run checks every dir/*.in.yaml against its golden file, and that
// injecting the output again returns it unchanged.
func Run(t *testing.T, dir string, inject Inject) {
	t.Helper()
	ins, err := filepath.Glob(filepath.Join(dir, "*.in.yaml"))
	if err != nil || len(ins) == 0 {
		t.Fatalf("no %s/*.in.yaml: %v", dir, err)
	}
	for _, in := range ins {
		name := strings.TrimSuffix(filepath.Base(in), ".in.yaml")
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			Check(t, in, strings.TrimSuffix(in, ".in.yaml")+".golden.yaml", inject)
		})
	}
}

// Check injects the file in and compares the result with the file golden
// (rewritten with -update); then it checks that injecting the result
// changes nothing.
func Check(t *testing.T, in, golden string, inject Inject) {
	t.Helper()
	src, err := os.ReadFile(in)
	if err != nil {
		t.Fatal(err)
	}
	got, err := inject(src)
	if err != nil {
		t.Fatalf("inject %s: %v", in, err)
	}
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("inject %s differs from %s (go test -update rewrites it):\n%s", in, golden, diff(string(want), string(got)))
	}
	again, err := inject(got)
	if err != nil {
		t.Fatalf("injecting the output again: %v", err)
	}
	if !bytes.Equal(again, got) {
		t.Errorf("injecting twice is not idempotent:\n%s", diff(string(got), string(again)))
	}
}

// diff shows the first differing line of want and got, with context.
func diff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return fmt.Sprintf("line %d:\n  want: %s\n  got:  %s", i+1, wl, gl)
		}
	}
	return "(same lines, different bytes)"
}

// WantError fails t unless err is an error whose message says each of want.
func WantError(t *testing.T, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatal("no error")
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
}

package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/outrider-mesh/outrider/inject"
	"github.com/outrider-mesh/outrider/sidecar"
)

// The checked-in injected Compose example is what `outrider inject` makes
// of the labelled one, and injecting it again changes nothing.
func TestComposeExampleIsInjected(t *testing.T) {
	const dir = "../../examples/compose"
	want, err := os.ReadFile(filepath.Join(dir, "docker-compose.injected.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range []string{"docker-compose.yaml", "docker-compose.injected.yaml"} {
		var stdout, stderr bytes.Buffer
		code := Main(context.Background(), []string{"inject", "-f", filepath.Join(dir, in), "-image", "outrider:local"}, &stdout, &stderr)
		if code != exitOK {
			t.Fatalf("inject %s: exit %d: %s", in, code, stderr.String())
		}
		if !bytes.Equal(stdout.Bytes(), want) {
			t.Errorf("inject %s differs from docker-compose.injected.yaml; regenerate it (examples/compose/README.md):\n%s", in, stdout.String())
		}
	}
}

// Every document of the Kubernetes example parses and names itself.
func TestKubernetesExamplesParse(t *testing.T) {
	files, err := filepath.Glob("../../examples/kubernetes/*.yaml")
	if err != nil || len(files) < 4 {
		t.Fatalf("examples/kubernetes: %v %v", files, err)
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		for i := 1; ; i++ {
			var obj struct {
				APIVersion string `yaml:"apiVersion"`
				Kind       string `yaml:"kind"`
				Metadata   struct {
					Name string `yaml:"name"`
				} `yaml:"metadata"`
			}
			if err := dec.Decode(&obj); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: document %d: %v", file, i, err)
			}
			if obj.APIVersion == "" || obj.Kind == "" || obj.Metadata.Name == "" {
				t.Errorf("%s: document %d lacks apiVersion, kind or metadata.name: %+v", file, i, obj)
			}
		}
	}
	// The sample application is injectable as it stands.
	var stdout, stderr bytes.Buffer
	if code := Main(context.Background(), []string{"inject", "-f", "../../examples/kubernetes/app.yaml"}, &stdout, &stderr); code != exitOK {
		t.Fatalf("inject app.yaml: exit %d: %s", code, stderr.String())
	}
	if n := strings.Count(stdout.String(), "outrider.io/status: injected"); n != 2 {
		t.Errorf("app.yaml: %d sidecars injected, want 2", n)
	}
}

func TestInjectCommandLine(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n    outrider.io/inject: \"true\"\nspec:\n  containers: [{name: a}]\n"), 0o644)
	for _, tc := range []struct {
		name  string
		args  []string
		stdin string
		code  int
		out   string // in stdout
		err   string // in stderr
	}{
		{"stdin to stdout", []string{"-format", "compose"}, "services:\n  web:\n    expose: [80]\n    labels: [outrider.io/inject=true]\n", exitOK, "web-outrider:", ""},
		{"image default is this version", nil, "services:\n  web:\n    expose: [80]\n    labels: [outrider.io/inject=true]\n", exitOK, "ghcr.io/outrider-mesh/outrider:" + version, ""},
		{"bad format", []string{"-format", "helm"}, "", exitUsage, "", "want auto, compose or kubernetes"},
		{"bad token secret", []string{"-token-secret", "nokey"}, "", exitUsage, "", "want name/key"},
		{"unexpected argument", []string{"file.yaml"}, "", exitUsage, "", "unexpected arguments"},
		{"missing port names file and line", []string{"-f", bad}, "", exitFail, "", bad + `: line 6: Pod "p" (document 1): metadata.annotations["outrider.io/service-port"]`},
		{"missing file", []string{"-f", "/nonexistent.yaml"}, "", exitFail, "", "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := injectCmd(tc.args, strings.NewReader(tc.stdin), &stdout, &stderr)
			if code != tc.code || !strings.Contains(stdout.String(), tc.out) || !strings.Contains(stderr.String(), tc.err) {
				t.Errorf("exit %d (want %d)\nstdout: %s\nstderr: %s", code, tc.code, stdout.String(), stderr.String())
			}
		})
	}
}

func TestWebhookCommandLine(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		err  string
	}{
		{nil, exitUsage, "-tls-cert and -tls-key are required"},
		{[]string{"-tls-cert", "/nonexistent.crt", "-tls-key", "/nonexistent.key"}, exitFail, "no such file"},
		{[]string{"-webhook-log-level", "loud", "-tls-cert", "a", "-tls-key", "b"}, exitUsage, "-log-level"},
	} {
		var stderr bytes.Buffer
		if code := webhookCmd(context.Background(), tc.args, &stderr); code != tc.code || !strings.Contains(stderr.String(), tc.err) {
			t.Errorf("webhook %v: exit %d (want %d): %s", tc.args, code, tc.code, stderr.String())
		}
	}
}

// The injector sizes terminationGracePeriodSeconds from outrider run's
// shutdown defaults: they must be the flags' defaults.
func TestInjectShutdownDefaultsAreRunDefaults(t *testing.T) {
	var f runFlags
	runFlagSet(&f, io.Discard)
	for _, d := range []struct {
		name        string
		run, inject time.Duration
	}{
		{"-drain-delay", f.drainDelay, inject.DefaultDrainDelay},
		{"-drain-timeout", f.drainTimeout, inject.DefaultDrainTimeout},
		{"-shutdown-grace-period", f.grace, inject.DefaultShutdownGracePeriod},
		{"leave timeout", sidecar.LeaveTimeout, inject.LeaveTimeout},
	} {
		if d.run != d.inject {
			t.Errorf("%s: outrider run's default is %s, inject assumes %s", d.name, d.run, d.inject)
		}
	}
}

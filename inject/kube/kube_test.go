package kube

import (
	"strings"
	"testing"

	"github.com/outrider-mesh/outrider/inject"
	"github.com/outrider-mesh/outrider/inject/internal/golden"
)

// testOptions are the options of the golden files.
var testOptions = inject.Options{
	Image:         "ghcr.io/outrider-mesh/outrider:test",
	TokenSecret:   "outrider-consul/token",
	CPURequest:    "50m",
	MemoryRequest: "64Mi",
	MemoryLimit:   "256Mi",
}

func TestInjectGolden(t *testing.T) {
	golden.Run(t, "testdata", func(b []byte) ([]byte, error) { return Inject(b, testOptions) })
}

func TestInjectNativeSidecar(t *testing.T) {
	o := testOptions
	o.NativeSidecar = true
	golden.Check(t, "testdata/deployment.in.yaml", "testdata/native/deployment.golden.yaml", func(b []byte) ([]byte, error) { return Inject(b, o) })
}

func TestInjectUnchangedIsIdentity(t *testing.T) {
	in := []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:   {name: x}   # odd spacing kept\ndata: {a: b}\n")
	out, err := Inject(in, testOptions)
	if err != nil || string(out) != string(in) {
		t.Fatalf("Inject changed a file with nothing to inject: %q, %v", out, err)
	}
}

func TestInjectErrors(t *testing.T) {
	deployment := func(annotations, ports string) string {
		return `apiVersion: v1
kind: Service
metadata: {name: web}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  template:
    metadata:
      annotations:
        outrider.io/inject: "true"
` + annotations + `    spec:
      containers:
        - name: web
          image: web:1
` + ports
	}
	const port = "          ports: [{containerPort: 8080}]\n"
	for _, tc := range []struct {
		name, in string
		want     []string
	}{
		{"bad yaml", "apiVersion: v1\n---\nkind: Pod\nmetadata: name: x\n", []string{"document 2", "line 4"}},
		{"bad upstream", deployment("        outrider.io/upstreams: api\n", port),
			[]string{"line 14", `Deployment "web" (document 2)`, `spec.template.metadata.annotations["outrider.io/upstreams"]`, `upstream "api"`}},
		{"missing port", deployment("", ""),
			[]string{`Deployment "web" (document 2)`, `annotations["outrider.io/service-port"]`, "declares no port"}},
		{"unknown port name", deployment("        outrider.io/service-port: http\n", port),
			[]string{"line 14", `"http" is neither a port number nor the name`}},
		{"bad inject value", deployment("", port)[:0] + strings.Replace(deployment("", port), `"true"`, "yes please", 1),
			[]string{"line 13", `annotations["outrider.io/inject"]`, "want true or false"}},
		{"consul upstream with namespace", deployment("        consul.hashicorp.com/connect-service-upstreams: api.ns1:9191\n", port),
			[]string{"line 14", "namespaces, partitions and peers are not supported"}},
		{"port clash", deployment("        outrider.io/upstreams: api:8080\n", port),
			[]string{"line 14", "upstream api", "also the service port"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Inject([]byte(tc.in), testOptions)
			golden.WantError(t, err, tc.want...)
		})
	}
}

// A Pod owned by a Job gets a native sidecar first among its init
// containers; the operations address the arrays the Pod has.
func TestPodPatchPaths(t *testing.T) {
	const pod = `{"kind":"Pod","metadata":{"generateName":"migrate-","ownerReferences":[{"kind":"Job","name":"migrate"}],
	"annotations":{"outrider.io/inject":"true"}},"spec":{"terminationGracePeriodSeconds":5,%s"containers":[{"name":"m","ports":[{"containerPort":80}]}]}}`
	for _, tc := range []struct {
		init, wantPath string
	}{
		{`"initContainers":[{"name":"wait"}],`, "/spec/initContainers/0"},
		{"", "/spec/initContainers"},
	} {
		ops, err := PodPatch([]byte(strings.Replace(pod, "%s", tc.init, 1)), testOptions)
		if err != nil {
			t.Fatal(err)
		}
		if len(ops) != 3 || ops[0].Path != tc.wantPath || ops[1].Path != "/metadata/annotations/outrider.io~1status" ||
			ops[2].Path != "/spec/terminationGracePeriodSeconds" || ops[2].Value != int64(30) {
			t.Fatalf("ops %+v", ops)
		}
		c, ok := ops[0].Value.(Container)
		if tc.init == "" {
			cs, _ := ops[0].Value.([]Container)
			ok, c = len(cs) == 1, cs[0]
		}
		if !ok || c.RestartPolicy != "Always" || c.Args[3] != "$(POD_NAME)" || c.Args[5] != "migrate" {
			t.Errorf("container %+v", ops[0].Value)
		}
	}
	if ops, err := PodPatch([]byte(`{"kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[]}}`), testOptions); err != nil || ops != nil {
		t.Errorf("not annotated: %v %v", ops, err)
	}
	if _, err := PodPatch([]byte(`{"kind":"Deployment"}`), testOptions); err == nil {
		t.Error("a Deployment accepted as a Pod")
	}
}

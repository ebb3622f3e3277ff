package compose

import (
	"strings"
	"testing"
	"time"

	"github.com/outrider-mesh/outrider/inject"
	"github.com/outrider-mesh/outrider/inject/internal/golden"
)

var testOptions = inject.Options{Image: "ghcr.io/outrider-mesh/outrider:test"}

func TestInjectGolden(t *testing.T) {
	golden.Run(t, "testdata", func(b []byte) ([]byte, error) { return Inject(b, testOptions) })
}

func TestInjectErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []string
	}{
		{"not compose", "apiVersion: v1\nkind: Pod\n", []string{"not a Compose file"}},
		{"bad yaml", "services:\n  web:\n    image: a: b\n", []string{"line 3"}},
		{"missing port", "services:\n  web:\n    image: web:1\n    labels:\n      outrider.io/inject: \"true\"\n",
			[]string{"line 5", `service "web"`, `services.web.labels["outrider.io/service-port"]`, "declares no port"}},
		{"bad upstream", "services:\n  web:\n    expose: [80]\n    labels:\n      - outrider.io/inject=true\n      - outrider.io/upstreams=api@:x\n",
			[]string{"line 6", `labels["outrider.io/upstreams"]`, `"x" is not a port`}},
		{"bad port entry", "services:\n  web:\n    ports: [\"80:http\"]\n    labels: {outrider.io/inject: \"true\"}\n",
			[]string{"line 3", "services.web.ports", "no container port"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Inject([]byte(tc.in), testOptions)
			golden.WantError(t, err, tc.want...)
		})
	}
}

func TestPortOf(t *testing.T) {
	for in, want := range map[string]int{"80": 80, "8080:80": 80, "127.0.0.1:8080:80/tcp": 80, "3000-3005": 3000, "9000/udp": 9000} {
		if got, err := portOf(in); err != nil || got != want {
			t.Errorf("portOf(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
}

// The sidecar's stop_grace_period follows the drain settings it runs
// with, rounded up to whole seconds.
func TestStopGracePeriod(t *testing.T) {
	in := []byte("services:\n  web:\n    image: web\n    expose: [\"8080\"]\n    labels:\n      outrider.io/inject: \"true\"\n")
	o := testOptions
	o.DrainDelay, o.ShutdownGracePeriod, o.DrainTimeout = 3*time.Second, 1500*time.Millisecond, 40*time.Second
	out, err := Inject(in, o)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "stop_grace_period: 45s\n") {
		t.Errorf("want stop_grace_period: 45s (3 + 1.5 + 40, rounded up):\n%s", out)
	}
}

// Package demo_test runs the `make demo` script end to end, so the README's
// first command cannot rot unnoticed.
package demo_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outrider-mesh/outrider/internal/testutil/consultest"
)

func TestDemoScript(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Fatal("the demo needs python3 (README requirements)")
	}
	bin := filepath.Join(t.TempDir(), "outrider")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/outrider").CombinedOutput(); err != nil {
		t.Fatalf("build outrider: %v\n%s", err, out)
	}
	ports := consultest.FreePorts(t, 2)
	adminBase := consultest.FreePorts(t, 1)[0]
	// The script uses adminBase+1..+3; pick a base whose neighbours are
	// very likely free too.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "./run.sh")
	cmd.Env = append(os.Environ(),
		"DEMO_ONESHOT=1",
		"OUTRIDER_BIN="+bin,
		"CONSUL_BIN="+consultest.Binary(t, "consul"),
		"JAEGER_BIN="+consultest.Binary(t, "jaeger"),
		"CONSUL_PORT="+strconv.Itoa(ports[0]),
		"FRONTEND_PORT="+strconv.Itoa(ports[1]),
		"ADMIN_BASE="+strconv.Itoa(adminBase),
	)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out)
	}
	for _, want := range []string{
		"frontend -> api-1 v1", "frontend -> api-2 v1", // the v1 subset, balanced per request
		"SERVING",                                    // the gRPC upstream
		"inventory-1 SERVING", "inventory-2 SERVING", // balanced per call
		"by api v2 (the 90/10 split",        // the canary count line
		"denied by intention api<-frontend", // the deny and its explanation
		"would frontend be allowed", `"status": 403`,
		"one request's trace:  http://127.0.0.1:", // found in Jaeger through its query API
		"demo: OK",
		"stopped, temporary files removed",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
}

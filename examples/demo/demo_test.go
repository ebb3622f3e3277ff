// Package demo_test runs the `make demo` script end to end, so the README's
// first command cannot rot unnoticed.
package demo_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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
	// Each instance answered some of the 100 counted requests (v2 gets
	// 10%: the chance that it gets none is 3e-5).
	m := regexp.MustCompile(`api-1 (\d+), api-2 (\d+)\), api v2 (\d+) .*\n.*inventory-1 (\d+), inventory-2 (\d+)`).FindStringSubmatch(string(out))
	if m == nil {
		t.Errorf("demo output lacks the per-instance counts:\n%s", out)
	} else {
		for i, n := range m[1:] {
			if n == "0" {
				t.Errorf("instance %d of api-1, api-2, api-3, inventory-1, inventory-2 answered none of 100 requests:\n%s", i+1, m[0])
			}
		}
		if v2, _ := strconv.Atoi(m[3]); v2 > 35 {
			t.Errorf("api v2 answered %d of 100 requests with a 10%% split", v2)
		}
	}
	for _, want := range []string{
		"frontend -> api-", " SERVING", // an answer through both upstreams
		"(api-3): the 90/10 split",          // the canary count line, checked below
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

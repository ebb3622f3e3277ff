package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/outrider-mesh/outrider/discovery/consul"
	"github.com/outrider-mesh/outrider/internal/testutil"
	"github.com/outrider-mesh/outrider/internal/testutil/consultest"
	"github.com/outrider-mesh/outrider/internal/testutil/loadtest"
)

// The tests of this file check the drain's first step: a sidecar whose
// registration belongs to someone else (-sidecar-for) leaves Consul's
// routing through maintenance mode and keeps serving for -drain-delay
// before it closes its listeners.

// maintenance returns the reason of the agent's maintenance check on the
// service id, and whether there is one.
func maintenance(t *testing.T, a *consultest.Agent, id string) (string, bool) {
	t.Helper()
	checks, err := a.Client.Agent().Checks()
	if err != nil {
		t.Fatalf("agent checks: %v", err)
	}
	c, ok := checks[api.ServiceMaintPrefix+id]
	if !ok {
		return "", false
	}
	if c.Status != api.HealthCritical {
		t.Errorf("maintenance check of %s is %s, want critical", id, c.Status)
	}
	return c.Notes, true
}

// stop sends SIGTERM to p and waits until it has exited with status code
// (the bound is a hang detector, not a performance assertion).
func (p *process) stop(t *testing.T, code int, within time.Duration) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	p.waitExit(t, code, within)
}

// waitExit waits until p has exited with status code.
func (p *process) waitExit(t *testing.T, code int, within time.Duration) {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(within):
		t.Fatalf("outrider still running after %s", within)
	}
	got := 0
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		got = ee.ExitCode()
	} else if p.err != nil {
		t.Fatalf("outrider: %v", p.err)
	}
	if got != code {
		t.Fatalf("outrider exited %d, want %d:\n%s", got, code, p.out.String())
	}
}

// Consul's built-in proxy as the client, balancing L4 over two instances
// whose sidecars are outrider processes in -sidecar-for mode (the test
// owns the registrations). The built-in proxy asks Consul for a healthy
// instance on each new connection and does not retry a failed dial, so it
// fails every connection it sends to a closed listener until Consul's
// check of that listener fails. SIGTERM to one sidecar under load: its
// proxy service enters maintenance mode at once, so new connections go to
// the other instance; during the drain delay its listener still accepts
// and /ready answers 503; then it drains and exits 0, and no request
// fails.
func TestSIGTERMDrainBuiltinProxyClient(t *testing.T) {
	t.Parallel()
	a := consultest.Start(t)
	port := consultest.FreePorts(t, 6)
	apps, procs := twoInstances(t, a, port, "-drain-delay", "2s", "-drain-timeout", "3s")
	upstream := addr(port[5])
	registerWithSidecar(t, a, "client", "client-1", testutil.DeadPort(t), port[4],
		api.Upstream{DestinationName: "web", LocalBindAddress: "127.0.0.1", LocalBindPort: port[5]})
	a.BuiltinProxy(t, "client-1")
	waitServed(t, upstream, apps)

	load := loadtest.New(t)
	load.Fresh("http://"+upstream+"/", 2)
	load.Pooled("http://"+upstream+"/", 2)
	load.Pooled("http://"+upstream+"/slow", 1)
	time.Sleep(500 * time.Millisecond) // load on both instances
	if err := procs[0].cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	proxyID := "web-1-sidecar-proxy"
	want := consul.MaintenanceReason(procs[0].cmd.Process.Pid)
	eventually(t, 2*time.Second, func() error {
		code, body, err := testutil.Ready(addr(port[2]))
		if err != nil || code != http.StatusServiceUnavailable || !strings.Contains(body, "draining") {
			return fmt.Errorf("web-1's /ready while draining: %d %q %v, want 503 draining", code, body, err)
		}
		c, err := net.DialTimeout("tcp", addr(port[0]), time.Second)
		if err != nil {
			return fmt.Errorf("web-1's public listener during the drain delay: %v", err)
		}
		c.Close()
		if notes, ok := maintenance(t, a, proxyID); !ok || notes != want {
			return fmt.Errorf("web-1's maintenance: %v %q, want %q", ok, notes, want)
		}
		return nil
	})
	procs[0].waitExit(t, 0, 20*time.Second)
	after1, after2 := apps[0].served.Load(), apps[1].served.Load()
	time.Sleep(time.Second) // the load goes on, on web-2 alone
	load.Check(t, "SIGTERM drain, Consul's built-in proxy as the client", 100)
	if n := apps[0].served.Load() - after1; n != 0 {
		t.Errorf("web-1 served %d requests after its sidecar exited", n)
	}
	if n := apps[1].served.Load() - after2; n == 0 {
		t.Error("web-2 served nothing after web-1's sidecar exited")
	}
}

// The maintenance mode's life: set by the draining sidecar (with its pid
// in the reason), kept by a sidecar that fails to start, lifted by the
// next sidecar for the ID once it is ready; an operator's maintenance mode
// is neither replaced by a draining sidecar nor lifted by the next one.
func TestDrainMaintenanceMode(t *testing.T) {
	t.Parallel()
	a := consultest.Start(t)
	port := consultest.FreePorts(t, 2)
	app := startHTTPApp(t, "web-1")
	appPort, _ := net.ResolveTCPAddr("tcp", app)
	registerWithSidecar(t, a, "web", "web-1", appPort.Port, port[0])
	const proxyID = "web-1-sidecar-proxy"
	admin := addr(port[1])
	start := func() *process {
		return startBinary(t, nil, "run", "-sidecar-for", "web-1", "-http-addr", a.HTTPAddr, "-admin-bind", admin,
			"-shutdown-grace-period", "0", "-drain-delay", "500ms", "-drain-timeout", "1s")
	}
	notes := func() string {
		n, _ := maintenance(t, a, proxyID)
		return n
	}

	first := start()
	waitReady(t, admin)
	if n, on := maintenance(t, a, proxyID); on {
		t.Fatalf("in maintenance before any drain: %q", n)
	}
	first.stop(t, 0, 15*time.Second)
	ours := consul.MaintenanceReason(first.cmd.Process.Pid)
	if n := notes(); n != ours {
		t.Fatalf("maintenance after the drain: %q, want %q", n, ours)
	}
	if entries, _, err := a.Client.Health().Connect("web", "", true, nil); err != nil || len(entries) != 0 {
		t.Fatalf("passing web instances while in maintenance: %d %v, want none", len(entries), err)
	}

	// A sidecar that never becomes ready (its public port is taken)
	// neither lifts the maintenance mode nor sets its own.
	taken, err := net.Listen("tcp", addr(port[0]))
	if err != nil {
		t.Fatal(err)
	}
	failed := start()
	failed.waitExit(t, 1, 20*time.Second)
	taken.Close()
	if n := notes(); n != ours {
		t.Fatalf("maintenance after a failed start: %q, want %q", n, ours)
	}

	// The next sidecar lifts it once ready.
	next := start()
	waitReady(t, admin)
	eventually(t, 10*time.Second, func() error {
		if n, on := maintenance(t, a, proxyID); on {
			return fmt.Errorf("still in maintenance (%q) after the next sidecar became ready", n)
		}
		return nil
	})
	if !strings.Contains(next.out.String(), "lifted the maintenance mode") {
		t.Errorf("the next sidecar did not log the lift:\n%s", next.out.String())
	}

	// An operator's maintenance mode survives a drain and a restart.
	const operator = "operator: replacing a disk"
	if err := a.Client.Agent().EnableServiceMaintenance(proxyID, operator); err != nil {
		t.Fatal(err)
	}
	next.stop(t, 0, 15*time.Second)
	if n := notes(); n != operator {
		t.Fatalf("maintenance after draining under an operator's: %q, want %q", n, operator)
	}
	last := start()
	waitReady(t, admin)
	eventually(t, 10*time.Second, func() error {
		if !strings.Contains(last.out.String(), "left in place") {
			return errors.New("the sidecar has not looked at the maintenance mode yet")
		}
		return nil
	})
	if n := notes(); n != operator {
		t.Fatalf("maintenance after a restart under an operator's: %q, want %q", n, operator)
	}
}

// Consul hangs (its process stopped: connections are accepted, nothing is
// answered) when the sidecar gets SIGTERM: leaving the routing gives up
// after its bound, says so, and the drain goes on; the process exits 0.
// Without the bound the call would wait for Consul forever.
func TestDrainWithConsulHung(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		args    func(appPort, publicPort int) []string
		wantLog string
	}{
		{"sidecar-for", func(int, int) []string { return []string{"-sidecar-for", "web-1"} },
			"cannot take the instance out of Consul's routing"},
		{"register", func(appPort, publicPort int) []string {
			return []string{"-register", "-sidecar-for", "web-1", "-service-name", "web",
				"-service-port", fmt.Sprint(appPort), "-public-port", fmt.Sprint(publicPort)}
		}, "deregistration failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := consultest.Start(t)
			port := consultest.FreePorts(t, 2)
			app := startHTTPApp(t, "web-1")
			appPort, _ := net.ResolveTCPAddr("tcp", app)
			if tc.name == "sidecar-for" {
				registerWithSidecar(t, a, "web", "web-1", appPort.Port, port[0])
			}
			admin := addr(port[1])
			args := append([]string{"run", "-http-addr", a.HTTPAddr, "-admin-bind", admin,
				"-shutdown-grace-period", "0", "-drain-delay", "1s", "-drain-timeout", "2s"}, tc.args(appPort.Port, port[0])...)
			p := startBinary(t, nil, args...)
			waitReady(t, admin)
			a.Hang(t)
			p.stop(t, 0, 15*time.Second)
			if out := p.out.String(); !strings.Contains(out, tc.wantLog) || !strings.Contains(out, "outrider stopped") {
				t.Errorf("want %q and a clean stop in the log:\n%s", tc.wantLog, out)
			}
		})
	}
}

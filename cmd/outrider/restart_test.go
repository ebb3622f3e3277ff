package main

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/outrider-mesh/outrider/internal/testutil"
	"github.com/outrider-mesh/outrider/internal/testutil/consultest"
	"github.com/outrider-mesh/outrider/internal/testutil/loadtest"
)

// slowApp is an HTTP application that answers GET / with its name and
// GET /slow after 500 ms, counting the slow requests it is serving.
type slowApp struct {
	name     string
	addr     string
	inFlight atomic.Int64 // /slow requests being served
	served   atomic.Int64 // requests received
}

func startSlowApp(t *testing.T, name string) *slowApp {
	t.Helper()
	a := &slowApp{name: name}
	a.addr = serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Counted on arrival: a /slow request that arrived before its
		// sidecar exited may still finish (and be retried elsewhere by a
		// client whose pooled connection was cut) after.
		a.served.Add(1)
		if r.URL.Path == "/slow" {
			a.inFlight.Add(1)
			time.Sleep(500 * time.Millisecond)
			a.inFlight.Add(-1)
		}
		fmt.Fprint(w, a.name)
	}))
	return a
}

func (a *slowApp) port(t *testing.T) int {
	t.Helper()
	ta, err := net.ResolveTCPAddr("tcp", a.addr)
	if err != nil {
		t.Fatal(err)
	}
	return ta.Port
}

// twoInstances registers web-1 and web-2, each a slowApp behind an
// outrider process in -sidecar-for mode with args added (public ports
// port[0] and port[1], admin ports port[2] and port[3]), and waits until
// both sidecars are ready.
func twoInstances(t *testing.T, a *consultest.Agent, port []int, args ...string) ([]*slowApp, []*process) {
	t.Helper()
	apps := []*slowApp{startSlowApp(t, "web-1"), startSlowApp(t, "web-2")}
	var procs []*process
	for i, app := range apps {
		registerWithSidecar(t, a, "web", app.name, app.port(t), port[i])
		admin := addr(port[2+i])
		procs = append(procs, startBinary(t, nil, append([]string{"run", "-sidecar-for", app.name, "-http-addr", a.HTTPAddr,
			"-admin-bind", admin, "-shutdown-grace-period", "0"}, args...)...))
		waitReady(t, admin)
	}
	return apps, procs
}

// waitServed sends requests through upstream until every app has served
// one: each instance is routable and serving through the client.
func waitServed(t *testing.T, upstream string, apps []*slowApp) {
	t.Helper()
	eventually(t, 30*time.Second, func() error {
		for _, app := range apps {
			if app.served.Load() == 0 {
				send(upstream, "GET", "/", nil)
				return fmt.Errorf("%s not reached through the client yet", app.name)
			}
		}
		return nil
	})
}

// SIGTERM drain under load: two instances of web, each behind a real
// outrider process in Consul mode, and a client sidecar balancing between
// them under steady load (pooled connections, a new connection per
// request, and 500 ms requests always in flight). One instance's sidecar
// gets SIGTERM: it exits 0 after its in-flight requests finished, the
// client moves off it, and no request fails.
func TestSIGTERMDrainUnderLoad(t *testing.T) {
	t.Parallel()
	a := consultest.Start(t)
	if _, _, err := a.Client.ConfigEntries().Set(&api.ServiceConfigEntry{Kind: api.ServiceDefaults, Name: "web", Protocol: "http"}, nil); err != nil {
		t.Fatal(err)
	}
	port := consultest.FreePorts(t, 7)
	apps, procs := twoInstances(t, a, port, "-drain-timeout", "10s")
	upstream := addr(port[6])
	registerWithSidecar(t, a, "client", "client-1", testutil.DeadPort(t), port[4],
		api.Upstream{DestinationName: "web", LocalBindAddress: "127.0.0.1", LocalBindPort: port[6]})
	startOutrider(t, addr(port[5]), "run", "-sidecar-for", "client-1", "-http-addr", a.HTTPAddr,
		"-admin-bind", addr(port[5]), "-shutdown-grace-period", "0")
	waitServed(t, upstream, apps)

	load := loadtest.New(t)
	load.Pooled("http://"+upstream+"/", 2)
	load.Fresh("http://"+upstream+"/", 1)
	load.Pooled("http://"+upstream+"/slow", 2)
	// SIGTERM while web-1 serves slow requests.
	eventually(t, 10*time.Second, func() error {
		if apps[0].inFlight.Load() == 0 {
			return fmt.Errorf("no slow request in flight on web-1")
		}
		return nil
	})
	inFlight := apps[0].inFlight.Load()
	if err := procs[0].cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-procs[0].exited:
		if procs[0].err != nil {
			t.Fatalf("web-1's sidecar exited with %v after SIGTERM, want status 0", procs[0].err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("web-1's sidecar still running 20s after SIGTERM")
	}
	after1, after2 := apps[0].served.Load(), apps[1].served.Load()
	time.Sleep(time.Second) // the load goes on, on web-2 alone
	load.Check(t, fmt.Sprintf("SIGTERM drain under load (%d slow requests in flight on web-1 at SIGTERM)", inFlight), 100)
	if n := apps[0].served.Load() - after1; n != 0 {
		t.Errorf("web-1 served %d requests after its sidecar exited", n)
	}
	if n := apps[1].served.Load() - after2; n == 0 {
		t.Error("web-2 served nothing after web-1's sidecar exited")
	}
	if out := procs[0].out.String(); !strings.Contains(out, "outrider stopped") {
		t.Errorf("web-1's sidecar did not log a clean stop:\n%s", out)
	}
}

// SIGHUP under load: the authorization file is rewritten (rules added and
// changed, the client still allowed) and re-read five times while the
// allowed client sends requests through pooled and new connections; none
// fails, and the last rules are in force.
func TestSIGHUPPolicyReloadUnderLoad(t *testing.T) {
	t.Parallel()
	const allowClient = "authorization:\n  rules:\n    - allow: {name: client, spiffe_id: spiffe://example.org/client}\n"
	p := newStaticPair(t, allowClient)
	proc := startBinary(t, nil, "run", "-config", p.webFile, "-shutdown-grace-period", "0")
	waitReady(t, p.webAdmin)
	wantStatus(t, p.upstream, "GET", "/x", 200)

	load := loadtest.New(t)
	load.Pooled("http://"+p.upstream+"/x", 2)
	load.Fresh("http://"+p.upstream+"/x", 1)
	load.Held(t, p.upstream, "/x", 20*time.Millisecond)
	for i := range 5 {
		time.Sleep(300 * time.Millisecond)
		p.writeWeb(t, allowClient+fmt.Sprintf("    - deny: {name: no-z-%d, http: {path_exact: /z}}\n", i))
		if err := proc.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	wantStatus(t, p.upstream, "GET", "/z", 403)
	time.Sleep(300 * time.Millisecond)
	load.Check(t, "SIGHUP policy reload under load (5 reloads)", 100)
	if n := strings.Count(proc.out.String(), "SIGHUP: "); n != 5 {
		t.Errorf("%d SIGHUPs logged, want 5", n)
	}
	if strings.Contains(proc.out.String(), "not reloaded") {
		t.Errorf("a reload failed:\n%s", proc.out.String())
	}
}

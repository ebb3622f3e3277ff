package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/outrider-mesh/outrider/internal/testutil"
	"github.com/outrider-mesh/outrider/internal/testutil/consultest"
)

// The real binary, as a platform runs it: ready once serving, and on
// SIGTERM (with the application stopping too) it stops accepting, drains
// and exits 0.
func TestBinaryExitsZeroOnSIGTERM(t *testing.T) {
	a := consultest.Start(t)
	bin := filepath.Join(t.TempDir(), "outrider")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	p := consultest.FreePorts(t, 3)
	app, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	err = a.Client.Agent().ServiceRegister(&api.AgentServiceRegistration{
		Name: "web", ID: "web-1", Port: app.Addr().(*net.TCPAddr).Port,
		Connect: &api.AgentServiceConnect{SidecarService: &api.AgentServiceRegistration{Port: p[0]}},
	})
	if err != nil {
		t.Fatal(err)
	}
	admin := "127.0.0.1:" + strconv.Itoa(p[1])
	cmd := exec.Command(bin, "run", "-sidecar-for", "web-1", "-admin-bind", admin, "-drain-timeout", "2s")
	cmd.Env = append(os.Environ(), "CONSUL_HTTP_ADDR="+a.HTTPAddr, "CONNECT_SIDECAR_FOR=", "CONNECT_PROXY_ID=")
	out := &testutil.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		cmd.Process.Kill()
		if t.Failed() {
			t.Logf("outrider output:\n%s", out.String())
		}
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + admin + "/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready after 20s (last: %v)", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The orchestrator stops the application and the sidecar together;
	// the sidecar closes its upstreams once the application is gone.
	app.Close()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v, want status 0", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("still running 10s after SIGTERM")
	}
	if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p[0]), time.Second); err == nil {
		c.Close()
		t.Fatal("public listener still accepting after exit")
	}
}

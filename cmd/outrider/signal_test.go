package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/outrider-mesh/outrider/internal/testutil"
	"github.com/outrider-mesh/outrider/internal/testutil/consultest"
)

// process is the outrider binary running as a child process.
type process struct {
	cmd    *exec.Cmd
	out    *testutil.Buffer // its stdout and stderr
	exited chan struct{}    // closed when it has exited; err is then set
	err    error
}

// binary is the outrider binary the tests run, built once per test run
// into a folder TestMain removes.
var binary struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// TestMain removes the binary the tests built.
func TestMain(m *testing.M) {
	code := m.Run()
	if binary.dir != "" {
		os.RemoveAll(binary.dir)
	}
	os.Exit(code)
}

// outriderBinary builds outrider (once for every test) and returns its
// path.
func outriderBinary(t *testing.T) string {
	t.Helper()
	binary.once.Do(func() {
		if binary.dir, binary.err = os.MkdirTemp("", "outrider-bin"); binary.err != nil {
			return
		}
		binary.path = filepath.Join(binary.dir, "outrider")
		if out, err := exec.Command("go", "build", "-o", binary.path, ".").CombinedOutput(); err != nil {
			binary.err = fmt.Errorf("%v\n%s", err, out)
		}
	})
	if binary.err != nil {
		t.Fatalf("build: %v", binary.err)
	}
	return binary.path
}

// startBinary runs the outrider binary with args (and env added to this
// process's environment) until the test ends; its output is logged if the
// test failed.
func startBinary(t *testing.T, env []string, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(outriderBinary(t), args...), out: &testutil.Buffer{}, exited: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("outrider output:\n%s", p.out.String())
		}
	})
	return p
}

// The real binary, as a platform runs it: ready once serving, and on
// SIGTERM (with the application stopping too) it stops accepting, drains
// and exits 0.
func TestBinaryExitsZeroOnSIGTERM(t *testing.T) {
	a := consultest.Start(t)
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
	admin := addr(p[1])
	proc := startBinary(t, []string{"CONSUL_HTTP_ADDR=" + a.HTTPAddr, "CONNECT_SIDECAR_FOR=", "CONNECT_PROXY_ID="},
		"run", "-sidecar-for", "web-1", "-admin-bind", admin, "-drain-timeout", "2s")
	waitReady(t, admin)
	// The orchestrator stops the application and the sidecar together;
	// the sidecar closes its upstreams once the application is gone.
	app.Close()
	if err := proc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-proc.exited:
		if proc.err != nil {
			t.Fatalf("exit after SIGTERM: %v, want status 0", proc.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("still running 10s after SIGTERM")
	}
	if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p[0]), time.Second); err == nil {
		c.Close()
		t.Fatal("public listener still accepting after exit")
	}
}

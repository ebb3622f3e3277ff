package main

import (
	"bytes"
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outrider-mesh/outrider/internal/testutil"
	"github.com/outrider-mesh/outrider/internal/testutil/consultest"
)

// -register: the sidecar and the application are registered (the sidecar
// as a connect-proxy with its upstreams and checks), become healthy, and
// are deregistered when the sidecar stops. `outrider wait` sees it ready.
func TestRegisterAndDeregister(t *testing.T) {
	a := consultest.Start(t)
	t.Setenv("CONSUL_HTTP_ADDR", a.HTTPAddr)
	t.Setenv("CONNECT_SIDECAR_FOR", "")
	t.Setenv("CONNECT_PROXY_ID", "")
	app, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	p := consultest.FreePorts(t, 4)
	admin := "127.0.0.1:" + strconv.Itoa(p[1])
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr testutil.Buffer
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"run", "-register", "-sidecar-for", "api-1",
			"-service-name", "api", "-service-port", strconv.Itoa(app.Addr().(*net.TCPAddr).Port), "-service-address", "127.0.0.1",
			"-public-port", strconv.Itoa(p[0]), "-public-address", "127.0.0.1",
			"-upstream", "web:" + strconv.Itoa(p[2]), "-upstream", "db@dc2:" + strconv.Itoa(p[3]),
			"-admin-bind", admin, "-shutdown-grace-period", "0"}, &bytes.Buffer{}, &stderr)
	}()
	defer func() {
		if t.Failed() {
			t.Logf("outrider output:\n%s", stderr.String())
		}
	}()

	var out bytes.Buffer
	if code := Main(context.Background(), []string{"wait", "-admin-addr", admin, "-timeout", "30s"}, &out, &stderr); code != exitOK {
		t.Fatalf("outrider wait = %d", code)
	}
	// -timeout 0 checks once: the container health check.
	if code := Main(context.Background(), []string{"wait", "-admin-addr", admin, "-timeout", "0", "-quiet"}, &out, &stderr); code != exitOK {
		t.Fatalf("outrider wait -timeout 0 = %d", code)
	}
	svcs, err := a.Client.Agent().Services()
	if err != nil {
		t.Fatal(err)
	}
	proxy, ok := svcs["api-1-sidecar-proxy"]
	if !ok || svcs["api-1"] == nil {
		t.Fatalf("registered services = %v, want api-1 and api-1-sidecar-proxy", keys(svcs))
	}
	if proxy.Kind != "connect-proxy" || proxy.Port != p[0] || proxy.Proxy.DestinationServiceID != "api-1" ||
		len(proxy.Proxy.Upstreams) != 2 || proxy.Proxy.Upstreams[1].Datacenter != "dc2" {
		t.Fatalf("proxy registration = %+v / %+v", proxy, proxy.Proxy)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		entries, _, err := a.Client.Health().Connect("api", "", true, nil)
		if err == nil && len(entries) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("api never became healthy through its sidecar (%v)", err)
		}
		time.Sleep(200 * time.Millisecond)
	}

	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Fatalf("run exited %d", code)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not stop")
	}
	svcs, err = a.Client.Agent().Services()
	if err != nil {
		t.Fatal(err)
	}
	if len(svcs) != 0 {
		t.Fatalf("still registered after exit: %v", keys(svcs))
	}
}

func keys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

func TestRegisterFlagErrors(t *testing.T) {
	t.Setenv("CONNECT_SIDECAR_FOR", "")
	t.Setenv("CONNECT_PROXY_ID", "")
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-register", "-public-port", "21000"}, "one of -sidecar-for, -proxy-id or -config is required"},
		{[]string{"-register", "-sidecar-for", "a-1"}, "-register needs -public-port"},
		{[]string{"-register", "-sidecar-for", "a-1", "-public-port", "21000", "-service-name", "a"}, "go together"},
		{[]string{"-sidecar-for", "a-1", "-public-port", "21000"}, "need -register"},
		{[]string{"-register", "-sidecar-for", "a-1", "-public-port", "1", "-upstream", "web"}, "want [bind-ip:]name[@dc]:port"},
		{[]string{"-register", "-sidecar-for", "a-1", "-public-port", "1", "-upstream", "web:http"}, "is not a port"},
		{[]string{"-register", "-sidecar-for", "a-1", "-public-port", "1", "-upstream", "nothost:web:80"}, "not an IP address"},
	}
	for _, tt := range tests {
		var stderr bytes.Buffer
		if code := Main(context.Background(), append([]string{"run"}, tt.args...), &bytes.Buffer{}, &stderr); code != exitUsage {
			t.Errorf("%q: exit %d, want %d", tt.args, code, exitUsage)
		}
		if !strings.Contains(stderr.String(), tt.want) {
			t.Errorf("%q: stderr lacks %q:\n%s", tt.args, tt.want, stderr.String())
		}
	}
}

func TestWaitTimesOut(t *testing.T) {
	var stderr bytes.Buffer
	start := time.Now()
	code := Main(context.Background(), []string{"wait", "-admin-addr", "127.0.0.1:" + strconv.Itoa(testutil.DeadPort(t)), "-timeout", "300ms"}, &bytes.Buffer{}, &stderr)
	if code != exitFail || !strings.Contains(stderr.String(), "not ready after 300ms") {
		t.Fatalf("wait = %d, %q", code, stderr.String())
	}
	if time.Since(start) > 10*time.Second {
		t.Fatal("wait ignored its timeout")
	}
}

// A registration Consul refuses (here: two upstreams on one port) is a
// configuration error: exit 1 with Consul's reason, no endless retry.
func TestRegisterRejectedExits1(t *testing.T) {
	a := consultest.Start(t)
	t.Setenv("CONSUL_HTTP_ADDR", a.HTTPAddr)
	t.Setenv("CONNECT_SIDECAR_FOR", "")
	t.Setenv("CONNECT_PROXY_ID", "")
	p := consultest.FreePorts(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var stderr bytes.Buffer
	code := Main(ctx, []string{"run", "-register", "-sidecar-for", "api-1", "-service-name", "api", "-service-port", "8080",
		"-public-port", strconv.Itoa(p[0]), "-upstream", "web:" + strconv.Itoa(p[1]), "-upstream", "db:" + strconv.Itoa(p[1]),
		"-admin-bind", "127.0.0.1:0"}, &bytes.Buffer{}, &stderr)
	if code != exitFail || !strings.Contains(stderr.String(), "specified twice") {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr.String())
	}
	if svcs, _ := a.Client.Agent().Services(); len(svcs) != 0 {
		t.Fatalf("left registered after a refused registration: %v", keys(svcs))
	}
}

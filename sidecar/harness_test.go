package sidecar_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/outrider-mesh/outrider/internal/testutil/consultest"
	"github.com/outrider-mesh/outrider/policy"
	"github.com/outrider-mesh/outrider/sidecar"
)

// echoApp is a TCP application that echoes what it reads and half-closes
// when its client does. It counts accepted connections.
type echoApp struct {
	ln       net.Listener
	accepted atomic.Int64
}

func startEcho(t *testing.T) *echoApp {
	t.Helper()
	return startTCPApp(t, func(c net.Conn) {
		io.Copy(c, c)
		c.(*net.TCPConn).CloseWrite()
	})
}

// startTCPApp is a TCP application that runs serve on each accepted
// connection, in its own goroutine, and then closes it.
func startTCPApp(t *testing.T, serve func(net.Conn)) *echoApp {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &echoApp{ln: ln}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.accepted.Add(1)
			wg.Go(func() {
				defer c.Close()
				serve(c)
			})
		}
	})
	return e
}

func (e *echoApp) port() int { return e.ln.Addr().(*net.TCPAddr).Port }

// service describes one instance to register with a sidecar.
type service struct {
	name, id   string
	appPort    int
	publicPort int
	upstreams  []api.Upstream
	meta       map[string]string // the service's; its sidecar inherits it
}

// register registers the instance and its sidecar the way users do, with a
// sidecar TCP check every second (the default is every 10s) so tests do not
// wait long for the instance to become routable.
func register(t *testing.T, a *consultest.Agent, s service) {
	t.Helper()
	err := a.Client.Agent().ServiceRegister(&api.AgentServiceRegistration{
		Name: s.name, ID: s.id, Port: s.appPort, Address: "127.0.0.1", Meta: s.meta,
		Connect: &api.AgentServiceConnect{SidecarService: &api.AgentServiceRegistration{
			Port:    s.publicPort,
			Address: "127.0.0.1",
			Checks: api.AgentServiceChecks{{
				Name: "sidecar listening", TCP: "127.0.0.1:" + strconv.Itoa(s.publicPort),
				Interval: "1s", Timeout: "1s",
			}},
			Proxy: &api.AgentServiceConnectProxyConfig{Upstreams: s.upstreams},
		}},
	})
	if err != nil {
		t.Fatalf("register %s: %v", s.id, err)
	}
}

// pair is the usual test topology: web-1 (application on webApp) and
// client-1, whose sidecar has web as an upstream.
type pair struct {
	webPublic int    // web's sidecar public port
	upstream  string // client's local listener for web
}

// registerPair registers web-1 and client-1 with their sidecars on free
// ports; webApp is web's application port.
func registerPair(t *testing.T, a *consultest.Agent, webApp int) pair {
	t.Helper()
	p := consultest.FreePorts(t, 4)
	register(t, a, service{name: "web", id: "web-1", appPort: webApp, publicPort: p[0]})
	register(t, a, service{name: "client", id: "client-1", appPort: p[3], publicPort: p[1],
		upstreams: []api.Upstream{{DestinationName: "web", LocalBindPort: p[2]}}})
	return pair{webPublic: p[0], upstream: addr(p[2])}
}

// runningSidecar is an in-process Outrider sidecar.
type runningSidecar struct {
	*sidecar.Sidecar
	admin  string
	cancel context.CancelFunc
	done   chan error
}

// testLoggerLevel is testLogger with its level variable (for /logging).
func testLoggerLevel(t *testing.T, name string) (*slog.Logger, *slog.LevelVar) {
	level := new(slog.LevelVar)
	if os.Getenv("OUTRIDER_TEST_DEBUG") != "" {
		level.Set(slog.LevelDebug)
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: level})).With("sidecar", name), level
}

// tWriter sends log lines to t.Log so they show only for failing tests.
type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p[:len(p)-1]))
	return len(p), nil
}

func startSidecar(t *testing.T, a *consultest.Agent, opts sidecar.Options) *runningSidecar {
	t.Helper()
	if opts.AdminBind == "" {
		opts.AdminBind = "127.0.0.1:0"
	}
	if opts.Logger == nil {
		name := opts.SidecarFor + opts.ProxyID
		if opts.Config != nil {
			name = opts.Config.Service
		}
		opts.Logger, opts.LogLevel = testLoggerLevel(t, name)
	}
	var client *api.Client
	if a != nil { // nil: a static sidecar without Consul
		opts.ConsulAddress, client = a.HTTPAddr, a.Client
	}
	opts.MinBackoff, opts.MaxBackoff = 50*time.Millisecond, 500*time.Millisecond
	opts.DrainTimeout = 2 * time.Second
	opts.EventLoop = os.Getenv("OUTRIDER_TEST_GOROUTINES") == ""
	sc, err := sidecar.New(client, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningSidecar{Sidecar: sc, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- sc.Run(ctx) }()
	actx, acancel := context.WithTimeout(ctx, 5*time.Second)
	defer acancel()
	r.admin, err = sc.AdminAddr(actx)
	if err != nil {
		t.Fatalf("admin address: %v", err)
	}
	t.Cleanup(r.stop)
	return r
}

// stop stops the sidecar and waits for Run to return (idempotent).
func (r *runningSidecar) stop() {
	r.cancel()
	select {
	case err, ok := <-r.done:
		if !ok {
			return // stopped before
		}
		if err != nil && !errors.Is(err, context.Canceled) {
			panic(fmt.Sprintf("sidecar Run returned %v", err))
		}
		close(r.done)
	case <-time.After(10 * time.Second):
		panic("sidecar did not stop within 10s")
	}
}

func (r *runningSidecar) waitReady(t *testing.T) {
	t.Helper()
	eventually(t, 20*time.Second, func() error {
		resp, err := http.Get("http://" + r.admin + "/ready")
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/ready: %d %s", resp.StatusCode, body)
		}
		return nil
	})
}

// waitRoutable waits until Consul lists n passing Connect instances of svc.
func waitRoutable(t *testing.T, a *consultest.Agent, svc string, n int) {
	t.Helper()
	eventually(t, 20*time.Second, func() error {
		entries, _, err := a.Client.Health().Connect(svc, "", true, nil)
		if err != nil {
			return err
		}
		if len(entries) != n {
			return fmt.Errorf("%s: %d passing instances, want %d", svc, len(entries), n)
		}
		return nil
	})
}

// eventually retries f every 100ms until it returns nil or timeout passes.
// The timeout is a bound on waiting for Consul, not a performance assertion.
func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after %s: %v", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// echo writes msg on an open connection through the mesh and reads the
// echo back, without closing anything.
func echo(c net.Conn, msg string) error {
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != msg {
		return fmt.Errorf("echo %q, want %q", buf, msg)
	}
	return nil
}

// roundTrip dials addr, sends msg, half-closes, and returns all it reads
// back until EOF.
func roundTrip(addr, msg string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		return "", err
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	return string(b), err
}

func addr(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

// allowOnly compiles local rules that allow the SPIFFE ID td/path alone.
func allowOnly(t *testing.T, td spiffeid.TrustDomain, path string) *policy.Rules {
	t.Helper()
	rules, err := policy.CompileRules([]policy.Rule{{Allow: true, ID: spiffeid.RequireFromPath(td, path)}}, policy.RulesOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return rules
}

// Package consultest starts a real Consul dev agent (the pinned v1.15.4
// binary that `make tools` builds into .tools/bin) on free loopback ports
// for one test, and stops it when the test ends.
package consultest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/outrider-mesh/outrider/internal/testutil"
)

// Agent is a running dev agent.
type Agent struct {
	// HTTPAddr is the agent's HTTP API address (host:port).
	HTTPAddr string
	// Client talks to the agent.
	Client *api.Client
	// Node is the agent's node name, Datacenter its datacenter ("dc1",
	// or "dc2" for StartFederated's secondary).
	Node       string
	Datacenter string

	wanAddr string // serf WAN address, for a secondary to join
	cmd     *exec.Cmd
	log     *testutil.Buffer
	done    chan struct{}
}

// Binary returns the path of a tool binary built by `make tools`: the
// OUTRIDER_TOOLS_BIN directory if set, else .tools/bin at the module root.
func Binary(t testing.TB, name string) string {
	t.Helper()
	dir := os.Getenv("OUTRIDER_TOOLS_BIN")
	if dir == "" {
		root, err := moduleRoot()
		if err != nil {
			t.Fatalf("consultest: %v", err)
		}
		dir = filepath.Join(root, ".tools", "bin")
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("consultest: %s not found at %s: run `make tools` (or set OUTRIDER_TOOLS_BIN)", name, p)
	}
	return p
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			if _, err := os.Stat(filepath.Join(dir, "tools")); err == nil {
				return dir, nil
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("module root (go.mod with tools/) not found above the working directory")
		}
		dir = parent
	}
}

// FreePorts returns n distinct free TCP ports on 127.0.0.1.
//
// They are picked below the kernel's ephemeral range. A port the kernel
// handed out for ":0" was free, but it is released before the test binds
// it, and the kernel hands out the same range again: to the next listener
// on ":0" (a sidecar's admin port) and as the local port of outgoing
// connections. Both made a test's bind fail now and then. Ports below the
// range are never handed out by the kernel; a shared counter with a random
// start keeps concurrent tests apart, and each port is checked by binding.
// Test binaries of several packages run at once (go test ./...), each with
// its own counter: a port is also claimed by creating a file for it in a
// directory they share (claims expire after 30 minutes), so two processes
// never hand out the same port (seen: "bind: address already in use").
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	lo, hi := portRange()
	if hi-lo < 1000 {
		return ephemeralPorts(t, n)
	}
	portsOnce.Do(func() { nextPort.Store(rand.Int64N(int64(hi - lo))) })
	var lns []net.Listener
	var ports []int
	for tries := 0; len(ports) < n; tries++ {
		if tries > 10*(hi-lo) {
			t.Fatalf("consultest: no free port in %d-%d", lo, hi)
		}
		p := lo + int(nextPort.Add(1)%int64(hi-lo))
		if !claimPort(p) {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		lns = append(lns, ln)
		ports = append(ports, p)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}

var (
	portsOnce sync.Once
	nextPort  atomic.Int64
)

// claimTTL is how long a port claim keeps other test processes off it.
const claimTTL = 30 * time.Minute

// claimPort claims p for this process among concurrent test processes:
// it creates <tmp>/outrider-test-ports/<p> exclusively, taking over a
// claim older than claimTTL. It reports false when another process holds
// p. Without the directory, every port counts as claimed by us.
func claimPort(p int) bool {
	dir := filepath.Join(os.TempDir(), "outrider-test-ports")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return true
	}
	name := filepath.Join(dir, strconv.Itoa(p))
	for range 2 {
		f, err := os.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o666)
		if err == nil {
			f.Close()
			return true
		}
		st, serr := os.Stat(name)
		if serr != nil || time.Since(st.ModTime()) < claimTTL {
			return false
		}
		os.Remove(name) // stale: a finished run's claim
	}
	return false
}

// portRange is where FreePorts picks: from 10000 up to the kernel's
// ephemeral range (Linux: /proc/sys/net/ipv4/ip_local_port_range), at most
// 32768.
func portRange() (lo, hi int) {
	lo, hi = 10000, 32768
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return lo, hi
	}
	f := strings.Fields(string(b))
	if len(f) == 2 {
		if eph, err := strconv.Atoi(f[0]); err == nil && eph < hi {
			hi = eph
		}
	}
	return lo, hi
}

// ephemeralPorts is the fallback where the ephemeral range leaves no room
// below it: ports the kernel hands out for ":0".
func ephemeralPorts(t testing.TB, n int) []int {
	t.Helper()
	var lns []net.Listener
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("consultest: free port: %v", err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}

// Start runs `consul agent -dev` on free loopback ports and waits until it
// has a leader and its Connect CA serves roots. extraHCL is appended to the
// agent's configuration. The agent is stopped by t.Cleanup; its log is
// printed if the test failed.
func Start(t testing.TB, extraHCL ...string) *Agent {
	t.Helper()
	return startRetrying(t, spec{datacenter: "dc1", hcl: extraHCL})
}

// StartFederated runs two dev server agents, each the only server of its
// datacenter: dc1, the primary, and dc2, a secondary WAN-joined to it
// (primary_datacenter = "dc1" in both). It returns once each agent lists
// both datacenters in /v1/catalog/datacenters and dc2's Connect CA is
// initialised: dc2 serves dc1's roots (same trust domain, same active
// root) with the intermediate that signs dc2's leaves. Config entries
// written to dc1 (resolvers, service-defaults, intentions) are replicated
// to dc2 within a second without ACLs; tests that depend on one having
// arrived wait for it.
func StartFederated(t testing.TB) (dc1, dc2 *Agent) {
	t.Helper()
	const primary = `primary_datacenter = "dc1"`
	dc1 = startRetrying(t, spec{datacenter: "dc1", hcl: []string{primary}})
	dc2 = startRetrying(t, spec{datacenter: "dc2", hcl: []string{primary}, joinWAN: dc1.wanAddr})
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := federated(dc1, dc2)
		if err == nil {
			return dc1, dc2
		}
		if time.Now().After(deadline) {
			t.Fatalf("consultest: dc1 and dc2 not federated after 30s: %v\ndc2 log:\n%s", err, dc2.log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// federated reports why dc1 and dc2 are not yet usable together, or nil.
func federated(dc1, dc2 *Agent) error {
	for _, a := range []*Agent{dc1, dc2} {
		dcs, err := a.Client.Catalog().Datacenters()
		if err != nil {
			return err
		}
		if !slices.Contains(dcs, "dc1") || !slices.Contains(dcs, "dc2") {
			return fmt.Errorf("%s lists datacenters %v", a.Datacenter, dcs)
		}
	}
	var r1, r2 caRoots
	if _, err := dc1.Client.Raw().Query("/v1/agent/connect/ca/roots", &r1, nil); err != nil {
		return err
	}
	if _, err := dc2.Client.Raw().Query("/v1/agent/connect/ca/roots", &r2, nil); err != nil {
		return err
	}
	if r2.TrustDomain != r1.TrustDomain || r2.ActiveRootID != r1.ActiveRootID {
		return fmt.Errorf("dc2's CA (trust domain %q, active root %q) is not dc1's (%q, %q) yet",
			r2.TrustDomain, r2.ActiveRootID, r1.TrustDomain, r1.ActiveRootID)
	}
	for _, r := range r2.Roots {
		if r.Active && len(r.IntermediateCerts) == 0 {
			return errors.New("dc2's CA has no intermediate from dc1 yet")
		}
	}
	return nil
}

// caRoots is /v1/agent/connect/ca/roots with the roots' intermediates,
// which consul/api's CARoot leaves out.
type caRoots struct {
	TrustDomain  string
	ActiveRootID string
	Roots        []struct {
		Active            bool
		IntermediateCerts []string
	}
}

// spec is what differs between the agents a test starts.
type spec struct {
	datacenter string
	hcl        []string
	// joinWAN is a serf WAN address to join (-retry-join-wan).
	joinWAN string
}

// startRetrying starts an agent for sp. Free ports are picked, released
// and then bound by Consul: another test may take one in between. A start
// that fails on a port already in use is retried on fresh ports.
func startRetrying(t testing.TB, sp spec) *Agent {
	t.Helper()
	for attempt := 1; ; attempt++ {
		a, ready := start(t, sp)
		if ready {
			return a
		}
		if !strings.Contains(a.log.String(), "address already in use") || attempt == 3 {
			t.Fatalf("consultest: consul (%s) exited during start-up:\n%s", sp.datacenter, a.log.String())
		}
		t.Logf("consultest: a port was taken before consul bound it; retrying on new ports")
	}
}

// start starts one agent and reports whether it became ready; false means
// it exited during start-up (its log says why).
func start(t testing.TB, sp spec) (*Agent, bool) {
	t.Helper()
	bin := Binary(t, "consul")
	p := FreePorts(t, 6)
	node := fmt.Sprintf("node-%d", p[0])
	hcl := `ports { grpc_tls = -1 }` + "\n"
	for _, h := range sp.hcl {
		hcl += h + "\n"
	}
	a := &Agent{
		HTTPAddr:   net.JoinHostPort("127.0.0.1", strconv.Itoa(p[0])),
		Node:       node,
		Datacenter: sp.datacenter,
		wanAddr:    net.JoinHostPort("127.0.0.1", strconv.Itoa(p[4])),
		log:        &testutil.Buffer{},
		done:       make(chan struct{}),
	}
	args := []string{"agent", "-dev", "-datacenter", sp.datacenter,
		"-bind", "127.0.0.1", "-client", "127.0.0.1", "-node", node,
		"-http-port", strconv.Itoa(p[0]), "-dns-port", strconv.Itoa(p[1]), "-grpc-port", strconv.Itoa(p[2]),
		"-serf-lan-port", strconv.Itoa(p[3]), "-serf-wan-port", strconv.Itoa(p[4]), "-server-port", strconv.Itoa(p[5]),
		"-hcl", hcl}
	if sp.joinWAN != "" {
		args = append(args, "-retry-join-wan", sp.joinWAN, "-retry-interval-wan", "1s")
	}
	a.cmd = exec.Command(bin, args...)
	a.cmd.Stdout, a.cmd.Stderr = a.log, a.log
	if err := a.cmd.Start(); err != nil {
		t.Fatalf("consultest: start consul: %v", err)
	}
	go func() { a.cmd.Wait(); close(a.done) }()
	t.Cleanup(func() {
		a.Stop()
		if t.Failed() {
			t.Logf("consul agent log (%s):\n%s", a.Datacenter, a.log.String())
		}
	})
	cfg := api.DefaultConfig()
	cfg.Address = a.HTTPAddr
	cfg.Token = ""
	client, err := api.NewClient(cfg)
	if err != nil {
		t.Fatalf("consultest: client: %v", err)
	}
	a.Client = client
	deadline := time.Now().Add(30 * time.Second)
	for {
		leader, err := client.Status().Leader()
		if err == nil && leader != "" {
			if roots, _, err := client.Agent().ConnectCARoots(nil); err == nil && len(roots.Roots) > 0 {
				break
			}
		}
		select {
		case <-a.done:
			return a, false
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("consultest: consul not ready after 30s:\n%s", a.log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	return a, true
}

// Stop stops the agent (SIGTERM, then SIGKILL after 5s) and waits for it.
// It is idempotent; tests use it to simulate Consul going away.
func (a *Agent) Stop() {
	select {
	case <-a.done:
		return
	default:
	}
	a.cmd.Process.Signal(os.Interrupt)
	select {
	case <-a.done:
	case <-time.After(5 * time.Second):
		a.cmd.Process.Kill()
		<-a.done
	}
}

// WaitConfigEntry waits up to 10s until the agent serves the config entry
// kind/name: on a secondary, until replication from the primary brought it.
func (a *Agent) WaitConfigEntry(t testing.TB, kind, name string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, _, err := a.Client.ConfigEntries().Get(kind, name, nil)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("consultest: %s has no config entry %s/%s after 10s: %v", a.Datacenter, kind, name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Log returns what the agent has printed so far.
func (a *Agent) Log() string { return a.log.String() }

// Command runs a consul CLI command against the agent and returns its
// combined output.
func (a *Agent) Command(ctx context.Context, t testing.TB, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.CommandContext(ctx, Binary(t, "consul"), args...)
	cmd.Env = append(os.Environ(), "CONSUL_HTTP_ADDR="+a.HTTPAddr, "CONSUL_HTTP_TOKEN=")
	return cmd
}

// Hang freezes the agent's process (SIGSTOP) until Resume or the test's
// end: its ports stay bound and the kernel still accepts connections, but
// no request is ever answered, as with a hung or partitioned agent.
func (a *Agent) Hang(t testing.TB) {
	t.Helper()
	if err := a.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatalf("consultest: SIGSTOP consul: %v", err)
	}
	t.Cleanup(a.Resume)
}

// Resume lets a Hang agent run again (idempotent).
func (a *Agent) Resume() { a.cmd.Process.Signal(syscall.SIGCONT) }

// BuiltinProxy runs Consul's own sidecar, `consul connect proxy
// -sidecar-for id`, against the agent until the test ends, and logs its
// output if the test failed.
func (a *Agent) BuiltinProxy(t testing.TB, id string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := a.Command(ctx, t, "connect", "proxy", "-sidecar-for", id, "-log-level", "debug")
	out := &testutil.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("consultest: consul connect proxy: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		if t.Failed() {
			t.Logf("consul connect proxy -sidecar-for %s:\n%s", id, out.String())
		}
	})
}

package sidecar_test

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	grpchealth "google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/outrider-mesh/outrider/internal/testutil/consultest"
	"github.com/outrider-mesh/outrider/sidecar"
	"github.com/outrider-mesh/outrider/sidecar/health"
)

// setUpstreamHealthCheck re-registers the client's sidecar with
// Config.health_check hc (nil: none) on its upstream web, as an operator
// changing the registration would, and waits for the sidecar to apply it.
func setUpstreamHealthCheck(t *testing.T, m *l7Mesh, hc map[string]any) {
	t.Helper()
	svcs, err := m.agent.Client.Agent().Services()
	if err != nil {
		t.Fatal(err)
	}
	p := svcs["client-1-sidecar-proxy"]
	if p == nil {
		t.Fatal("no client-1-sidecar-proxy registration")
	}
	proxy := *p.Proxy
	proxy.Upstreams = nil
	for _, u := range p.Proxy.Upstreams {
		if u.DestinationName == "web" {
			u.Config = maps.Clone(u.Config)
			if u.Config == nil {
				u.Config = map[string]any{}
			}
			if hc == nil {
				delete(u.Config, "health_check")
			} else {
				u.Config["health_check"] = hc
			}
		}
		proxy.Upstreams = append(proxy.Upstreams, u)
	}
	err = m.agent.Client.Agent().ServiceRegister(&api.AgentServiceRegistration{Kind: p.Kind, ID: p.ID, Name: p.Service,
		Port: p.Port, Address: p.Address, Proxy: &proxy})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, func() error {
		for _, u := range m.client.Dump().Upstreams {
			if u.DestinationName == "web" && u.HealthCheck.Enabled() == (hc != nil) {
				return nil
			}
		}
		return fmt.Errorf("the client sidecar has not applied the health_check change yet")
	})
}

// endpointHealth reads /clusters: the web endpoint of each instance's
// public port, by address.
func endpointHealth(t *testing.T, admin string) map[string]sidecar.ClusterEndpoint {
	t.Helper()
	out := map[string]sidecar.ClusterEndpoint{}
	for _, cd := range getClusters(t, admin) {
		if cd.Upstream == "web" {
			for _, e := range cd.Endpoints {
				out[e.Address] = e
			}
		}
	}
	return out
}

// waitHealth waits until /clusters shows each address in want in that
// active state, balanced exactly when healthy.
func waitHealth(t *testing.T, admin string, want map[string]health.State) {
	t.Helper()
	eventually(t, 15*time.Second, func() error {
		eps := endpointHealth(t, admin)
		for a, st := range want {
			e, ok := eps[a]
			switch {
			case !ok:
				return fmt.Errorf("%s not in /clusters", a)
			case e.Health == nil || e.Health.State != st || e.Balanced != (st == health.Healthy):
				return fmt.Errorf("%s: health %+v balanced %v, want %s", a, e.Health, e.Balanced, st)
			}
		}
		return nil
	})
}

// TestMeshActiveHealthCheck: an upstream's health_check (set by changing
// the registration at run time) probes each instance end to end, over
// mTLS through its sidecar to the application's /healthz. An instance
// whose /healthz answers 503 gets no request while Consul still passes it,
// gets traffic again once /healthz recovers, and when every instance
// fails the client gets 503 (fail closed). /clusters and the metrics show
// it; removing health_check stops the checks.
func TestMeshActiveHealthCheck(t *testing.T) {
	t.Parallel()
	m := startL7Mesh(t, 2)
	bad, good := m.apps[0], m.apps[1]
	eps := m.client.Dump()
	var badAddr, goodAddr string
	for _, u := range eps.Upstreams {
		if u.DestinationName != "web" {
			continue
		}
		for _, e := range u.Snapshot.Endpoints {
			if e.ServiceID == "web-1-sidecar-proxy" {
				badAddr = e.Address
			} else {
				goodAddr = e.Address
			}
		}
	}
	if badAddr == "" || goodAddr == "" {
		t.Fatalf("web endpoints not found in %+v", eps.Upstreams)
	}
	bad.unhealthy.Store(true)
	setUpstreamHealthCheck(t, m, map[string]any{"type": "http", "path": "/healthz", "interval": "100ms",
		"healthy_threshold": 2, "unhealthy_threshold": 2})
	waitHealth(t, m.client.admin, map[string]health.State{badAddr: health.Unhealthy, goodAddr: health.Healthy})
	if e := endpointHealth(t, m.client.admin)[badAddr]; e.Health.LastFailure != "HTTP status 503" {
		t.Errorf("last failure %q, want the 503", e.Health.LastFailure)
	}
	if bad.probes.Load() == 0 || good.probes.Load() == 0 {
		t.Fatal("the probes did not reach the applications")
	}
	// Consul still passes both instances: only the active check keeps
	// web-1 out.
	waitRoutable(t, m.agent, "web", 2)

	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	get := func() (int, string) {
		resp, err := c.Get("http://" + m.upstream + "/echo")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(body)
	}
	before, goodBefore := bad.count(), good.count()
	for i := range 20 {
		if code, body := get(); code != 200 || !strings.Contains(body, `"instance":"web-2"`) {
			t.Fatalf("request %d: %d %s, want 200 from web-2", i, code, body)
		}
	}
	if bad.count() != before || good.count() != goodBefore+20 {
		t.Fatalf("web-1 got %d and web-2 %d of 20 requests", bad.count()-before, good.count()-goodBefore)
	}

	// Recovery: two passing probes bring web-1 back into the balancer.
	bad.unhealthy.Store(false)
	waitHealth(t, m.client.admin, map[string]health.State{badAddr: health.Healthy, goodAddr: health.Healthy})
	eventually(t, 10*time.Second, func() error {
		if _, body := get(); !strings.Contains(body, `"instance":"web-1"`) {
			return fmt.Errorf("no request reached web-1 yet")
		}
		return nil
	})

	// Every instance failing: no healthy upstream, 503, no request sent.
	bad.unhealthy.Store(true)
	good.unhealthy.Store(true)
	waitHealth(t, m.client.admin, map[string]health.State{badAddr: health.Unhealthy, goodAddr: health.Unhealthy})
	before, goodBefore = bad.count(), good.count()
	if code, body := get(); code != http.StatusServiceUnavailable {
		t.Fatalf("with every instance failing its check: %d %s, want 503", code, body)
	}
	if bad.count() != before || good.count() != goodBefore {
		t.Fatal("a request reached an instance that fails its check")
	}
	good.unhealthy.Store(false)
	waitHealth(t, m.client.admin, map[string]health.State{goodAddr: health.Healthy})

	resp, err := http.Get("http://" + m.client.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`outrider_upstream_health_checks_total{result="failure",upstream="web"}`,
		`outrider_upstream_health_checks_total{result="success",upstream="web"}`,
		`outrider_upstream_healthy_endpoints{upstream="web"} 1`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	// Removing health_check stops the checks: both instances are used.
	setUpstreamHealthCheck(t, m, nil)
	eventually(t, 10*time.Second, func() error {
		for a, e := range endpointHealth(t, m.client.admin) {
			if e.Health != nil || !e.Balanced {
				return fmt.Errorf("%s: health %+v balanced %v", a, e.Health, e.Balanced)
			}
		}
		return nil
	})
	n := bad.probes.Load()
	eventually(t, 10*time.Second, func() error {
		if _, body := get(); !strings.Contains(body, `"instance":"web-1"`) {
			return fmt.Errorf("no request reached web-1 yet")
		}
		return nil
	})
	if got := bad.probes.Load(); got > n+1 {
		t.Errorf("web-1 was probed %d times after the checks were removed", got-n)
	}
}

// TestMeshGRPCHealthCheck: a grpc upstream with a grpc.health.v1 check
// from its first registration: an instance whose health server says
// NOT_SERVING for the service gets no call, and gets calls again once it
// says SERVING.
func TestMeshGRPCHealthCheck(t *testing.T) {
	t.Parallel()
	a := consultest.Start(t)
	setProtocol(t, a, "inventory", "grpc")
	ports := consultest.FreePorts(t, 5)
	var hs []*grpchealth.Server
	for i := range 2 {
		name := fmt.Sprintf("inventory-%d", i+1)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := grpc.NewServer()
		testpb.RegisterTestServiceServer(srv, &grpcApp{name: name, cancelled: make(chan struct{}, 1)})
		h := grpchealth.NewServer()
		h.SetServingStatus("inventory.v1", healthpb.HealthCheckResponse_SERVING)
		healthpb.RegisterHealthServer(srv, h)
		hs = append(hs, h)
		go srv.Serve(ln)
		t.Cleanup(srv.Stop)
		register(t, a, service{name: "inventory", id: name, appPort: ln.Addr().(*net.TCPAddr).Port, publicPort: ports[i]})
	}
	register(t, a, service{name: "client", id: "client-1", appPort: ports[2], publicPort: ports[3],
		upstreams: []api.Upstream{{DestinationName: "inventory", LocalBindPort: ports[4], Config: map[string]any{
			"health_check": map[string]any{"type": "grpc", "service": "inventory.v1", "interval": "100ms"}}}}})
	var all []*runningSidecar
	for i := range 2 {
		all = append(all, startSidecar(t, a, sidecar.Options{SidecarFor: fmt.Sprintf("inventory-%d", i+1)}))
	}
	client := startSidecar(t, a, sidecar.Options{SidecarFor: "client-1"})
	for _, sc := range append(all, client) {
		sc.waitReady(t)
	}
	waitRoutable(t, a, "inventory", 2)
	addrOf := map[string]string{} // instance -> endpoint address
	eventually(t, 15*time.Second, func() error {
		for _, u := range client.Dump().Upstreams {
			if u.DestinationName == "inventory" && u.Snapshot != nil && len(u.Snapshot.Endpoints) == 2 {
				for _, e := range u.Snapshot.Endpoints {
					addrOf[strings.TrimSuffix(e.ServiceID, "-sidecar-proxy")] = e.Address
				}
				return nil
			}
		}
		return fmt.Errorf("client sidecar does not see 2 endpoints yet")
	})
	state := func(want map[string]health.State) {
		t.Helper()
		eventually(t, 15*time.Second, func() error {
			for _, cd := range getClusters(t, client.admin) {
				for _, e := range cd.Endpoints {
					for inst, st := range want {
						if e.Address == addrOf[inst] && (e.Health == nil || e.Health.State != st) {
							return fmt.Errorf("%s: %+v, want %s", inst, e.Health, st)
						}
					}
				}
			}
			return nil
		})
	}
	state(map[string]health.State{"inventory-1": health.Healthy, "inventory-2": health.Healthy})

	cc, err := grpc.NewClient(addr(ports[4]), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	inv := testpb.NewTestServiceClient(cc)
	callers := func(n int) map[string]int {
		seen := map[string]int{}
		for range n {
			r, err := inv.UnaryCall(context.Background(), &testpb.SimpleRequest{})
			if err != nil {
				t.Fatal(err)
			}
			seen[r.GetUsername()]++
		}
		return seen
	}
	hs[0].SetServingStatus("inventory.v1", healthpb.HealthCheckResponse_NOT_SERVING)
	state(map[string]health.State{"inventory-1": health.Unhealthy, "inventory-2": health.Healthy})
	if seen := callers(20); seen["inventory-1"] != 0 || seen["inventory-2"] != 20 {
		t.Fatalf("calls answered %v, want all by inventory-2", seen)
	}
	hs[0].SetServingStatus("inventory.v1", healthpb.HealthCheckResponse_SERVING)
	state(map[string]health.State{"inventory-1": health.Healthy})
	eventually(t, 10*time.Second, func() error {
		if seen := callers(10); seen["inventory-1"] == 0 {
			return fmt.Errorf("no call reached inventory-1 yet")
		}
		return nil
	})
}

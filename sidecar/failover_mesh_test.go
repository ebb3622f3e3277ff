package sidecar_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/outrider-mesh/outrider/internal/testutil/consultest"
	"github.com/outrider-mesh/outrider/sidecar"
)

// startNameApp is a TCP service that writes its instance name to every
// connection and closes it; it returns its port.
func startNameApp(t *testing.T, name string) int {
	t.Helper()
	return startTCPApp(t, func(c net.Conn) { io.WriteString(c, name) }).port()
}

// TestMeshCrossDCFailover: two federated Consul datacenters on a flat
// network. web (http) and db (tcp) run one instance in dc1 and one in dc2,
// each with an Outrider sidecar registered on its own datacenter's agent;
// client, in dc1, has both as upstreams, and web@dc2 as a third. A
// service-resolver written to dc1 (and replicated to dc2) fails each over
// to dc2. Requests go to dc1 while its instance is healthy, to dc2 once it
// is not (maintenance mode for web, its sidecar stopped for db), and back
// when it recovers. The client verifies dc2's sidecar as the dc2 identity
// (.../dc/dc2/svc/web, a leaf signed by dc2's intermediate under dc1's
// root), and dc2's sidecar enforces the intentions written to dc1.
func TestMeshCrossDCFailover(t *testing.T) {
	t.Parallel()
	dc1, dc2 := consultest.StartFederated(t)
	failover := map[string]api.ServiceResolverFailover{"*": {Datacenters: []string{"dc2"}}}
	entries := []api.ConfigEntry{
		&api.ServiceConfigEntry{Kind: api.ServiceDefaults, Name: "web", Protocol: "http"},
		&api.ServiceResolverConfigEntry{Kind: api.ServiceResolver, Name: "web", Failover: failover},
		&api.ServiceResolverConfigEntry{Kind: api.ServiceResolver, Name: "db", Failover: failover},
		&api.ServiceIntentionsConfigEntry{Kind: api.ServiceIntentions, Name: "web", Sources: []*api.SourceIntention{{
			Name: "client", Permissions: []*api.IntentionPermission{
				{Action: api.IntentionActionDeny, HTTP: &api.IntentionHTTPPermission{PathPrefix: "/private"}},
				{Action: api.IntentionActionAllow, HTTP: &api.IntentionHTTPPermission{PathPrefix: "/"}},
			}}}},
	}
	for _, e := range entries {
		if _, _, err := dc1.Client.ConfigEntries().Set(e, nil); err != nil {
			t.Fatalf("%s/%s: %v", e.GetKind(), e.GetName(), err)
		}
	}
	// Wait for replication, so that dc2's agent fills web-2's sidecar
	// registration with protocol http from the start and web-2's sidecar
	// has the intentions from its first answer.
	for _, e := range entries {
		dc2.WaitConfigEntry(t, e.GetKind(), e.GetName())
	}

	web1, web2 := startHTTPApp(t, "web-1"), startHTTPApp(t, "web-2")
	p := consultest.FreePorts(t, 9)
	register(t, dc1, service{name: "web", id: "web-1", appPort: web1.port(), publicPort: p[0]})
	register(t, dc2, service{name: "web", id: "web-2", appPort: web2.port(), publicPort: p[1]})
	register(t, dc1, service{name: "db", id: "db-1", appPort: startNameApp(t, "db-1"), publicPort: p[2]})
	register(t, dc2, service{name: "db", id: "db-2", appPort: startNameApp(t, "db-2"), publicPort: p[3]})
	register(t, dc1, service{name: "client", id: "client-1", appPort: p[4], publicPort: p[5], upstreams: []api.Upstream{
		{DestinationName: "web", LocalBindPort: p[6]},
		{DestinationName: "db", LocalBindPort: p[7]},
		{DestinationName: "web", Datacenter: "dc2", LocalBindPort: p[8]},
	}})
	webUp, dbUp, webDC2Up := "http://"+addr(p[6]), addr(p[7]), "http://"+addr(p[8])

	web1SC := startSidecar(t, dc1, sidecar.Options{SidecarFor: "web-1"})
	web2SC := startSidecar(t, dc2, sidecar.Options{SidecarFor: "web-2"})
	db1SC := startSidecar(t, dc1, sidecar.Options{SidecarFor: "db-1"})
	db2SC := startSidecar(t, dc2, sidecar.Options{SidecarFor: "db-2"})
	client := startSidecar(t, dc1, sidecar.Options{SidecarFor: "client-1"})
	for _, sc := range []*runningSidecar{web1SC, web2SC, db1SC, db2SC, client} {
		sc.waitReady(t)
	}
	for _, a := range []*consultest.Agent{dc1, dc2} {
		waitRoutable(t, a, "web", 1)
		waitRoutable(t, a, "db", 1)
	}
	// The client's failover clusters for dc2 have their endpoint.
	eventually(t, 15*time.Second, func() error {
		for _, name := range []string{"web.default.default.dc2", "db.default.default.dc2"} {
			if n := clusterEndpoints(client, name); n != 1 {
				return fmt.Errorf("client's cluster %s has %d endpoints, want 1", name, n)
			}
		}
		return nil
	})

	c := oneConnClient()
	get := func(base, path string) (string, int) {
		t.Helper()
		resp, err := c.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			io.Copy(io.Discard, resp.Body)
			return resp.Header.Get("X-Outrider-Error"), resp.StatusCode
		}
		var s seen
		if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
			t.Fatal(err)
		}
		return s.Instance, 200
	}
	// expect waits until requests reach want, then checks that the next
	// ten do too.
	expect := func(what, want string, f func() (string, error)) {
		t.Helper()
		eventually(t, 15*time.Second, func() error {
			got, err := f()
			if err != nil {
				return err
			}
			if got != want {
				return fmt.Errorf("%s reached %q, want %q", what, got, want)
			}
			return nil
		})
		for range 10 {
			if got, err := f(); err != nil || got != want {
				t.Fatalf("%s reached %q (%v) after reaching %q", what, got, err, want)
			}
		}
	}
	getWeb := func(base string) func() (string, error) {
		return func() (string, error) {
			inst, status := get(base, "/echo")
			if status != 200 {
				return "", fmt.Errorf("GET /echo: %d %s", status, inst)
			}
			return inst, nil
		}
	}
	getDB := func() (string, error) { return roundTrip(dbUp, "") }

	t.Run("http", func(t *testing.T) {
		expect("web", "web-1", getWeb(webUp))
		if err := dc1.Client.Agent().EnableServiceMaintenance("web-1-sidecar-proxy", "failover test"); err != nil {
			t.Fatal(err)
		}
		expect("web with web-1 in maintenance", "web-2", getWeb(webUp))

		// Denied by web-2's sidecar, from the intentions written to dc1
		// (it reads them from its own agent, dc2's): web-2 does not see the
		// request, web-1's sidecar is not asked.
		denied := func(sc *runningSidecar) int64 { return sc.Dump().Stats["connections_denied"] }
		before, denied1, denied2 := web2.count(), denied(web1SC), denied(web2SC)
		if code, status := get(webUp, "/private"); status != 403 || code != "denied" {
			t.Errorf("GET /private through dc2: %d %q, want 403 denied", status, code)
		}
		if web2.count() != before || denied(web2SC) != denied2+1 || denied(web1SC) != denied1 {
			t.Errorf("GET /private: web-2 received %d requests; web-2's sidecar denied %d, web-1's %d; want 0, 1, 0",
				web2.count()-before, denied(web2SC)-denied2, denied(web1SC)-denied1)
		}
		if inst, status := get(webUp, "/echo"); inst != "web-2" || status != 200 {
			t.Errorf("GET /echo after the denial: %d from %q, want 200 from web-2", status, inst)
		}

		if err := dc1.Client.Agent().DisableServiceMaintenance("web-1-sidecar-proxy"); err != nil {
			t.Fatal(err)
		}
		expect("web with web-1 back", "web-1", getWeb(webUp))
	})

	t.Run("dc2 identity", func(t *testing.T) {
		roots, _, err := dc1.Client.Agent().ConnectCARoots(nil)
		if err != nil {
			t.Fatal(err)
		}
		want := "spiffe://" + roots.TrustDomain + "/ns/default/dc/dc2/svc/web"
		for _, cd := range getClusters(t, client.admin) {
			if cd.Upstream != "web" || cd.Cluster != "web.default.default.dc2" {
				continue
			}
			if len(cd.Endpoints) != 1 || cd.Endpoints[0].Identity != want || cd.Endpoints[0].Address != addr(p[1]) {
				t.Errorf("client's dc2 cluster of web: %+v, want %s at %s", cd.Endpoints, want, addr(p[1]))
			}
			return
		}
		t.Errorf("client has no cluster web.default.default.dc2")
	})

	t.Run("upstream in dc2", func(t *testing.T) {
		expect("web@dc2", "web-2", getWeb(webDC2Up))
	})

	t.Run("tcp", func(t *testing.T) {
		expect("db", "db-1", getDB)
		// Its "sidecar listening" check turns critical within a second;
		// before that, a connection refused by db-1 fails over at once.
		db1SC.stop()
		if got, err := getDB(); got != "db-2" || err != nil {
			t.Errorf("first connection after db-1's sidecar stopped: %q (%v), want db-2", got, err)
		}
		expect("db with db-1's sidecar stopped", "db-2", getDB)
		restarted := startSidecar(t, dc1, sidecar.Options{SidecarFor: "db-1"})
		restarted.waitReady(t)
		expect("db with db-1's sidecar back", "db-1", getDB)
	})
}

// clusterEndpoints returns how many endpoints the sidecar's cluster name
// has (-1 if it has no such cluster).
func clusterEndpoints(sc *runningSidecar, name string) int {
	for _, u := range sc.Dump().Upstreams {
		for _, c := range u.Clusters {
			if c.Name == name {
				return c.Endpoints
			}
		}
	}
	return -1
}

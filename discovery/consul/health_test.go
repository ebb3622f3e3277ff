package consul

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/consul/api"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// TargetEndpoints asks the target's datacenter, expects each instance's
// identity in the datacenter it runs in, and drops instances with a
// critical check, maintenance mode included (consul/api's
// AggregatedStatus calls that "maintenance"); warning counts as healthy.
func TestTargetEndpointsHealthAndDatacenter(t *testing.T) {
	check := func(id, status string) *api.HealthCheck { return &api.HealthCheck{CheckID: id, Status: status} }
	entry := func(id string, port int, checks ...*api.HealthCheck) *api.ServiceEntry {
		return &api.ServiceEntry{
			Node: &api.Node{Node: "n2", Datacenter: "dc2", Address: "10.0.0.2"},
			Service: &api.AgentService{ID: id, Service: id, Kind: api.ServiceKindConnectProxy, Port: port,
				Proxy: &api.AgentServiceConnectProxyConfig{DestinationServiceName: "web"}},
			Checks: append(api.HealthChecks{check("serfHealth", api.HealthPassing)}, checks...),
		}
	}
	entries := []*api.ServiceEntry{
		entry("passing", 1001, check("listening", api.HealthPassing)),
		entry("warning", 1002, check("listening", api.HealthWarning)),
		entry("critical", 1003, check("listening", api.HealthCritical)),
		entry("service-maintenance", 1004, check("listening", api.HealthPassing),
			check(api.ServiceMaintPrefix+"service-maintenance", api.HealthCritical)),
		entry("node-maintenance", 1005, check(api.NodeMaint, api.HealthCritical)),
	}
	var query string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		query = r.URL.RawQuery
		w.Header().Set("X-Consul-Index", "7")
		json.NewEncoder(w).Encode(entries)
	}))
	defer srv.Close()
	client, err := api.NewClient(&api.Config{Address: srv.Listener.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	td := spiffeid.RequireTrustDomainFromString("example.consul")
	snap, _, err := TargetEndpoints(client, Target{Service: "web", Datacenter: "dc2"}, ConsulIdentity(td))(&api.QueryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if query != "dc=dc2" {
		t.Errorf("query %q, want dc=dc2", query)
	}
	var got []string
	for _, e := range snap.Endpoints {
		got = append(got, e.ServiceID)
		if want := "spiffe://example.consul/ns/default/dc/dc2/svc/web"; e.Identity.String() != want {
			t.Errorf("%s: identity %s, want %s", e.ServiceID, e.Identity, want)
		}
	}
	if want := []string{"passing", "warning"}; !slices.Equal(got, want) {
		t.Errorf("endpoints %v, want %v", got, want)
	}
}

// An instance address that no dial can use fails the answer, naming the
// instance, as other malformed entries do (the last good snapshot stays):
// "[" became the endpoint "[:1", and "10.0.0.1:80" one that names two
// ports. IPs, zoned IPv6 and host names are kept.
func TestSnapshotAddresses(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	for _, tt := range []struct {
		addr string
		want string // endpoint address, "" for a malformed answer
	}{
		{"10.0.0.1", "10.0.0.1:1"},
		{"::1", "[::1]:1"},
		{"fe80::1%eth0", "[fe80::1%eth0]:1"},
		{"web-1.node.consul", "web-1.node.consul:1"},
		{"[", ""},
		{"10.0.0.1:80", ""},
		{"[::1]", ""},
		{"a b", ""},
		{"a/b", ""},
	} {
		entries := []*api.ServiceEntry{{Node: &api.Node{Node: "n"}, Service: &api.AgentService{ID: "w", Service: "web", Port: 1, Address: tt.addr}}}
		snap, err := snapshotOf("web", "dc1", ConsulIdentity(td), entries)
		switch {
		case tt.want == "" && (err == nil || !strings.Contains(err.Error(), `instance "w" has address`)):
			t.Errorf("%q: %v, want a malformed answer naming the instance", tt.addr, err)
		case tt.want != "" && (err != nil || len(snap.Endpoints) != 1 || snap.Endpoints[0].Address != tt.want):
			t.Errorf("%q: %+v, %v; want endpoint %s", tt.addr, snap, err, tt.want)
		}
	}
}

package consul

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
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

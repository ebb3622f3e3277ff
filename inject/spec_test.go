package inject

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

func TestParseConsulUpstreams(t *testing.T) {
	got, err := ParseConsulUpstreams(" counting:9001, payments:9003:dc2 ,")
	want := []api.Upstream{
		{DestinationName: "counting", LocalBindPort: 9001},
		{DestinationName: "payments", Datacenter: "dc2", LocalBindPort: 9003},
	}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, %v", got, err)
	}
	for _, bad := range []string{"prepared_query:q:1234", "api", "api.ns:1", "api:x", "a:1:dc:extra"} {
		if _, err := ParseConsulUpstreams(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestUpstreamsRoundTrip(t *testing.T) {
	for _, s := range []string{"api:9191", "inventory@dc2:9192", "127.0.0.2:db:5432"} {
		u, err := ParseUpstreams(s)
		if err != nil || len(u) != 1 || FormatUpstream(u[0]) != s {
			t.Errorf("%q: %+v, %v", s, u, err)
		}
	}
}

func TestSpecPrecedenceAndDefaults(t *testing.T) {
	o := Options{Image: "img"}
	s, err := o.Spec(Workload{
		Name:  "web",
		Ports: []Port{{Name: "http", Number: 8080}, {Number: 9000}},
		Annotations: map[string]string{
			ConsulInject: "true", ConsulService: "consul-name", AnnotationService: "outrider-name",
			ConsulUpstreams: "a:1", AnnotationUpstreams: "b:2",
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if s.Service != "outrider-name" || s.ServicePort != 8080 || len(s.Upstreams) != 1 || s.Upstreams[0].DestinationName != "b" ||
		s.PublicPort != DefaultPublicPort || s.AdminPort != DefaultAdminPort || s.Image != "img" {
		t.Errorf("spec %+v", s)
	}
	on, err := Enabled(map[string]string{AnnotationInject: "false", ConsulInject: "true"})
	if on || err != nil {
		t.Errorf("outrider.io/inject=false does not win: %v %v", on, err)
	}
}

func TestArgsParseAsRunFlags(t *testing.T) {
	s := Spec{Service: "web", ServicePort: 8080, PublicPort: 20000, AdminPort: 19001, LogLevel: "debug",
		Upstreams: []api.Upstream{{DestinationName: "api", LocalBindPort: 9191}}}
	got := strings.Join(s.Args(Instance{ID: "web-1", PublicAddress: "10.0.0.1"}, Options{DrainTimeout: 5e9, DrainDelay: 1e9}), " ")
	want := "run -register -sidecar-for web-1 -service-name web -service-port 8080 -public-port 20000 -public-address 10.0.0.1 -upstream api:9191 -admin-bind 127.0.0.1:19001 -log-level debug -drain-timeout 5s -drain-delay 1s"
	if got != want {
		t.Errorf("args\n got %s\nwant %s", got, want)
	}
}

// The longest shutdown the sidecar's flags allow: the drain delay (at
// least the deregistration bound), then the grace period, then the drain
// timeout; terminationGracePeriodSeconds is raised to it.
func TestShutdownTime(t *testing.T) {
	for _, tc := range []struct {
		o    Options
		want time.Duration
	}{
		{Options{}, 30 * time.Second},
		{Options{DrainDelay: 20 * time.Second}, 45 * time.Second},
		{Options{DrainDelay: time.Second, ShutdownGracePeriod: time.Second, DrainTimeout: time.Second}, 4 * time.Second},
	} {
		if got := tc.o.ShutdownTime(); got != tc.want {
			t.Errorf("%+v: ShutdownTime %s, want %s", tc.o, got, tc.want)
		}
	}
	if err := (Options{Image: "i", DrainDelay: -1}).Validate(); err == nil || !strings.Contains(err.Error(), "drain delay") {
		t.Errorf("a negative drain delay: %v, want an error naming it", err)
	}
}

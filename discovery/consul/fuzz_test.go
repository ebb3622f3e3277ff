package consul

import (
	"encoding/json"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/consul/api"

	"github.com/outrider-mesh/outrider/discovery"
	"github.com/outrider-mesh/outrider/mtls"
)

// FuzzHealthConnect decodes a /v1/health/connect answer the way consul/api
// does (into []*api.ServiceEntry) and turns it into a snapshot. An
// accepted answer never yields an endpoint without a host or with port 0,
// every endpoint's address splits back into the instance's host and port,
// weights stay in [1, maxWeight], the identity is the destination's Consul
// service ID, and endpoints are sorted.
func FuzzHealthConnect(f *testing.F) {
	for _, s := range []string{
		`[]`, `null`, `[null]`, `[{}]`,
		`[{"Node":{"Node":"n1","Address":"10.0.0.1","Datacenter":"dc1"},"Service":{"ID":"web-1","Service":"web","Port":8080,"Weights":{"Passing":3}}}]`,
		`[{"Node":{"Node":"n1","Address":"10.0.0.1"},"Service":{"Kind":"connect-proxy","ID":"web-1-sidecar-proxy","Service":"web-sidecar-proxy","Address":"::1","Port":21000,"Proxy":{"DestinationServiceName":"web"}}}]`,
		`[{"Node":{"Node":"n1","Address":""},"Service":{"ID":"a","Service":"web","Port":1}}]`,
		`[{"Node":{"Node":"n1","Address":"h"},"Service":{"ID":"a","Service":"web","Port":0}}]`,
		`[{"Node":{"Node":"n1","Address":"h"},"Service":{"ID":"a","Service":"web","Port":65536}}]`,
		`[{"Node":{"Node":"n1","Address":"h"},"Service":{"ID":"a","Service":"web","Port":-1}}]`,
		`[{"Node":{"Node":"n1","Address":"h"},"Service":{"Kind":"connect-proxy","ID":"a","Service":"p","Port":1}}]`,
		`[{"Node":{"Node":"n1","Address":"h"},"Service":{"ID":"a","Service":"web","Port":1,"Weights":{"Passing":1e9}}}]`,
		`[{"Node":{"Node":"n1","Address":"h"},"Service":{"ID":"a","Service":"web","Port":1,"Weights":{"Passing":-5}}}]`,
		`[{"Node":{"Node":"n1","Address":"h"},"Service":{"ID":"a","Service":"we b","Port":1,"Namespace":"x/y"}}]`,
		`[{"Node":{"Node":"n1","Address":"1.2.3.4:80"},"Service":{"ID":"a","Service":"web","Port":1}}]`,
		`[{"Node":{"Node":"n1","Address":"["},"Service":{"ID":"a","Service":"web","Port":1}}]`,
		`[{"Node":{"Node":"n","Address":"b"},"Service":{"ID":"2","Service":"web","Port":2}},{"Node":{"Node":"n","Address":"a"},"Service":{"ID":"1","Service":"web","Port":1,"Partition":"p1"}}]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var entries []*api.ServiceEntry
		if json.Unmarshal(body, &entries) != nil {
			return
		}
		snap, err := snapshotOf("web", "dc1", ConsulIdentity(testTD), entries)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "consul: health/connect/web: ") {
				t.Fatalf("error %q does not name the query", err)
			}
			return
		}
		if len(snap.Endpoints) > len(entries) {
			t.Fatalf("%d endpoints from %d entries", len(snap.Endpoints), len(entries))
		}
		for _, ep := range snap.Endpoints {
			checkEndpoint(t, entries, ep)
		}
		if !slices.IsSortedFunc(snap.Endpoints, func(a, b discovery.Endpoint) int { return strings.Compare(a.Address, b.Address) }) {
			t.Fatalf("endpoints not sorted: %+v", snap.Endpoints)
		}
	})
}

// checkEndpoint checks one endpoint of an accepted answer against the
// entry it came from.
func checkEndpoint(t *testing.T, entries []*api.ServiceEntry, ep discovery.Endpoint) {
	t.Helper()
	i := slices.IndexFunc(entries, func(e *api.ServiceEntry) bool { return e.Service.ID == ep.ServiceID && e.Node.Node == ep.Node })
	if i < 0 {
		t.Fatalf("endpoint %+v comes from no entry", ep)
	}
	host, port, err := net.SplitHostPort(ep.Address)
	if err != nil || host == "" {
		t.Fatalf("endpoint address %q: host %q, %v", ep.Address, host, err)
	}
	if n, _ := strconv.Atoi(port); n < 1 || n > 65535 {
		t.Fatalf("endpoint address %q: port %s", ep.Address, port)
	}
	if ep.Weight < 1 || ep.Weight > maxWeight {
		t.Fatalf("endpoint %q: weight %d", ep.Address, ep.Weight)
	}
	sid, err := mtls.ParseServiceID(ep.Identity)
	if err != nil || sid.TrustDomain != testTD {
		t.Fatalf("endpoint %q: identity %s is not a Consul service ID in %s (%v)", ep.Address, ep.Identity, testTD, err)
	}
	for _, e := range entries {
		if e.Service.ID != ep.ServiceID || e.Node.Node != ep.Node {
			continue
		}
		dest := e.Service.Service
		if e.Service.Kind == api.ServiceKindConnectProxy {
			dest = e.Service.Proxy.DestinationServiceName
		}
		if sid.Service == dest {
			return
		}
	}
	t.Fatalf("endpoint %q: identity %s names no destination of its entries", ep.Address, ep.Identity)
}

// FuzzIntentionMatch decodes a /v1/connect/intentions/match answer as
// consul/api does and checks it: an accepted answer lists the destination
// and holds no null intention (a dropped deny would fail open).
func FuzzIntentionMatch(f *testing.F) {
	for _, s := range []string{
		`{"web":[{"SourceName":"api","DestinationName":"web","Action":"deny"}]}`, `{"web":null}`, `{"web":[]}`,
		`null`, `{}`, `{"other":[]}`, `{"web":[null]}`, `{"web":[{}, null]}`, `{"Web":[]}`, `{"web":[],"web":null}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var m map[string][]*api.Intention
		if json.Unmarshal(body, &m) != nil {
			return
		}
		list, err := matched(m, "web")
		if err != nil {
			return
		}
		if _, ok := m["web"]; !ok {
			t.Fatalf("%s: accepted without listing web", body)
		}
		if len(list) != len(m["web"]) || slices.Contains(list, nil) {
			t.Fatalf("%s: accepted %d intentions (null among them: %v)", body, len(list), slices.Contains(list, nil))
		}
	})
}

// FuzzAgentSelf decodes /v1/agent/self as consul/api does and reads the
// default intention policy from it. Whatever it cannot interpret is an
// error (the caller fails closed); allow comes only from ACLs off or an
// "allow" default policy.
func FuzzAgentSelf(f *testing.F) {
	for _, s := range []string{
		`{"DebugConfig":{"ACLsEnabled":false}}`,
		`{"DebugConfig":{"ACLsEnabled":true,"ACLResolverSettings":{"ACLDefaultPolicy":"deny"}}}`,
		`{"DebugConfig":{"ACLsEnabled":true,"ACLResolverSettings":{"ACLDefaultPolicy":"allow"}}}`,
		`{"DebugConfig":{"ACLsEnabled":true,"ACLResolverSettings":{"ACLDefaultPolicy":"Allow"}}}`,
		`{"DebugConfig":{"ACLsEnabled":true}}`, `{"DebugConfig":{"ACLsEnabled":"false"}}`, `{"DebugConfig":null}`,
		`{}`, `null`, `{"DebugConfig":{"ACLsEnabled":true,"ACLResolverSettings":null}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var self map[string]map[string]any
		if json.Unmarshal(body, &self) != nil {
			return
		}
		allow, err := defaultAllowOf(self)
		if err != nil {
			if allow {
				t.Fatalf("%s: allow with an error", body)
			}
			return
		}
		debug := self["DebugConfig"]
		settings, _ := debug["ACLResolverSettings"].(map[string]any)
		switch {
		case debug["ACLsEnabled"] == false:
			if !allow {
				t.Fatalf("%s: ACLs off but deny", body)
			}
		case debug["ACLsEnabled"] == true && settings["ACLDefaultPolicy"] == "allow":
			if !allow {
				t.Fatalf("%s: deny", body)
			}
		case debug["ACLsEnabled"] == true && settings["ACLDefaultPolicy"] == "deny":
			if allow {
				t.Fatalf("%s: allow", body)
			}
		default:
			t.Fatalf("%s: read as allow=%v without an error", body, allow)
		}
	})
}

// FuzzParseUpstream checks the -upstream flag syntax: an accepted value
// has a name, a port in 1-65535 and an IP bind address when given, and
// formats back to itself.
func FuzzParseUpstream(f *testing.F) {
	for _, s := range []string{
		"db:5432", "db@dc2:5432", "127.0.0.2:db:5432", "::1:db:1", "db:0", "db:65536", ":5432", "db", "a:b:c:d",
		"db:+5432", "db:05432", "10.0.0.1:db@dc2:1", "x:db:1", "db@:1", "@dc:1", "db: 1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseUpstream(s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "upstream "+strconv.Quote(s)+": ") {
				t.Fatalf("error %q does not quote the flag", err)
			}
			return
		}
		if u.DestinationName == "" || u.LocalBindPort < 1 || u.LocalBindPort > 65535 ||
			u.LocalBindAddress != "" && net.ParseIP(u.LocalBindAddress) == nil {
			t.Fatalf("%q accepted as %+v", s, u)
		}
		name := u.DestinationName
		if u.Datacenter != "" || strings.Contains(s, "@") {
			name += "@" + u.Datacenter
		}
		again := name + ":" + strconv.Itoa(u.LocalBindPort)
		if u.LocalBindAddress != "" {
			again = u.LocalBindAddress + ":" + again
		}
		if u2, err := ParseUpstream(again); err != nil || u2.DestinationName != u.DestinationName ||
			u2.Datacenter != u.Datacenter || u2.LocalBindPort != u.LocalBindPort || u2.LocalBindAddress != u.LocalBindAddress {
			t.Fatalf("%q accepted as %+v, which formats as %q and reads back as %+v, %v", s, u, again, u2, err)
		}
	})
}

package consultest

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"testing"

	"github.com/hashicorp/consul/api"
)

// What the sidecar's cross-datacenter tests rely on, checked against the
// real agents: dc2's leaves carry dc2 in their SPIFFE ID and verify
// against dc1's roots through the intermediate sent with them; config
// entries written to dc1 reach dc2 (no ACLs); dc1 compiles a failover to
// dc2 into its discovery chain.
func TestStartFederated(t *testing.T) {
	t.Parallel()
	dc1, dc2 := StartFederated(t)

	if err := dc2.Client.Agent().ServiceRegister(&api.AgentServiceRegistration{Name: "web", ID: "web-2", Port: 8080}); err != nil {
		t.Fatal(err)
	}
	leaf, _, err := dc2.Client.Agent().ConnectCALeaf("web", nil)
	if err != nil {
		t.Fatal(err)
	}
	var chain []*x509.Certificate
	for rest := []byte(leaf.CertPEM); ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, c)
	}
	if len(chain) != 2 {
		t.Fatalf("dc2's leaf PEM has %d certificates, want the leaf and dc2's intermediate", len(chain))
	}
	roots1, _, err := dc1.Client.Agent().ConnectCARoots(nil)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	for _, r := range roots1.Roots {
		pool.AppendCertsFromPEM([]byte(r.RootCertPEM))
	}
	inter := x509.NewCertPool()
	inter.AddCert(chain[1])
	if _, err := chain[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("dc2's leaf does not verify against dc1's roots: %v", err)
	}
	if len(chain[0].URIs) != 1 || chain[0].URIs[0].String() != "spiffe://"+roots1.TrustDomain+"/ns/default/dc/dc2/svc/web" {
		t.Errorf("dc2's leaf has URIs %v, want the dc2 identity in dc1's trust domain %s", chain[0].URIs, roots1.TrustDomain)
	}

	entries := []api.ConfigEntry{
		&api.ServiceResolverConfigEntry{Kind: api.ServiceResolver, Name: "web",
			Failover: map[string]api.ServiceResolverFailover{"*": {Datacenters: []string{"dc2"}}}},
		&api.ServiceIntentionsConfigEntry{Kind: api.ServiceIntentions, Name: "web",
			Sources: []*api.SourceIntention{{Name: "client", Action: api.IntentionActionDeny}}},
	}
	for _, e := range entries {
		if _, _, err := dc1.Client.ConfigEntries().Set(e, nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, e := range entries {
		dc2.WaitConfigEntry(t, e.GetKind(), e.GetName())
	}
	m, _, err := dc2.Client.Connect().IntentionMatch(&api.IntentionMatch{By: api.IntentionMatchDestination, Names: []string{"web"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(m["web"]) != 1 || m["web"][0].Action != api.IntentionActionDeny {
		t.Errorf("dc2's intentions for web: %+v, want the deny written to dc1", m["web"])
	}

	ch, _, err := dc1.Client.DiscoveryChain().Get("web", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	res := ch.Chain.Nodes["resolver:web.default.default.dc1"]
	if res == nil || res.Resolver == nil || res.Resolver.Failover == nil ||
		fmt.Sprint(res.Resolver.Failover.Targets) != "[web.default.default.dc2]" {
		t.Fatalf("dc1's chain for web: %+v, want web.default.default.dc1 failing over to web.default.default.dc2", ch.Chain.Nodes)
	}
	if tg := ch.Chain.Targets["web.default.default.dc2"]; tg == nil || tg.Datacenter != "dc2" {
		t.Errorf("failover target: %+v, want datacenter dc2", tg)
	}
}

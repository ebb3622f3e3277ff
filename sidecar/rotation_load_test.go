package sidecar_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/outrider-mesh/outrider/discovery"
	"github.com/outrider-mesh/outrider/internal/testutil/consultest"
	"github.com/outrider-mesh/outrider/internal/testutil/loadtest"
	"github.com/outrider-mesh/outrider/mtls/mtlstest"
	"github.com/outrider-mesh/outrider/policy"
	"github.com/outrider-mesh/outrider/sidecar"
)

// Rotation under load: both sidecars' SVIDs (one-minute lifetime) are
// replaced every 50 ms, and the CA once (old and new roots trusted side by
// side, as every identity provider publishes them during a rotation),
// while clients send requests over pooled mesh connections (HTTP
// upstream), over a new mesh handshake per request (TCP upstream), and over
// one connection held open throughout. No request may fail and the held
// connection must survive.
func TestRotationUnderLoad(t *testing.T) {
	t.Parallel()
	ca := mtlstest.NewCA(t, "example.org")
	td := ca.TrustDomain()
	ports := consultest.FreePorts(t, 3)
	webPublic := fmt.Sprintf("127.0.0.1:%d", ports[0])
	httpUp, tcpUp := fmt.Sprintf("127.0.0.1:%d", ports[1]), fmt.Sprintf("127.0.0.1:%d", ports[2])
	const ttl = time.Minute
	mint := func(ca *mtlstest.CA, path string) *mtlstest.Source {
		return mtlstest.NewSource(ca.SVID(t, "spiffe://example.org"+path, mtlstest.TTL(ttl)), ca.Bundle())
	}
	webID, clientID := mint(ca, "/web"), mint(ca, "/client")

	app := startHTTPApp(t, "web-1")
	rules := allowOnly(t, td, "/client")
	web := startSidecar(t, nil, sidecar.Options{
		Config: &sidecar.Config{Service: "web", Public: sidecar.PublicListener{
			BindAddress: webPublic, LocalService: fmt.Sprintf("127.0.0.1:%d", app.port()), Protocol: sidecar.HTTP}},
		Identity: webID, Policy: rules,
	})
	endpoints := []discovery.Endpoint{{Address: webPublic, Weight: 1, Identity: spiffeid.RequireFromPath(td, "/web")}}
	none, _ := policy.CompileRules(nil, policy.RulesOptions{})
	client := startSidecar(t, nil, sidecar.Options{
		Config: &sidecar.Config{Service: "client", Upstreams: []sidecar.Upstream{
			{DestinationName: "web", BindAddress: httpUp, Protocol: sidecar.HTTP, Endpoints: endpoints},
			{DestinationName: "web", BindAddress: tcpUp, Protocol: sidecar.TCP, Endpoints: endpoints},
		}},
		Identity: clientID, Policy: none,
	})
	waitReady(t, web.admin)
	waitReady(t, client.admin)

	load := loadtest.New(t)
	// One connection held open through every rotation.
	load.Held(t, tcpUp, "/echo", 20*time.Millisecond)
	var rotations atomic.Int64
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wg.Go(func() { // the rotator
		cur := ca
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for i := 1; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if i == 20 { // CA rotation: both roots trusted, new leaves from the new CA
				next := mtlstest.NewCA(t, "example.org")
				webID.SetBundles(ca.Bundle(), next.Bundle())
				clientID.SetBundles(ca.Bundle(), next.Bundle())
				cur = next
			}
			webID.SetSVID(cur.SVID(t, "spiffe://example.org/web", mtlstest.TTL(ttl)))
			clientID.SetSVID(cur.SVID(t, "spiffe://example.org/client", mtlstest.TTL(ttl)))
			rotations.Add(1)
		}
	})
	load.Pooled("http://"+httpUp+"/echo", 2)
	load.Fresh("http://"+tcpUp+"/echo", 2)
	time.Sleep(4 * time.Second)
	cancel()
	wg.Wait()
	load.Check(t, fmt.Sprintf("rotation under load (%d SVID rotations per sidecar, one CA rotation, SVID lifetime %s)", rotations.Load(), ttl), 100)
	if rotations.Load() < 40 {
		t.Fatalf("too little happened: %d rotations", rotations.Load())
	}
	for _, admin := range []string{web.admin, client.admin} {
		if n := metricValue(t, admin, "outrider_tls_handshake_failures_total"); n != 0 {
			t.Errorf("%s counted %v handshake failures", admin, n)
		}
	}
}

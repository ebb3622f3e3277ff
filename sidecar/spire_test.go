package sidecar_test

import (
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/outrider-mesh/outrider/discovery/consul"
	"github.com/outrider-mesh/outrider/internal/testutil/consultest"
	"github.com/outrider-mesh/outrider/internal/testutil/loadtest"
	"github.com/outrider-mesh/outrider/internal/testutil/spiretest"
	"github.com/outrider-mesh/outrider/mtls/spiffesource"
	"github.com/outrider-mesh/outrider/policy"
	"github.com/outrider-mesh/outrider/sidecar"
)

// Mixed mode against a real SPIRE server and agent and a real Consul
// agent: both sidecars take their SVIDs (30 s lifetime) from the SPIRE
// agent's Workload API, web's instance is discovered in Consul and the
// SPIFFE ID it must present comes from its service meta. Under steady
// load, the SPIRE agent is stopped for two seconds (an identity-source
// outage: the sidecars report it and serve on the SVIDs they hold), then
// started again (the sources reconnect and take the new SVIDs it issues),
// and both SVIDs rotate once more; no request fails.
func TestSPIREMixedModeRotationUnderLoad(t *testing.T) {
	t.Parallel()
	spire := spiretest.Start(t, "example.org", spiretest.WithSVIDTTL(30*time.Second))
	// Both sidecars run in this process and so match the same selectors:
	// each picks its SVID by the entry's hint.
	spire.CreateEntry(t, "spiffe://example.org/web", spiretest.Hint("web"))
	spire.CreateEntry(t, "spiffe://example.org/client", spiretest.Hint("client"))
	spire.WaitForSVID(t, "spiffe://example.org/web")
	spire.WaitForSVID(t, "spiffe://example.org/client")

	a := consultest.Start(t)
	ports := consultest.FreePorts(t, 2)
	webPublic, upstream := ports[0], fmt.Sprintf("127.0.0.1:%d", ports[1])
	app := startHTTPApp(t, "web-1")
	// web's sidecar runs in static mode; its instance is registered in
	// Consul as a connect-proxy carrying its SPIFFE ID in the meta.
	if err := a.Client.Agent().ServiceRegister(&api.AgentServiceRegistration{
		Kind: api.ServiceKindConnectProxy, ID: "web-1-sidecar-proxy", Name: "web-sidecar-proxy",
		Address: "127.0.0.1", Port: webPublic, Meta: map[string]string{"spiffe_id": "spiffe://example.org/web"},
		Proxy: &api.AgentServiceConnectProxyConfig{DestinationServiceName: "web", DestinationServiceID: "web-1"},
	}); err != nil {
		t.Fatal(err)
	}

	td := spire.TrustDomain()
	source := func(hint string) *spiffesource.Source {
		log, _ := testLoggerLevel(t, "spiffe-"+hint)
		return spiffesource.New(spiffesource.WithAddress(spire.Address()), spiffesource.WithSVIDHint(hint),
			spiffesource.WithLogger(log), spiffesource.WithBackoff(50*time.Millisecond, time.Second))
	}
	webID, clientID := source("web"), source("client")
	rules := allowOnly(t, td, "/client")
	web := startSidecar(t, nil, sidecar.Options{
		Config: &sidecar.Config{Service: "web", Public: sidecar.PublicListener{
			BindAddress: fmt.Sprintf("127.0.0.1:%d", webPublic), LocalService: fmt.Sprintf("127.0.0.1:%d", app.port()), Protocol: sidecar.HTTP}},
		Identity: webID, Policy: rules,
	})
	fromMeta := func(in consul.Instance) (spiffeid.ID, error) { return spiffeid.FromString(in.Meta["spiffe_id"]) }
	none, _ := policy.CompileRules(nil, policy.RulesOptions{})
	client := startSidecar(t, a, sidecar.Options{
		Config: &sidecar.Config{Service: "client", Upstreams: []sidecar.Upstream{{
			DestinationName: "web", BindAddress: upstream, Protocol: sidecar.HTTP, Identities: fromMeta}}},
		Identity: clientID, Policy: none,
	})
	waitReady(t, web.admin)
	waitReady(t, client.admin)
	// Ready does not wait for the first discovery answer: until it comes
	// requests get 503 (no_healthy_upstream).
	eventually(t, 10*time.Second, func() error {
		resp, err := http.Get("http://" + upstream + "/echo")
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("through SPIRE identities: %d %s", resp.StatusCode, body)
		}
		return nil
	})

	serials := func() (string, string) { return webID.Status().Serial, clientID.Status().Serial }
	web0, client0 := serials()
	load := loadtest.New(t)
	load.Pooled("http://"+upstream+"/echo", 1)
	load.Fresh("http://"+upstream+"/echo", 1)

	rotated := func(web0, client0 string) {
		eventually(t, 60*time.Second, func() error {
			w, c := serials()
			if w == web0 || c == client0 {
				return fmt.Errorf("SVIDs not rotated yet (web %s, client %s)", w, c)
			}
			return nil
		})
	}
	// An outage of the Workload API: the agent is stopped for a few
	// seconds. Both sidecars notice (their sources report the error) and
	// keep serving on the SVIDs they hold.
	spire.StopAgent(t)
	eventually(t, 10*time.Second, func() error {
		for _, src := range []*spiffesource.Source{webID, clientID} {
			if st := src.Status(); st.LastError == "" {
				return fmt.Errorf("%s: no error reported with the agent stopped", st.SPIFFEID)
			}
		}
		return nil
	})
	during := load.Sent()
	time.Sleep(2 * time.Second)
	if n := load.Sent() - during; n < 20 {
		t.Fatalf("only %d requests sent during the agent outage", n)
	}
	if n := load.Failed(); n > 0 {
		t.Errorf("%d requests failed during the agent outage", n)
	}
	// The restarted agent (its SVID cache is in memory) issues new SVIDs:
	// the sources reconnected and picked them up, and their errors are
	// cleared. Then SPIRE renews them at about half their lifetime.
	spire.StartAgent(t)
	rotated(web0, client0)
	for _, src := range []*spiffesource.Source{webID, clientID} {
		if st := src.Status(); st.LastError != "" {
			t.Errorf("%s: error still reported after reconnecting: %s", st.SPIFFEID, st.LastError)
		}
	}
	rotated(serials())
	time.Sleep(500 * time.Millisecond) // traffic on the new SVIDs
	load.Check(t, fmt.Sprintf("SPIRE outage and rotation under load (web rotations %d, client rotations %d; agent down %s)",
		webID.Status().Rotations, clientID.Status().Rotations, 2*time.Second), 200)
}

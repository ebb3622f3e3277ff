package sidecar_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/outrider-mesh/outrider/discovery"
	"github.com/outrider-mesh/outrider/internal/testutil"
	"github.com/outrider-mesh/outrider/internal/testutil/consultest"
	"github.com/outrider-mesh/outrider/mtls"
	"github.com/outrider-mesh/outrider/mtls/mtlstest"
	"github.com/outrider-mesh/outrider/policy"
	"github.com/outrider-mesh/outrider/sidecar"
	"github.com/outrider-mesh/outrider/telemetry/accesslog"
)

// staticPair is an http service "web" and a client, each with a static
// sidecar (no Consul at all), identities from a test CA of example.org and
// web authorizing by SPIFFE ID.
type staticPair struct {
	ca        *mtlstest.CA
	web       *runningSidecar
	webID     *mtlstest.Source
	client    *runningSidecar
	clientID  *mtlstest.Source
	upstream  string // the client's listener for web
	webPublic string
	app       *httpApp
	// webLog and clientLog are the sidecars' access logs (JSON lines).
	webLog, clientLog testutil.Buffer
}

func startStaticPair(t *testing.T) *staticPair {
	t.Helper()
	return startStaticPairLimits(t, sidecar.HTTPLimits{}, sidecar.HTTPLimits{})
}

// startStaticPairLimits is startStaticPair with web's public listener
// bounded by web and the client's upstream listener by client (zero
// fields: the defaults).
func startStaticPairLimits(t *testing.T, web, client sidecar.HTTPLimits) *staticPair {
	t.Helper()
	ca := mtlstest.NewCA(t, "example.org")
	ports := consultest.FreePorts(t, 2)
	p := &staticPair{ca: ca, webPublic: fmt.Sprintf("127.0.0.1:%d", ports[0]), upstream: fmt.Sprintf("127.0.0.1:%d", ports[1])}
	app := startHTTPApp(t, "web-1")
	p.app = app
	td := ca.TrustDomain()
	rules, err := policy.CompileRules([]policy.Rule{
		{Allow: false, TrustDomain: td, PathPrefix: "/ns/test"},
		{Allow: true, ID: spiffeid.RequireFromPath(td, "/client")},
	}, policy.RulesOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.webID = mtlstest.NewSource(ca.SVID(t, "spiffe://example.org/web"), ca.Bundle())
	p.web = startSidecar(t, nil, sidecar.Options{
		Config: &sidecar.Config{Service: "web", Public: sidecar.PublicListener{
			BindAddress: p.webPublic, LocalService: fmt.Sprintf("127.0.0.1:%d", app.port()), Protocol: sidecar.HTTP, HTTPLimits: web}},
		Identity:  p.webID,
		Policy:    rules,
		AccessLog: testAccessLog(t, &p.webLog),
	})
	p.clientID = mtlstest.NewSource(ca.SVID(t, "spiffe://example.org/client"), ca.Bundle())
	p.client = startClientOpts(t, "client", p.clientID, p.upstream, p.webPublic, client, testAccessLog(t, &p.clientLog))
	waitReady(t, p.web.admin)
	waitReady(t, p.client.admin)
	return p
}

// startClient runs an egress-only static sidecar with identity id and one
// http upstream on bind whose single endpoint is web, expected to be
// spiffe://example.org/web.
func startClient(t *testing.T, name string, id mtls.Identity, bind, web string) *runningSidecar {
	t.Helper()
	return startClientOpts(t, name, id, bind, web, sidecar.HTTPLimits{}, nil)
}

// startClientOpts is startClient with the upstream listener bounded by
// lim and its access log written to access (nil: none).
func startClientOpts(t *testing.T, name string, id mtls.Identity, bind, web string, lim sidecar.HTTPLimits, access *accesslog.Logger) *runningSidecar {
	t.Helper()
	allowNone, _ := policy.CompileRules(nil, policy.RulesOptions{})
	return startSidecar(t, nil, sidecar.Options{
		Config: &sidecar.Config{Service: name, Upstreams: []sidecar.Upstream{{
			DestinationName: "web", BindAddress: bind, Protocol: sidecar.HTTP, HTTPLimits: lim,
			Endpoints: []discovery.Endpoint{{Address: web, Weight: 1, Identity: spiffeid.RequireFromString("spiffe://example.org/web")}},
		}}},
		Identity:  id,
		Policy:    allowNone,
		AccessLog: access,
	})
}

// testAccessLog is an access log of every request into buf, closed once
// the test's sidecars have stopped (call it before starting them).
func testAccessLog(t *testing.T, buf *testutil.Buffer) *accesslog.Logger {
	t.Helper()
	l, err := accesslog.New(accesslog.Config{Enabled: true, SampleRate: 1}, buf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func waitReady(t *testing.T, admin string) {
	t.Helper()
	eventually(t, 10*time.Second, func() error {
		resp, err := http.Get("http://" + admin + "/ready")
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("/ready %d %s", resp.StatusCode, body)
		}
		return nil
	})
}

func get(t *testing.T, url string) (int, string, http.Header) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), resp.Header
}

// The static mode runs the same data path with no Consul: static
// endpoints, identities from the given source, SPIFFE-ID rules.
func TestStaticMode(t *testing.T) {
	t.Parallel()
	p := startStaticPair(t)

	t.Run("allowed peer", func(t *testing.T) {
		code, body, _ := get(t, "http://"+p.upstream+"/echo")
		var s seen
		if code != 200 || json.Unmarshal([]byte(body), &s) != nil || s.Instance != "web-1" {
			t.Fatalf("%d %s", code, body)
		}
	})

	t.Run("peer denied by a path-prefix rule", func(t *testing.T) {
		ports := consultest.FreePorts(t, 1)
		bind := fmt.Sprintf("127.0.0.1:%d", ports[0])
		id := mtlstest.NewSource(p.ca.SVID(t, "spiffe://example.org/ns/test/client"), p.ca.Bundle())
		c := startClient(t, "test-client", id, bind, p.webPublic)
		waitReady(t, c.admin)
		code, body, h := get(t, "http://"+bind+"/echo")
		if code/100 != 5 || h.Get("X-Outrider-Error") == "" {
			t.Fatalf("denied peer got %d %q %s", code, h.Get("X-Outrider-Error"), body)
		}
		eventually(t, 5*time.Second, func() error {
			if n := metricValue(t, p.web.admin, "outrider_authz_decisions_total", "decision", "deny", "rule", "rule 1"); n < 1 {
				return fmt.Errorf("deny decisions by rule 1: %v", n)
			}
			return nil
		})
	})

	t.Run("peer from a trust domain with no bundle", func(t *testing.T) {
		other := mtlstest.NewCA(t, "other.org")
		ports := consultest.FreePorts(t, 1)
		bind := fmt.Sprintf("127.0.0.1:%d", ports[0])
		// The intruder trusts web's CA, but web holds no bundle for other.org.
		id := mtlstest.NewSource(other.SVID(t, "spiffe://other.org/client"), p.ca.Bundle(), other.Bundle())
		c := startClient(t, "intruder", id, bind, p.webPublic)
		waitReady(t, c.admin)
		if code, body, _ := get(t, "http://"+bind+"/echo"); code/100 != 5 {
			t.Fatalf("peer from other.org got %d %s", code, body)
		}
		eventually(t, 5*time.Second, func() error {
			if n := metricValue(t, p.web.admin, "outrider_tls_handshake_failures_total", "reason", "unknown_trust_domain"); n < 1 {
				return fmt.Errorf("handshake failures for an unknown trust domain: %v", n)
			}
			return nil
		})
	})

	t.Run("certs", func(t *testing.T) {
		code, body, _ := get(t, "http://"+p.web.admin+"/certs")
		var st sidecar.CertsStatus
		if code != 200 || json.Unmarshal([]byte(body), &st) != nil {
			t.Fatalf("/certs %d %s", code, body)
		}
		if st.SPIFFEID != "spiffe://example.org/web" || st.Serial == "" || !st.Valid || st.ExpiresIn == "" ||
			len(st.TrustDomains) != 1 || st.TrustDomains[0] != "example.org" || st.Source != "test" {
			t.Fatalf("/certs = %s", body)
		}
	})
}

// An SVID that expires without renewal makes new handshakes fail closed
// (and /ready and /certs say why) until a valid one arrives.
func TestExpiredSVIDFailsClosed(t *testing.T) {
	t.Parallel()
	p := startStaticPair(t)
	if code, body, _ := get(t, "http://"+p.upstream+"/echo"); code != 200 {
		t.Fatalf("before expiry: %d %s", code, body)
	}
	p.webID.SetSVID(p.ca.SVID(t, "spiffe://example.org/web", mtlstest.Expired()))
	// The client's pooled connection to web was set up before and stays
	// (established connections are never cut); a new client needs a new
	// handshake, which web refuses.
	ports := consultest.FreePorts(t, 1)
	bind := fmt.Sprintf("127.0.0.1:%d", ports[0])
	c := startClient(t, "late-client", mtlstest.NewSource(p.ca.SVID(t, "spiffe://example.org/client"), p.ca.Bundle()), bind, p.webPublic)
	waitReady(t, c.admin)
	code, body, _ := get(t, "http://"+bind+"/echo")
	if code/100 != 5 {
		t.Fatalf("web with an expired SVID answered a new connection: %d %s", code, body)
	}
	if code, body, _ := get(t, "http://"+p.upstream+"/echo"); code != 200 {
		t.Fatalf("the established connection broke: %d %s", code, body)
	}
	code, body, _ = get(t, "http://"+p.web.admin+"/ready")
	if code != 503 || !strings.Contains(body, "expired") {
		t.Fatalf("/ready with an expired SVID: %d %s", code, body)
	}
	_, body, _ = get(t, "http://"+p.web.admin+"/certs")
	var st sidecar.CertsStatus
	if json.Unmarshal([]byte(body), &st) != nil || st.Valid || !strings.Contains(st.Problem, "expired") {
		t.Fatalf("/certs with an expired SVID: %s", body)
	}

	p.webID.SetSVID(p.ca.SVID(t, "spiffe://example.org/web"))
	waitReady(t, p.web.admin)
	if code, body, _ := get(t, "http://"+bind+"/echo"); code != 200 {
		t.Fatalf("after renewal: %d %s", code, body)
	}
}

// A static sidecar needs no Consul: New accepts a nil client only when
// nothing needs one.
func TestStaticModeNeedsNoConsul(t *testing.T) {
	if _, err := sidecar.New(nil, sidecar.Options{Config: &sidecar.Config{Service: "web"}}); err == nil {
		t.Fatal("New without a client, identity or policy: no error")
	}
	if _, err := sidecar.New(nil, sidecar.Options{Config: &sidecar.Config{Service: "web"}, SidecarFor: "web-1"}); err == nil {
		t.Fatal("static Config with SidecarFor: no error")
	}
}

// Before the first discovery answer (here Consul never answers), an HTTP
// upstream answers each request 503 with the reason instead of closing
// the connection.
func TestL7UpstreamBeforeDiscoveryAnswers503(t *testing.T) {
	t.Parallel()
	ca := mtlstest.NewCA(t, "example.org")
	dead, err := api.NewClient(&api.Config{Address: fmt.Sprintf("127.0.0.1:%d", testutil.DeadPort(t))})
	if err != nil {
		t.Fatal(err)
	}
	ports := consultest.FreePorts(t, 1)
	bind := fmt.Sprintf("127.0.0.1:%d", ports[0])
	none, _ := policy.CompileRules(nil, policy.RulesOptions{})
	log, _ := testLoggerLevel(t, "client")
	sc, err := sidecar.New(dead, sidecar.Options{
		Config:   &sidecar.Config{Service: "client", Upstreams: []sidecar.Upstream{{DestinationName: "web", BindAddress: bind, Protocol: sidecar.HTTP}}},
		Identity: mtlstest.NewSource(ca.SVID(t, "spiffe://example.org/client"), ca.Bundle()),
		Policy:   none, AdminBind: "-", Logger: log,
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, DrainTimeout: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sc.Run(ctx) }()
	defer func() { cancel(); <-done }()
	eventually(t, 10*time.Second, func() error {
		resp, err := http.Get("http://" + bind + "/echo")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 503 || resp.Header.Get("X-Outrider-Error") != "no_healthy_upstream" {
			return fmt.Errorf("%d %q", resp.StatusCode, resp.Header.Get("X-Outrider-Error"))
		}
		return nil
	})
}

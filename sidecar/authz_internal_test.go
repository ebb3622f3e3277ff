package sidecar

import (
	"bufio"
	"log/slog"
	"net"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/outrider-mesh/outrider/internal/testutil"
	"github.com/outrider-mesh/outrider/policy"
	"github.com/outrider-mesh/outrider/telemetry/accesslog"
	"github.com/outrider-mesh/outrider/telemetry/metrics"
)

// The decision of each request reaches its server span, the access log
// and the decisions metric, named by the rule that made it; a dry-run
// rule's would-be denial is counted and lets the request through.
func TestDecisionRecorded(t *testing.T) {
	be := startRawBackend(t, hello)
	peer := spiffeid.RequireFromString("spiffe://example.org/client")
	rules, err := policy.CompileRules([]policy.Rule{
		{Name: "no-admin", HTTP: &policy.HTTPMatch{PathPrefix: "/admin"}},
		{Name: "reads", Allow: true, HTTP: &policy.HTTPMatch{Methods: []string{"GET"}}},
	}, policy.RulesOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dry, err := policy.CompileRules([]policy.Rule{{Name: "no-debug", HTTP: &policy.HTTPMatch{PathPrefix: "/debug"}}},
		policy.RulesOptions{DefaultAllow: true, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	tel, spans := tracedTelemetry(t, 1)
	var logBuf testutil.Buffer
	access, err := accesslog.New(accesslog.Config{Enabled: true, SampleRate: 1}, &logBuf)
	if err != nil {
		t.Fatal(err)
	}
	tel.access = access
	s := &Sidecar{log: slog.New(slog.DiscardHandler)}
	s.authz.Store(rules)
	s.authz.StoreLocal(dry)
	m := tel.metrics
	inb := &inbound{log: s.log, stat: &s.stat, metrics: m, authz: &s.authz}
	addr, _ := startH1ProxyWith(t, be.ln.Addr().String(), nil, nil, func(p *h1Proxy) {
		p.inbound, p.tel, p.authz, p.route = true, tel, &connAuthz{in: inb, peer: peer}, m.Route(metrics.Inbound, "local_app")
	})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	// The last request only makes sure the one before it was recorded:
	// the loop records a request after its response, before reading the
	// next one.
	for _, r := range []struct {
		path string
		want int
	}{{"/admin/x", 403}, {"/ok", 200}, {"/debug", 200}, {"/last", 200}} {
		if status, _ := exchange(t, c, br, "GET "+r.path+" HTTP/1.1\r\nHost: web\r\n\r\n"); status != r.want {
			t.Errorf("GET %s: %d, want %d", r.path, status, r.want)
		}
	}
	access.Close()

	byPath := map[string]map[string]string{}
	for _, sp := range spans.GetSpans() {
		attrs := map[string]string{}
		for _, kv := range sp.Attributes {
			attrs[string(kv.Key)] = kv.Value.String()
		}
		byPath[attrs["url.path"]] = attrs
	}
	for path, want := range map[string][2]string{"/admin/x": {"deny", "no-admin"}, "/ok": {"allow", "reads"}, "/debug": {"would_deny", "no-debug"}} {
		a := byPath[path]
		if a["outrider.authz.decision"] != want[0] || a["outrider.authz.rule"] != want[1] {
			t.Errorf("span of %s: decision %q rule %q, want %v", path, a["outrider.authz.decision"], a["outrider.authz.rule"], want)
		}
	}
	log := logBuf.String()
	for _, want := range []string{`"rule":"no-admin"`, `"rule":"reads"`, `"rule":"no-debug"`} {
		if !strings.Contains(log, want) {
			t.Errorf("access log lacks %s:\n%s", want, log)
		}
	}
	body := scrapeMetrics(t, m)
	for _, want := range []string{`decision="deny",rule="no-admin"} 1`, `decision="allow",rule="reads"} 2`, `decision="would_deny",rule="no-debug"} 1`} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func scrapeMetrics(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}

package metrics

import (
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape fetches /metrics in the text format and parses it.
func scrape(t *testing.T, m *Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("/metrics: status %d: %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("/metrics: Content-Type %q, want text/plain", ct)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	return fams
}

// find returns the metric of family name whose labels include want, or nil.
func find(fams map[string]*dto.MetricFamily, name string, want map[string]string) *dto.Metric {
	mf := fams[name]
	if mf == nil {
		return nil
	}
next:
	for _, m := range mf.GetMetric() {
		have := map[string]string{}
		for _, lp := range m.GetLabel() {
			have[lp.GetName()] = lp.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		return m
	}
	return nil
}

// value is a counter's or gauge's value, or a histogram's sample count; -1
// when the series is absent.
func value(fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	m := find(fams, name, labels)
	switch {
	case m == nil:
		return -1
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return -1
}

func route(dir, upstream string) map[string]string {
	return map[string]string{"direction": dir, "upstream": upstream}
}

func with(base map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range base {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

func TestRequestMovesCountersAndHistograms(t *testing.T) {
	t.Parallel()
	m := New("web")
	r := m.Route(Outbound, "api")
	if m.Route(Outbound, "api") != r {
		t.Fatal("Route did not return the cached route")
	}
	r.Request("GET", 200, "", 10, 20, 5*time.Millisecond, 3*time.Millisecond)
	r.Request("GET", 204, "", 0, 5, 7*time.Millisecond, 6*time.Millisecond)
	r.Request("POST", 0, "UF", 100, 0, 2*time.Second, -1)
	r.Retry()
	r.Retry()

	f := scrape(t, m)
	api := route("outbound", "api")
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"outrider_http_requests_total", with(api, "method", "GET", "status_class", "2xx", "response_flag", "-"), 2},
		{"outrider_http_requests_total", with(api, "method", "POST", "status_class", "none", "response_flag", "UF"), 1},
		{"outrider_http_request_duration_seconds", api, 3},
		{"outrider_http_upstream_duration_seconds", api, 2},
		{"outrider_http_request_body_bytes_total", api, 110},
		{"outrider_http_response_body_bytes_total", api, 25},
		{"outrider_upstream_retries_total", api, 2},
		{"outrider_sidecar_info", map[string]string{"service": "web"}, 1},
	} {
		if got := value(f, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if n := len(f["outrider_http_requests_total"].GetMetric()); n != 2 {
		t.Errorf("requests_total has %d series, want only the 2 combinations used", n)
	}
	h := find(f, "outrider_http_request_duration_seconds", api).GetHistogram()
	if sum := h.GetSampleSum(); math.Abs(sum-2.012) > 1e-9 {
		t.Errorf("duration sum = %v, want 2.012", sum)
	}
	var bounds []float64
	for _, b := range h.GetBucket() {
		if !math.IsInf(b.GetUpperBound(), 1) {
			bounds = append(bounds, b.GetUpperBound())
		}
		if b.GetUpperBound() == 0.005 && b.GetCumulativeCount() != 1 {
			t.Errorf("le=0.005 bucket = %d, want 1", b.GetCumulativeCount())
		}
	}
	if fmt.Sprint(bounds) != fmt.Sprint(durationBuckets) {
		t.Errorf("buckets %v, want %v", bounds, durationBuckets)
	}
}

func TestClasses(t *testing.T) {
	t.Parallel()
	methodCases := map[string]string{
		"GET": "GET", "HEAD": "HEAD", "POST": "POST", "PUT": "PUT", "DELETE": "DELETE",
		"PATCH": "PATCH", "OPTIONS": "OPTIONS", "CONNECT": "CONNECT", "TRACE": "TRACE",
		"get": Other, "PROPFIND": Other, "": Other, "GET ": Other, "\xff": Other,
	}
	for in, want := range methodCases {
		if got := MethodClass(in); got != want {
			t.Errorf("MethodClass(%q) = %q, want %q", in, got, want)
		}
	}
	statusCases := map[int]string{
		0: "none", -1: "none", 100: "1xx", 101: "1xx", 199: "1xx", 200: "2xx", 299: "2xx",
		301: "3xx", 404: "4xx", 499: "4xx", 500: "5xx", 503: "5xx", 599: "5xx",
		1: Other, 99: Other, 600: Other, 999: Other,
	}
	for in, want := range statusCases {
		if got := StatusClass(in); got != want {
			t.Errorf("StatusClass(%d) = %q, want %q", in, got, want)
		}
	}
	flagCases := map[string]string{
		"": NoFlag, "UH": "UH", "UF": "UF", "UT": "UT", "UC": "UC", "DC": "DC", "DI": "DI", "BR": "BR", "UO": "UO", "OM": "OM", "SI": "SI",
		"uh": Other, "URX": Other, "UF,UT": Other, "-": Other, "NR": Other,
	}
	for in, want := range flagCases {
		if got := FlagClass(in); got != want {
			t.Errorf("FlagClass(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestClassesInExposition checks the labels Request writes, not just the
// class functions.
func TestClassesInExposition(t *testing.T) {
	t.Parallel()
	m := New("web")
	r := m.Route(Inbound, LocalApp)
	r.Request("BREW", 418, "XX", 0, 0, time.Millisecond, time.Millisecond)
	r.Request("DELETE", 999, "DC", 0, 0, time.Millisecond, time.Millisecond)
	f := scrape(t, m)
	in := route("inbound", "local_app")
	for _, l := range []map[string]string{
		with(in, "method", "other", "status_class", "4xx", "response_flag", "other"),
		with(in, "method", "DELETE", "status_class", "other", "response_flag", "DC"),
	} {
		if got := value(f, "outrider_http_requests_total", l); got != 1 {
			t.Errorf("requests_total%v = %v, want 1", l, got)
		}
	}
}

func TestSeriesCreatedOnUse(t *testing.T) {
	t.Parallel()
	m := New("web")
	tcp := m.Route(Outbound, "db")
	tcp.Connection(1)
	tcp.Connection(1)
	tcp.Connection(-1)
	tcp.ConnectionClosed(100, 200, 3*time.Second)
	f := scrape(t, m)
	db := route("outbound", "db")
	if find(f, "outrider_http_request_duration_seconds", db) != nil || find(f, "outrider_http_requests_in_flight", db) != nil {
		t.Error("a TCP-only route exposes HTTP series")
	}
	for name, want := range map[string]float64{
		"outrider_connections_active":              1,
		"outrider_connections_total":               2,
		"outrider_tcp_received_bytes_total":        100,
		"outrider_tcp_sent_bytes_total":            200,
		"outrider_tcp_connection_duration_seconds": 1,
		"outrider_upstream_retries_total":          0, // zero-initialized
	} {
		if got := value(f, name, db); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}

	h := m.Route(Inbound, LocalApp)
	h.InFlight(1)
	h.InFlight(1)
	h.InFlight(-1)
	f = scrape(t, m)
	in := route("inbound", "local_app")
	if got := value(f, "outrider_http_requests_in_flight", in); got != 1 {
		t.Errorf("in flight = %v, want 1", got)
	}
	if find(f, "outrider_tcp_received_bytes_total", in) != nil {
		t.Error("an HTTP-only route exposes TCP series")
	}
}

func TestUnknownDirection(t *testing.T) {
	t.Parallel()
	m := New("web")
	m.Route("sideways", "x").Retry()
	if got := value(scrape(t, m), "outrider_upstream_retries_total", route("unknown", "x")); got != 1 {
		t.Errorf("retries{direction=unknown} = %v, want 1", got)
	}
}

func TestRouteCap(t *testing.T) {
	t.Parallel()
	m := New("web")
	for i := range MaxUpstreams + 10 {
		m.Route(Outbound, fmt.Sprintf("svc-%d", i)).Retry()
	}
	m.Route(Inbound, LocalApp).Retry() // the other direction has its own budget
	m.Route(Outbound, "svc-0").Retry() // admitted before the cap: still its own
	m.Route(Outbound, "\xffbad").Retry()
	f := scrape(t, m)
	if n := len(f["outrider_upstream_retries_total"].GetMetric()); n != MaxUpstreams+2 {
		t.Errorf("%d retry series, want %d", n, MaxUpstreams+2)
	}
	for _, c := range []struct {
		labels map[string]string
		want   float64
	}{
		{route("outbound", OverflowUpstream), 11},
		{route("outbound", "svc-0"), 2},
		{route("inbound", LocalApp), 1},
	} {
		if got := value(f, "outrider_upstream_retries_total", c.labels); got != c.want {
			t.Errorf("retries%v = %v, want %v", c.labels, got, c.want)
		}
	}
}

func TestRouteInvalidUTF8(t *testing.T) {
	t.Parallel()
	m := New("web")
	m.Route(Outbound, "a\xffb").Request("GET", 200, "", 0, 0, 0, 0)
	m.AuthzDecision(true, "rule\xfe")
	m.OutlierEjection("\xff")
	f := scrape(t, m)
	if got := value(f, "outrider_upstream_retries_total", route("outbound", "a\uFFFDb")); got != 0 {
		t.Errorf("sanitized upstream label missing: %v", got)
	}
	if got := value(f, "outrider_authz_decisions_total", map[string]string{"decision": "allow", "rule": "rule\uFFFD"}); got != 1 {
		t.Errorf("sanitized rule label: %v", got)
	}
}

func TestAuthzDecisionRuleCap(t *testing.T) {
	t.Parallel()
	m := New("web")
	for i := range MaxRules + 44 {
		m.AuthzDecision(i%2 == 0, fmt.Sprintf("intention %d", i))
	}
	m.AuthzDecision(false, "intention 0") // known rule: still its own label
	m.AuthzDecision(false, Other)
	m.AuthzWouldDeny("intention 2")
	f := scrape(t, m)
	series := f["outrider_authz_decisions_total"].GetMetric()
	if len(series) != 3*(MaxRules+1) {
		t.Errorf("%d decision series, want %d (allow, deny and would_deny per rule, plus other)", len(series), 3*(MaxRules+1))
	}
	for _, c := range []struct {
		decision, rule string
		want           float64
	}{
		{"allow", "intention 0", 1},
		{"deny", "intention 0", 1},
		{"deny", "intention 1", 1},
		{"would_deny", "intention 2", 1},
		{"allow", Other, 22},
		{"deny", Other, 23},
	} {
		if got := value(f, "outrider_authz_decisions_total", map[string]string{"decision": c.decision, "rule": c.rule}); got != c.want {
			t.Errorf("authz{%s,%s} = %v, want %v", c.decision, c.rule, got, c.want)
		}
	}
}

func TestHandshakeFailureAndEjection(t *testing.T) {
	t.Parallel()
	m := New("web")
	m.HandshakeFailure(ReasonUnknownCA)
	m.HandshakeFailure(ReasonUnknownCA)
	m.HandshakeFailure("made up")
	m.OutlierEjection("api")
	f := scrape(t, m)
	if n := len(f["outrider_tls_handshake_failures_total"].GetMetric()); n != numReasons {
		t.Errorf("%d reason series, want all %d zero-initialized", n, numReasons)
	}
	for reason, want := range map[string]float64{ReasonUnknownCA: 2, ReasonOther: 1, ReasonTimeout: 0} {
		if got := value(f, "outrider_tls_handshake_failures_total", map[string]string{"reason": reason}); got != want {
			t.Errorf("handshake failures{%s} = %v, want %v", reason, got, want)
		}
	}
	if got := value(f, "outrider_outlier_ejections_total", map[string]string{"upstream": "api"}); got != 1 {
		t.Errorf("ejections = %v, want 1", got)
	}
}

func TestScrapeCallbacks(t *testing.T) {
	t.Parallel()
	m := New("web")
	f := scrape(t, m)
	for _, name := range []string{"outrider_discovery_stale", "outrider_certificate_expiry_seconds", "outrider_tracing_spans_started_total"} {
		if f[name] != nil {
			t.Errorf("%s exposed without a callback", name)
		}
	}

	last := time.Unix(1700000000, 500_000_000)
	m.SetDiscoveryStatus(func() []WatchStatus {
		return []WatchStatus{
			{Name: "health:api", LastSuccess: last, Failures: 0},
			{Name: "intentions", Stale: true, Failures: 3},
			{Name: "health:api", Failures: 99}, // duplicate: ignored
		}
	})
	notAfter := time.Now().Add(time.Hour)
	m.SetCertExpiry(func() (time.Time, bool) { return notAfter, true })
	m.SetTracingStats(func() (int64, int64, int64, int64) { return 10, 7, 2, 1 })

	f = scrape(t, m)
	w := func(n string) map[string]string { return map[string]string{"watch": n} }
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"outrider_discovery_last_success_timestamp_seconds", w("health:api"), 1700000000.5},
		{"outrider_discovery_last_success_timestamp_seconds", w("intentions"), 0},
		{"outrider_discovery_stale", w("health:api"), 0},
		{"outrider_discovery_stale", w("intentions"), 1},
		{"outrider_discovery_consecutive_failures", w("health:api"), 0},
		{"outrider_discovery_consecutive_failures", w("intentions"), 3},
		{"outrider_certificate_not_after_timestamp_seconds", nil, float64(notAfter.UnixNano()) / 1e9},
		{"outrider_tracing_spans_started_total", nil, 10},
		{"outrider_tracing_spans_exported_total", nil, 7},
		{"outrider_tracing_spans_dropped_total", nil, 2},
		{"outrider_tracing_export_errors_total", nil, 1},
	} {
		if got := value(f, c.name, c.labels); math.Abs(got-c.want) > 1e-3 {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if exp := value(f, "outrider_certificate_expiry_seconds", nil); exp < 3500 || exp > 3600 {
		t.Errorf("certificate expiry = %v s, want about 3600", exp)
	}

	m.SetCertExpiry(func() (time.Time, bool) { return time.Time{}, false })
	m.SetDiscoveryStatus(nil)
	m.SetTracingStats(nil)
	f = scrape(t, m)
	for _, name := range []string{"outrider_discovery_stale", "outrider_certificate_expiry_seconds", "outrider_tracing_spans_started_total"} {
		if f[name] != nil {
			t.Errorf("%s still exposed after its callback was removed", name)
		}
	}

	// A label value that is not UTF-8 fails that metric, not the scrape.
	m.SetDiscoveryStatus(func() []WatchStatus { return []WatchStatus{{Name: "\xff"}, {Name: "ok"}} })
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if !strings.Contains(rec.Body.String(), `outrider_discovery_stale{watch="ok"} 0`) {
		t.Errorf("a bad watch name broke the scrape:\n%s", rec.Body)
	}
}

func TestOpenMetricsNegotiated(t *testing.T) {
	t.Parallel()
	m := New("web")
	m.Route(Outbound, "api").Request("GET", 200, "", 1, 1, time.Millisecond, time.Millisecond)
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	req.Header.Set("Accept", "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	ct := resp.Header.Get("Content-Type")
	if !strings.HasPrefix(ct, "application/openmetrics-text") {
		t.Fatalf("Content-Type %q, want OpenMetrics", ct)
	}
	dec := expfmt.NewDecoder(resp.Body, expfmt.ResponseFormat(resp.Header))
	found := false
	for {
		var mf dto.MetricFamily
		if err := dec.Decode(&mf); err != nil {
			if err.Error() != "EOF" {
				t.Fatalf("OpenMetrics does not decode: %v", err)
			}
			break
		}
		if mf.GetName() == "outrider_http_requests" || mf.GetName() == "outrider_http_requests_total" {
			found = true
		}
	}
	if !found {
		t.Error("OpenMetrics exposition lacks outrider_http_requests")
	}
}

// TestParallelSidecars: registries are per Metrics, so two sidecars in one
// process neither collide nor see each other's series.
func TestParallelSidecars(t *testing.T) {
	t.Parallel()
	a, b := New("a"), New("b")
	a.Route(Outbound, "x").Retry()
	if f := scrape(t, b); find(f, "outrider_upstream_retries_total", route("outbound", "x")) != nil {
		t.Error("b exposes a's series")
	}
}

func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	m := New("web")
	const goroutines, perG = 8, 500
	var wg sync.WaitGroup
	stop := make(chan struct{})
	scraped := make(chan struct{})
	go func() { // scrape while recording
		defer close(scraped)
		for {
			select {
			case <-stop:
				return
			default:
				scrape(t, m)
			}
		}
	}()
	methods := []string{"GET", "POST", "PURGE"}
	for g := range goroutines {
		wg.Go(func() {
			for i := range perG {
				r := m.Route(Outbound, fmt.Sprintf("svc-%d", i%4))
				r.Connection(1)
				r.InFlight(1)
				r.Request(methods[i%3], 200+100*(i%4), "", 1, 2, time.Millisecond, time.Microsecond)
				r.InFlight(-1)
				r.Retry()
				r.ConnectionClosed(3, 4, time.Second)
				r.Connection(-1)
				m.AuthzDecision(g%2 == 0, fmt.Sprintf("rule-%d", i%8))
				m.HandshakeFailure(ReasonTimeout)
			}
		})
	}
	wg.Wait()
	close(stop)
	<-scraped

	f := scrape(t, m)
	var requests, authz float64
	for _, s := range f["outrider_http_requests_total"].GetMetric() {
		requests += s.GetCounter().GetValue()
	}
	for _, s := range f["outrider_authz_decisions_total"].GetMetric() {
		authz += s.GetCounter().GetValue()
	}
	const total = goroutines * perG
	if requests != total || authz != total {
		t.Errorf("requests %v, authz %v; want %d each", requests, authz, total)
	}
	for i := range 4 {
		l := route("outbound", fmt.Sprintf("svc-%d", i))
		if v := value(f, "outrider_http_requests_in_flight", l); v != 0 {
			t.Errorf("in flight %v = %v, want 0", l, v)
		}
		if v := value(f, "outrider_connections_active", l); v != 0 {
			t.Errorf("active connections %v = %v, want 0", l, v)
		}
		if v := value(f, "outrider_tcp_sent_bytes_total", l); v != 4*total/4 {
			t.Errorf("tcp sent %v = %v, want %d", l, v, total)
		}
	}
}

func TestRequestDoesNotAllocate(t *testing.T) {
	m := New("web")
	r := m.Route(Outbound, "api")
	r.Request("GET", 200, "", 1, 1, time.Millisecond, time.Millisecond) // resolve the children
	allocs := testing.AllocsPerRun(1000, func() {
		r.InFlight(1)
		r.Request("GET", 200, "", 100, 200, time.Millisecond, 500*time.Microsecond)
		r.InFlight(-1)
		m.AuthzDecision(true, "default")
	})
	if allocs != 0 {
		t.Errorf("Request allocates %v times per call, want 0", allocs)
	}
}

func BenchmarkRouteRequest(b *testing.B) {
	m := New("web")
	r := m.Route(Outbound, "api")
	r.Request("GET", 200, "", 1, 1, time.Millisecond, time.Millisecond)
	b.ReportAllocs()
	for b.Loop() {
		r.Request("GET", 200, "", 100, 200, 3*time.Millisecond, 2*time.Millisecond)
	}
}

// BenchmarkRouteRequestParallel: all goroutines on one route, the worst
// case for cache-line contention.
func BenchmarkRouteRequestParallel(b *testing.B) {
	m := New("web")
	r := m.Route(Outbound, "api")
	r.Request("GET", 200, "", 1, 1, time.Millisecond, time.Millisecond)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r.Request("GET", 200, "", 100, 200, 3*time.Millisecond, 2*time.Millisecond)
		}
	})
}

// BenchmarkRequestLifecycle is what the proxy records per request: in
// flight up and down, and the request.
func BenchmarkRequestLifecycle(b *testing.B) {
	m := New("web")
	r := m.Route(Outbound, "api")
	r.Request("GET", 200, "", 1, 1, time.Millisecond, time.Millisecond)
	b.ReportAllocs()
	for b.Loop() {
		r.InFlight(1)
		r.Request("GET", 200, "", 100, 200, 3*time.Millisecond, 2*time.Millisecond)
		r.InFlight(-1)
	}
}

func BenchmarkAuthzDecision(b *testing.B) {
	m := New("web")
	m.AuthzDecision(true, "intention web<-api")
	b.ReportAllocs()
	for b.Loop() {
		m.AuthzDecision(true, "intention web<-api")
	}
}

func BenchmarkMetricsRoute(b *testing.B) {
	m := New("web")
	m.Route(Outbound, "api")
	b.ReportAllocs()
	for b.Loop() {
		m.Route(Outbound, "api")
	}
}

// TestHealthChecks: probes are counted by upstream and result (an unknown
// result as other), and the healthy endpoint gauge comes from its
// callback, once per upstream.
func TestHealthChecks(t *testing.T) {
	t.Parallel()
	m := New("web")
	if f := scrape(t, m); f["outrider_upstream_healthy_endpoints"] != nil || f["outrider_upstream_health_checks_total"] != nil {
		t.Error("health check series exposed before any check")
	}
	m.HealthCheck("api", "success")
	m.HealthCheck("api", "success")
	m.HealthCheck("api", "timeout")
	m.HealthCheck("db", "made up")
	m.SetHealthyEndpoints(func() []UpstreamEndpoints {
		return []UpstreamEndpoints{{Upstream: "api", Count: 2}, {Upstream: "db"}, {Upstream: "api", Count: 9}}
	})
	f := scrape(t, m)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"outrider_upstream_health_checks_total", map[string]string{"upstream": "api", "result": "success"}, 2},
		{"outrider_upstream_health_checks_total", map[string]string{"upstream": "api", "result": "timeout"}, 1},
		{"outrider_upstream_health_checks_total", map[string]string{"upstream": "db", "result": Other}, 1},
		{"outrider_upstream_healthy_endpoints", map[string]string{"upstream": "api"}, 2},
		{"outrider_upstream_healthy_endpoints", map[string]string{"upstream": "db"}, 0},
	} {
		if got := value(f, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if n := len(f["outrider_upstream_healthy_endpoints"].GetMetric()); n != 2 {
		t.Errorf("%d healthy endpoint series, want 2", n)
	}
	m.SetHealthyEndpoints(nil)
	if f := scrape(t, m); f["outrider_upstream_healthy_endpoints"] != nil {
		t.Error("gauge still exposed after its callback was removed")
	}
}

package sidecar_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/outrider-mesh/outrider/gateway"
	"github.com/outrider-mesh/outrider/internal/testutil"
	"github.com/outrider-mesh/outrider/telemetry/tracing"
)

// Interim (1xx) responses are relayed, never recorded as the request's
// status: the access logs and metrics of both sidecars of a pair show the
// final 200 of a request the application answered 103 then 200, over
// HTTP/2 (the net/http path, statusWriter) and HTTP/1.1 (the loop).
func TestInterimIsNotTheStatus(t *testing.T) {
	t.Parallel()
	p := startStaticPair(t)
	if status, code, interim := h2cHints(t, p.upstream, 1); status != 200 || interim != 1 {
		t.Errorf("h2c: %d %q after %d interim responses, want 200 after 1", status, code, interim)
	}
	c, err := net.Dial("tcp", p.upstream)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if status, interim := h1Hints(t, c, 1); status != 200 || interim != 1 {
		t.Errorf("http/1.1: %d after %d interim responses, want 200 after 1", status, interim)
	}
	for _, side := range []struct {
		name, admin, direction string
		log                    *testutil.Buffer
	}{{"client", p.client.admin, "outbound", &p.clientLog}, {"web", p.web.admin, "inbound", &p.webLog}} {
		for _, proto := range []string{"HTTP/2.0", "HTTP/1.1"} {
			e := waitAccessEntry(t, side.log, side.direction, proto, "/hints")
			if e.Status != 200 {
				t.Errorf("%s's %s %s access log: status %d, want 200 (the final status)", side.name, side.direction, proto, e.Status)
			}
		}
		if n := metricValue(t, side.admin, "outrider_http_requests_total", "direction", side.direction, "status_class", "1xx"); n != 0 {
			t.Errorf("%s: %v %s requests counted as 1xx", side.name, n, side.direction)
		}
		if n := metricValue(t, side.admin, "outrider_http_requests_total", "direction", side.direction, "status_class", "2xx"); n < 2 {
			t.Errorf("%s: %v %s requests counted as 2xx, want the 2", side.name, n, side.direction)
		}
	}
}

// A request with Expect: 100-continue whose application sends 103 Early
// Hints before the 100 (RFC 9110 15.2: a 1xx other than 101 is not the
// answer): both sidecars' HTTP/1.1 loops relay the 103, keep waiting for
// the 100, relay it, and only then is the body sent; the final 200 is the
// status logged.
func TestExpectContinueAfterEarlyHints(t *testing.T) {
	t.Parallel()
	p := startStaticPair(t)
	c, err := net.Dial("tcp", p.upstream)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got, body := h1ExpectContinue(t, c, "/hints?n=1", "hello"); fmt.Sprint(got) != "[103 100 200]" || body != "ok 5" {
		t.Fatalf("responses %v, body %q; want [103 100 200] and %q", got, body, "ok 5")
	}
	for _, side := range []struct {
		name, direction string
		log             *testutil.Buffer
	}{{"client", "outbound", &p.clientLog}, {"web", "inbound", &p.webLog}} {
		if e := waitAccessEntry(t, side.log, side.direction, "HTTP/1.1", "/hints"); e.Status != 200 || e.RxBytes != 5 {
			t.Errorf("%s's access log: status %d, %d body bytes received; want 200 and 5", side.name, e.Status, e.RxBytes)
		}
	}
}

// The same over HTTP/2 (h2c to the client, h2 to web, HTTP/1.1 from web
// to the application, which gets the body at once: web's net/http server
// sends its own 100 when the body is first read): the 103 is relayed and
// the final status is the one logged.
func TestExpectContinueAfterEarlyHintsH2(t *testing.T) {
	t.Parallel()
	p := startStaticPair(t)
	var interim []int
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, _ textproto.MIMEHeader) error { interim = append(interim, code); return nil }}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "POST",
		"http://"+p.upstream+"/hints?n=1", strings.NewReader("hello"))
	req.Header.Set("Expect", "100-continue")
	resp, err := h2cClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok 5" || !slices.Contains(interim, 103) {
		t.Fatalf("%d %q after interim %v; want 200 %q after a 103", resp.StatusCode, body, interim, "ok 5")
	}
	for _, side := range []struct {
		name, direction string
		log             *testutil.Buffer
	}{{"client", "outbound", &p.clientLog}, {"web", "inbound", &p.webLog}} {
		if e := waitAccessEntry(t, side.log, side.direction, "HTTP/2.0", "/hints"); e.Status != 200 {
			t.Errorf("%s's access log: status %d, want 200", side.name, e.Status)
		}
	}
}

// An ingress listener (net/http, statusWriter) relays the application's
// 103 and records the final 200 on its server span.
func TestIngressInterimIsNotTheStatus(t *testing.T) {
	t.Parallel()
	p := startStaticPair(t)
	exp := tracetest.NewInMemoryExporter()
	tr, err := tracing.New(context.Background(), tracing.Config{Enabled: true, Sampler: "parentbased_traceidratio", SamplerArg: 1},
		"edge", tracing.WithExporter(exp), tracing.WithSyncExport())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Shutdown(context.Background()) })
	edge := startIngress(t, p, gateway.Ingress{}, tr)
	var interim int
	trace := &httptrace.ClientTrace{Got1xxResponse: func(int, textproto.MIMEHeader) error { interim++; return nil }}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", "http://"+edge+"/hints?n=1", nil)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || interim != 1 {
		t.Fatalf("%d after %d interim responses, want 200 after 1", resp.StatusCode, interim)
	}
	eventually(t, 5*time.Second, func() error {
		for _, s := range exp.GetSpans() {
			for _, a := range s.Attributes {
				if a.Key == "outrider.ingress" {
					if code := spanStatus(s); code != 200 {
						t.Fatalf("the ingress span's http.response.status_code %d, want 200", code)
					}
					return nil
				}
			}
		}
		return fmt.Errorf("no ingress span among %d", len(exp.GetSpans()))
	})
}

// spanStatus is the span's http.response.status_code (0: none).
func spanStatus(s tracetest.SpanStub) int64 {
	for _, a := range s.Attributes {
		if a.Key == "http.response.status_code" {
			return a.Value.AsInt64()
		}
	}
	return 0
}

// accessEntry is what the tests read of an access log line.
type accessEntry struct {
	Direction string `json:"direction"`
	Protocol  string `json:"protocol"`
	Method    string `json:"method"`
	Path      string `json:"path"`
	Status    int    `json:"status"`
	RxBytes   int64  `json:"rx_bytes"`
}

// waitAccessEntry waits for log's first entry of direction and protocol
// whose path starts with path.
func waitAccessEntry(t *testing.T, log *testutil.Buffer, direction, protocol, path string) accessEntry {
	t.Helper()
	var found accessEntry
	eventually(t, 5*time.Second, func() error {
		for _, line := range strings.Split(log.String(), "\n") {
			var e accessEntry
			if json.Unmarshal([]byte(line), &e) == nil && e.Direction == direction && e.Protocol == protocol && strings.HasPrefix(e.Path, path) {
				found = e
				return nil
			}
		}
		return fmt.Errorf("no %s %s entry for %s in the access log:\n%s", direction, protocol, path, log.String())
	})
	return found
}

// h1ExpectContinue POSTs body to target over c (HTTP/1.1) with Expect:
// 100-continue, sending the body only once a 100 comes, and returns the
// statuses received up to the final one and that one's body. Each 103 must
// keep its Link field.
func h1ExpectContinue(t *testing.T, c net.Conn, target, body string) (statuses []int, final string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: web\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", target, len(body))
	br := bufio.NewReader(c)
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("after %v: %v", statuses, err)
		}
		statuses = append(statuses, resp.StatusCode)
		switch {
		case resp.StatusCode == 103 && resp.Header.Get("Link") == "":
			t.Errorf("the 103 lost its Link field: %v", resp.Header)
		case resp.StatusCode == 100:
			io.WriteString(c, body)
		case resp.StatusCode >= 200:
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return statuses, string(b)
		}
	}
}

// An HTTP/1.0 client gets no interim response (RFC 9110 section 15.2: a
// server must not send a 1xx to an HTTP/1.0 client), only the final
// answer, through the lean loop (TestH1GatewayRequestBodies checks the
// gateway's writer).
func TestNoInterimToHTTP10(t *testing.T) {
	t.Parallel()
	p := startStaticPair(t)
	c, err := net.Dial("tcp", p.upstream)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprint(c, "GET /hints?n=2 HTTP/1.0\r\nHost: web\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("HTTP/1.0 client: first response %d, want the final 200 (no 1xx)", resp.StatusCode)
	}
}

package sidecar_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/outrider-mesh/outrider/discovery"
	"github.com/outrider-mesh/outrider/gateway"
	"github.com/outrider-mesh/outrider/internal/testutil/consultest"
	"github.com/outrider-mesh/outrider/mtls"
	"github.com/outrider-mesh/outrider/policy"
	"github.com/outrider-mesh/outrider/sidecar"
	"github.com/outrider-mesh/outrider/telemetry/tracing"
)

// The configured edge limits (sidecar.HTTPLimits) are far below their
// defaults here, so each check passes only if the setting is in force:
// with the default the stalled body, the idle connection and the fourth
// stream would outlast the checks' 10 s bounds, and 3 interim responses
// would be relayed (the default allows 10). No check measures time.
var testLimits = sidecar.HTTPLimits{IdleTimeout: 500 * time.Millisecond, BodyIdleTimeout: 300 * time.Millisecond,
	MaxInterim: 2, MaxConcurrentStreams: 3, InitialStreamWindowSize: 100000, InitialConnectionWindowSize: 3 << 20}

// checkWindows fails t unless the server's SETTINGS and first connection
// WINDOW_UPDATE (from h2StreamLimit) give the receive windows l sets.
func checkWindows(t *testing.T, settings map[http2.SettingID]uint32, connIncrement uint32, l sidecar.HTTPLimits) {
	t.Helper()
	if w := settings[http2.SettingInitialWindowSize]; w != uint32(l.InitialStreamWindowSize) {
		t.Errorf("SETTINGS_INITIAL_WINDOW_SIZE %d, want %d", w, l.InitialStreamWindowSize)
	}
	if want := uint32(l.InitialConnectionWindowSize - 65535); connIncrement != want {
		t.Errorf("connection window increment %d, want %d (a %d-byte window)", connIncrement, want, l.InitialConnectionWindowSize)
	}
}

// TestConfiguredUpstreamLimits: an upstream listener's HTTPLimits apply on
// the HTTP/1.1 loop and on the net/http path (h2c from the application),
// and /config_dump shows them.
func TestConfiguredUpstreamLimits(t *testing.T) {
	t.Parallel()
	p := startStaticPairLimits(t, sidecar.HTTPLimits{}, testLimits)
	dial := func(t *testing.T) net.Conn {
		c, err := net.Dial("tcp", p.upstream)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}

	t.Run("config_dump", func(t *testing.T) {
		var d struct {
			Upstreams []map[string]any `json:"upstreams"`
		}
		resp, err := http.Get("http://" + p.client.admin + "/config_dump")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(&d); err != nil || len(d.Upstreams) != 1 {
			t.Fatalf("config_dump: %v %v", d, err)
		}
		u := d.Upstreams[0]
		want := map[string]any{"idle_timeout": float64(500 * time.Millisecond), "body_idle_timeout": float64(300 * time.Millisecond),
			"max_interim_responses": float64(2), "max_concurrent_streams": float64(3),
			"initial_stream_window_size": float64(100000), "initial_connection_window_size": float64(3 << 20)}
		for k, v := range want {
			if u[k] != v {
				t.Errorf("config_dump upstream %s = %v, want %v", k, u[k], v)
			}
		}
	})
	t.Run("interim http1", func(t *testing.T) {
		if status, interim := h1Hints(t, dial(t), 2); status != 200 || interim != 2 {
			t.Errorf("2 interim responses: %d after %d, want 200 after 2", status, interim)
		}
		if status, interim := h1Hints(t, dial(t), 3); status != 502 || interim != 2 {
			t.Errorf("3 interim responses: %d after %d, want 502 after 2", status, interim)
		}
		// While an Expect: 100-continue request waits for its 100.
		if got, _ := h1ExpectContinue(t, dial(t), "/hints?n=3", "hello"); fmt.Sprint(got) != "[103 103 502]" {
			t.Errorf("3 interim responses before the 100: %v, want [103 103 502]", got)
		}
	})
	t.Run("interim h2c", func(t *testing.T) {
		if status, code, interim := h2cHints(t, p.upstream, 2); status != 200 || interim != 2 {
			t.Errorf("2 interim responses: %d %q after %d, want 200 after 2", status, code, interim)
		}
		if status, code, interim := h2cHints(t, p.upstream, 3); status != 502 || code != "bad_upstream_response" || interim != 2 {
			t.Errorf("3 interim responses: %d %q after %d, want 502 bad_upstream_response after 2", status, code, interim)
		}
	})
	t.Run("body idle http1", func(t *testing.T) {
		if status := h1StalledBody(t, dial(t)); status != 408 {
			t.Errorf("stalled body: %d, want 408", status)
		}
	})
	t.Run("body idle h2c", func(t *testing.T) {
		pr, pw := io.Pipe()
		defer pw.Close()
		go pw.Write([]byte("abc")) // then nothing
		req, _ := http.NewRequest("POST", "http://"+p.upstream+"/echo", pr)
		req.ContentLength = 10
		resp, err := h2cClient().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 408 {
			t.Errorf("stalled h2c body: %d %q, want 408", resp.StatusCode, resp.Header.Get("X-Outrider-Error"))
		}
	})
	t.Run("idle", func(t *testing.T) {
		if err := waitClosed(dial(t)); err != nil {
			t.Error(err)
		}
	})
	t.Run("streams and windows", func(t *testing.T) {
		settings, inc := h2StreamLimit(t, dial(t), 3)
		checkWindows(t, settings, inc, testLimits)
	})
}

// TestConfiguredPublicLimits: the public listener's HTTPLimits apply to
// what peers send it and to the application's answers, on the HTTP/1.1
// loop and the net/http path.
func TestConfiguredPublicLimits(t *testing.T) {
	t.Parallel()
	p := startStaticPairLimits(t, testLimits, sidecar.HTTPLimits{})
	web := spiffeid.RequireFromString("spiffe://example.org/web")
	dial := func(t *testing.T, alpn string) net.Conn {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := mtls.NewDialer(p.clientID, 5*time.Second, mtls.WithALPN(alpn)).Dial(ctx, p.webPublic, web)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	up := func(t *testing.T) net.Conn {
		c, err := net.Dial("tcp", p.upstream)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}

	t.Run("interim http1", func(t *testing.T) {
		// The client's upstream (10 allowed) relays what web's public
		// listener let through.
		if status, interim := h1Hints(t, up(t), 3); status != 502 || interim != 2 {
			t.Errorf("3 interim responses: %d after %d, want 502 after 2", status, interim)
		}
	})
	t.Run("interim h2", func(t *testing.T) {
		// h2c to the client, h2 over mTLS to web: web's net/http path.
		if status, _, interim := h2cHints(t, p.upstream, 3); status != 502 || interim != 2 {
			t.Errorf("3 interim responses: %d after %d, want 502 after 2", status, interim)
		}
	})
	t.Run("body idle", func(t *testing.T) {
		if status := h1StalledBody(t, dial(t, "http/1.1")); status != 408 {
			t.Errorf("stalled body: %d, want 408", status)
		}
	})
	t.Run("idle", func(t *testing.T) {
		if err := waitClosed(dial(t, "http/1.1")); err != nil {
			t.Error(err)
		}
	})
	t.Run("streams and windows", func(t *testing.T) {
		settings, inc := h2StreamLimit(t, dial(t, "h2"), 3)
		checkWindows(t, settings, inc, testLimits)
	})
}

// TestMeshLimitsFromProxyConfig: the Proxy.Config keys of a real Consul
// registration reach the public and upstream listeners, and a stalled
// body and a fourth 1xx are cut by them.
func TestMeshLimitsFromProxyConfig(t *testing.T) {
	t.Parallel()
	a := consultest.Start(t)
	setProtocol(t, a, "web", "http")
	ports := consultest.FreePorts(t, 4)
	app := startHTTPApp(t, "web-1")
	register(t, a, service{name: "web", id: "web-1", appPort: app.port(), publicPort: ports[0]})
	registerWith(t, a, service{name: "client", id: "client-1", appPort: ports[1], publicPort: ports[2],
		upstreams: []api.Upstream{{DestinationName: "web", LocalBindPort: ports[3]}}},
		map[string]any{"idle_timeout_ms": 500, "body_idle_timeout_ms": "300", "max_interim_responses": 3, "max_concurrent_streams": 3,
			"initial_stream_window_size": 100000, "initial_connection_window_size": "3145728"})
	web := startSidecar(t, a, sidecar.Options{SidecarFor: "web-1"})
	client := startSidecar(t, a, sidecar.Options{SidecarFor: "client-1"})
	web.waitReady(t)
	client.waitReady(t)
	waitRoutable(t, a, "web", 1)
	want := sidecar.HTTPLimits{IdleTimeout: 500 * time.Millisecond, BodyIdleTimeout: 300 * time.Millisecond, MaxInterim: 3, MaxConcurrentStreams: 3,
		InitialStreamWindowSize: 100000, InitialConnectionWindowSize: 3 << 20}
	eventually(t, 15*time.Second, func() error {
		d := client.Dump()
		if d.Config == nil || d.Config.Public.HTTPLimits != want {
			return fmt.Errorf("public listener limits %+v, want %+v", d.Config, want)
		}
		for _, u := range d.Upstreams {
			if u.HTTPLimits != want {
				return fmt.Errorf("upstream %s limits %+v, want %+v", u.DestinationName, u.HTTPLimits, want)
			}
			if u.Protocol != sidecar.HTTP || u.Snapshot == nil || len(u.Snapshot.Endpoints) != 1 {
				return fmt.Errorf("upstream %s not routable over http yet", u.DestinationName)
			}
		}
		return nil
	})
	if got := web.Dump().Config.Public.HTTPLimits; got != (sidecar.HTTPLimits{IdleTimeout: 90 * time.Second,
		BodyIdleTimeout: 60 * time.Second, MaxInterim: 10, MaxConcurrentStreams: 1000,
		InitialStreamWindowSize: 1 << 20, InitialConnectionWindowSize: 1 << 20}) {
		t.Errorf("web's defaults: %+v", got)
	}
	upstream := addr(ports[3])
	c, err := net.Dial("tcp", upstream)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if status, interim := h1Hints(t, c, 4); status != 502 || interim != 3 {
		t.Errorf("4 interim responses: %d after %d, want 502 after 3", status, interim)
	}
	c2, err := net.Dial("tcp", upstream)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if status := h1StalledBody(t, c2); status != 408 {
		t.Errorf("stalled body: %d, want 408", status)
	}
	c3, err := net.Dial("tcp", upstream)
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	settings, inc := h2StreamLimit(t, c3, 3)
	checkWindows(t, settings, inc, want)
}

// h1Hints asks /hints for n interim responses over c (HTTP/1.1) and
// returns the final status and how many interim responses came first.
func h1Hints(t *testing.T, c net.Conn, n int) (status, interim int) {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET /hints?n=%d HTTP/1.1\r\nHost: web\r\n\r\n", n)
	br := bufio.NewReader(c)
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("after %d interim responses: %v", interim, err)
		}
		if resp.StatusCode >= 200 {
			resp.Body.Close()
			return resp.StatusCode, interim
		}
		interim++
	}
}

// h2cHints is h1Hints over h2c to addr; code is the x-outrider-error.
func h2cHints(t *testing.T, addr string, n int) (status int, code string, interim int) {
	t.Helper()
	trace := &httptrace.ClientTrace{Got1xxResponse: func(int, textproto.MIMEHeader) error { interim++; return nil }}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET",
		fmt.Sprintf("http://%s/hints?n=%d", addr, n), nil)
	resp, err := h2cClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("X-Outrider-Error"), interim
}

// h1StalledBody sends a POST whose body stops after 3 of 10 bytes and
// returns the status of the answer.
func h1StalledBody(t *testing.T, c net.Conn) int {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "POST /echo HTTP/1.1\r\nHost: web\r\nContent-Length: 10\r\n\r\nabc")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("stalled body: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// waitClosed reports an error unless the peer closes c, on which nothing
// is sent, within 10 s.
func waitClosed(c net.Conn) error {
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("an idle connection stayed open: %v", err)
	}
	if err == nil {
		return errors.New("the server sent bytes on an idle connection")
	}
	return nil
}

// h2StreamLimit speaks HTTP/2 (prior knowledge) on c: the server must
// advertise max concurrent streams, and of max+1 slow requests opened at
// once, reset the last and none of the others. It returns the server's
// SETTINGS and its first connection window increment.
func h2StreamLimit(t *testing.T, c net.Conn, max uint32) (settings map[http2.SettingID]uint32, connIncrement uint32) {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	bw := bufio.NewWriter(c)
	fr := http2.NewFramer(bw, c)
	bw.WriteString(http2.ClientPreface)
	fr.WriteSettings()
	bw.Flush()
	for settings == nil || connIncrement == 0 {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("waiting for the server's SETTINGS and WINDOW_UPDATE: %v", err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				settings = map[http2.SettingID]uint32{}
				f.ForeachSetting(func(s http2.Setting) error { settings[s.ID] = s.Val; return nil })
			}
		case *http2.WindowUpdateFrame:
			if f.StreamID == 0 {
				connIncrement = f.Increment
			}
		}
	}
	if v, ok := settings[http2.SettingMaxConcurrentStreams]; !ok || v != max {
		t.Errorf("SETTINGS_MAX_CONCURRENT_STREAMS %d (set: %v), want %d", v, ok, max)
	}
	fr.WriteSettingsAck()
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":path", "/sleep?d=2s"}, {":authority", "web"}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	last := 2*max + 1
	for id := uint32(1); id <= last; id += 2 {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block.Bytes(), EndStream: true, EndHeaders: true})
	}
	bw.Flush()
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("no stream was reset: %v", err)
		}
		switch f := f.(type) {
		case *http2.RSTStreamFrame:
			if f.StreamID != last {
				t.Fatalf("stream %d reset (%v), want only stream %d", f.StreamID, f.ErrCode, last)
			}
			return settings, connIncrement
		case *http2.HeadersFrame:
			if f.StreamID == last {
				t.Fatalf("stream %d, one over the limit, was answered", last)
			}
		case *http2.GoAwayFrame:
			t.Fatalf("GOAWAY %v instead of a stream reset", f.ErrCode)
		}
	}
}

// TestConfiguredIngressLimits: an ingress listener's body idle timeout,
// HTTP/2 stream limit and windows are in force (the defaults are 60 s,
// 100 streams, 64 KiB and 1 MiB).
func TestConfiguredIngressLimits(t *testing.T) {
	t.Parallel()
	p := startStaticPair(t)
	edge := startIngress(t, p, gateway.Ingress{BodyIdleTimeout: 300 * time.Millisecond, MaxConcurrentStreams: 3,
		InitialStreamWindowSize: 100000, InitialConnectionWindowSize: 3 << 20}, nil)
	dial := func(t *testing.T) net.Conn {
		var c net.Conn
		eventually(t, 5*time.Second, func() (err error) {
			c, err = net.Dial("tcp", edge)
			return err
		})
		t.Cleanup(func() { c.Close() })
		return c
	}
	t.Run("body idle", func(t *testing.T) {
		if status := h1StalledBody(t, dial(t)); status != 408 {
			t.Errorf("stalled body: %d, want 408", status)
		}
	})
	t.Run("streams and windows", func(t *testing.T) {
		settings, inc := h2StreamLimit(t, dial(t), 3)
		checkWindows(t, settings, inc, sidecar.HTTPLimits{InitialStreamWindowSize: 100000, InitialConnectionWindowSize: 3 << 20})
	})
}

// startIngress runs a sidecar with the client's identity whose ingress
// listener ig (named "edge", bound here) routes everything to an upstream
// "web" with p's web as its endpoint, traced by tr (nil: no tracing); it
// returns the ingress's address.
func startIngress(t *testing.T, p *staticPair, ig gateway.Ingress, tr *tracing.Tracing) string {
	t.Helper()
	ports := consultest.FreePorts(t, 2)
	bind, edge := addr(ports[0]), addr(ports[1])
	ig.Name, ig.Bind, ig.Routes = "edge", edge, []gateway.IngressRoute{{Upstream: "web"}}
	allowNone, _ := policy.CompileRules(nil, policy.RulesOptions{})
	sc := startSidecar(t, nil, sidecar.Options{
		Config: &sidecar.Config{Service: "client", Upstreams: []sidecar.Upstream{{
			DestinationName: "web", BindAddress: bind, Protocol: sidecar.HTTP,
			Endpoints: []discovery.Endpoint{{Address: p.webPublic, Weight: 1, Identity: spiffeid.RequireFromString("spiffe://example.org/web")}},
		}}, Ingress: gateway.Ingresses{ig}},
		Identity: p.clientID,
		Policy:   allowNone,
		Tracing:  tr,
	})
	waitReady(t, sc.admin)
	eventually(t, 5*time.Second, func() error {
		c, err := net.Dial("tcp", edge)
		if err == nil {
			c.Close()
		}
		return err
	})
	return edge
}

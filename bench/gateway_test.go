package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/outrider-mesh/outrider/internal/testutil"
	"github.com/outrider-mesh/outrider/internal/testutil/consultest"
	"github.com/outrider-mesh/outrider/sidecar"
)

// BenchmarkGatewayPath compares, in one run, an HTTP request through an
// L7 pair (client -> outbound sidecar -> mTLS -> inbound sidecar -> app)
// whose inbound sidecar has no gateway (plain), a gateway with one route
// the request does not match (gateway-nomatch), a route with a response
// header edit (gateway-route), and a cached route answered from the
// cache (cache-hit). The sidecars, app and client share this process:
// compare the cases' cpu-ns/op as ratios.
//
//	go test -run x -bench BenchmarkGatewayPath ./bench/
func BenchmarkGatewayPath(b *testing.B) {
	a := consultest.Start(b)
	app := startRawApp(b)
	cases := []struct{ name, cfg string }{
		{"plain", ``},
		{"gateway-nomatch", `{"routes": [{"name": "none", "match": {"path_prefix": "/nomatch/"}}]}`},
		{"gateway-route", `{"routes": [{"name": "all", "filter": {"response_headers": {"set": {"x-served-by": "gw"}}}}]}`},
		{"cache-hit", `{"cache_size": "16MiB", "routes": [{"name": "all", "cache": {"enabled": true}}]}`},
	}
	var ups []api.Upstream
	ports := consultest.FreePorts(b, 2*len(cases)+1)
	for i, c := range cases {
		name := "web-" + c.name
		if _, _, err := a.Client.ConfigEntries().Set(&api.ServiceConfigEntry{Kind: api.ServiceDefaults, Name: name, Protocol: "http"}, nil); err != nil {
			b.Fatal(err)
		}
		var cfg map[string]any
		if c.cfg != "" {
			cfg = map[string]any{"gateway": decodeJSON(b, c.cfg)}
		}
		registerWith(b, a, name, app, ports[2*i], nil, cfg)
		ups = append(ups, api.Upstream{DestinationName: name, LocalBindPort: ports[2*i+1]})
	}
	registerWith(b, a, "client", ports[len(ports)-1], consultest.FreePorts(b, 1)[0], ups, nil)
	for _, c := range cases {
		runSidecar(b, a, "web-"+c.name)
	}
	runSidecar(b, a, "client")

	req := "GET /cacheable HTTP/1.1\r\nHost: web\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"
	for i, c := range cases {
		addr := "127.0.0.1:" + strconv.Itoa(ports[2*i+1])
		waitServes(b, addr, req)
		b.Run(c.name, func(b *testing.B) { benchKeepAlive(b, addr, req) })
	}
}

func decodeJSON(b *testing.B, s string) map[string]any {
	var v map[string]any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		b.Fatal(err)
	}
	return v
}

func registerWith(b *testing.B, a *consultest.Agent, name string, appPort, publicPort int, upstreams []api.Upstream, cfg map[string]any) {
	err := a.Client.Agent().ServiceRegister(&api.AgentServiceRegistration{
		Name: name, ID: name, Port: appPort, Address: "127.0.0.1",
		Connect: &api.AgentServiceConnect{SidecarService: &api.AgentServiceRegistration{
			Port: publicPort, Address: "127.0.0.1",
			Checks: api.AgentServiceChecks{{
				Name: "sidecar listening", TCP: fmt.Sprintf("127.0.0.1:%d", publicPort), Interval: "1s", Timeout: "1s",
			}},
			Proxy: &api.AgentServiceConnectProxyConfig{Upstreams: upstreams, Config: cfg},
		}},
	})
	if err != nil {
		b.Fatal(err)
	}
}

func runSidecar(b *testing.B, a *consultest.Agent, id string, edits ...func(*sidecar.Options)) {
	opts := sidecar.Options{SidecarFor: id, AdminBind: "-", Logger: slog.New(slog.DiscardHandler),
		ConsulAddress: a.HTTPAddr, EventLoop: true}
	for _, edit := range edits {
		edit(&opts)
	}
	sc, err := sidecar.New(a.Client, opts)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { sc.Run(ctx); close(done) }()
	b.Cleanup(func() { cancel(); <-done })
}

// startRawApp answers every request on a keep-alive connection with a
// fixed cacheable response, parsing only the request head (no bodies).
func startRawApp(b *testing.B) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nCache-Control: max-age=600\r\nContent-Length: 19\r\n\r\nhello from backend\n")
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					r, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					_, _ = io.Copy(io.Discard, r.Body)
					if _, err := c.Write(resp); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// waitServes waits until addr answers req with 200 (the instance must
// pass its check and the client sidecar learn it).
func waitServes(b *testing.B, addr, req string) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := func() error {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				return err
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(2 * time.Second))
			if _, err := io.WriteString(c, req); err != nil {
				return err
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				return fmt.Errorf("status %d", resp.StatusCode)
			}
			return nil
		}()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s never answered 200: %v", addr, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// benchKeepAlive sends req b.N times on one keep-alive connection,
// reporting CPU time and read and write system calls per request.
func benchKeepAlive(b *testing.B, addr, req string) {
	c := dialKeepAlive(b, addr, req)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := testutil.CPUTime()
	r0, w0 := testutil.Syscalls()
	c.send(b, b.N)
	b.ReportMetric(float64(testutil.CPUTime()-cpu0)/float64(b.N), "cpu-ns/op")
	r1, w1 := testutil.Syscalls()
	b.ReportMetric(float64(r1-r0)/float64(b.N), "reads/op")
	b.ReportMetric(float64(w1-w0)/float64(b.N), "writes/op")
}

// keepAliveClient sends one request over and over on one connection.
type keepAliveClient struct {
	c   net.Conn
	br  *bufio.Reader
	raw []byte
}

func dialKeepAlive(b *testing.B, addr, req string) *keepAliveClient {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return &keepAliveClient{c: c, br: bufio.NewReader(c), raw: []byte(req)}
}

// send sends the request n times, each answer read in full and checked.
func (k *keepAliveClient) send(b *testing.B, n int) {
	for range n {
		if _, err := k.c.Write(k.raw); err != nil {
			b.Fatal(err)
		}
		resp, err := http.ReadResponse(k.br, nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
}

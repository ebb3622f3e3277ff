package sidecar_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/outrider-mesh/outrider/internal/testutil/consultest"
	"github.com/outrider-mesh/outrider/sidecar"
)

// gatewayMesh is an http service web (one instance) behind its sidecar,
// whose Proxy.Config is webConfig, and an "edge" sidecar with web as an
// upstream and Proxy.Config edgeConfig (its ingress listeners). The
// edge's config may name the ingress port as "{ingress}".
type gatewayMesh struct {
	agent   *consultest.Agent
	app     *httpApp
	web     *runningSidecar
	edge    *runningSidecar
	ingress string // host:port of the edge's first ingress listener
	up      string // the edge's local listener for web
}

func startGatewayMesh(t *testing.T, webConfig map[string]any, edgeConfig func(ingressBind string) map[string]any) *gatewayMesh {
	t.Helper()
	a := consultest.Start(t)
	setProtocol(t, a, "web", "http")
	ports := consultest.FreePorts(t, 5)
	m := &gatewayMesh{agent: a, app: startHTTPApp(t, "web-1"), ingress: addr(ports[4]), up: addr(ports[2])}
	if webConfig == nil {
		webConfig = map[string]any{}
	}
	registerWith(t, a, service{name: "web", id: "web-1", appPort: m.app.port(), publicPort: ports[0]}, webConfig)
	var ec map[string]any
	if edgeConfig != nil {
		ec = edgeConfig(m.ingress)
	}
	registerWith(t, a, service{name: "edge", id: "edge-1", appPort: ports[3], publicPort: ports[1],
		upstreams: []api.Upstream{{DestinationName: "web", LocalBindPort: ports[2]}}}, ec)
	m.web = startSidecar(t, a, sidecar.Options{SidecarFor: "web-1"})
	m.edge = startSidecar(t, a, sidecar.Options{SidecarFor: "edge-1"})
	m.web.waitReady(t)
	m.edge.waitReady(t)
	waitRoutable(t, a, "web", 1)
	eventually(t, 15*time.Second, func() error {
		for _, u := range m.edge.Dump().Upstreams {
			if u.DestinationName == "web" && u.Snapshot != nil && len(u.Snapshot.Endpoints) == 1 && u.Protocol == sidecar.HTTP {
				return nil
			}
		}
		return fmt.Errorf("edge does not see web's endpoint yet")
	})
	return m
}

func do(t *testing.T, c *http.Client, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// TestMeshIngressPlain routes a plain-HTTP ingress listener by host to a
// mesh upstream: the request crosses mesh mTLS to web's sidecar, which
// sees the edge's SPIFFE ID, and the application sees the client's
// address in X-Forwarded-For, not the one the client claimed.
func TestMeshIngressPlain(t *testing.T) {
	t.Parallel()
	m := startGatewayMesh(t, nil, func(bind string) map[string]any {
		return map[string]any{"ingress": []any{map[string]any{
			"bind":   bind,
			"routes": []any{map[string]any{"hosts": []any{"web.example.com"}, "upstream": "web"}},
		}}}
	})
	c := &http.Client{Timeout: 10 * time.Second}
	eventually(t, 10*time.Second, func() error {
		req, _ := http.NewRequest("GET", "http://"+m.ingress+"/echo?x=1", nil)
		req.Host = "web.example.com"
		req.Header.Set("X-Forwarded-For", "6.6.6.6")
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			return fmt.Errorf("%d %s", resp.StatusCode, body)
		}
		if !strings.Contains(string(body), `"path":"/echo?x=1"`) {
			return fmt.Errorf("app saw %s", body)
		}
		if strings.Contains(string(body), "6.6.6.6") {
			return fmt.Errorf("the client's own X-Forwarded-For reached the app: %s", body)
		}
		if !strings.Contains(string(body), `"X-Forwarded-For":["127.0.0.1, 127.0.0.1"]`) || !strings.Contains(string(body), `"X-Forwarded-Proto":["http"]`) {
			return fmt.Errorf("app did not see the client's address: %s", body)
		}
		return nil
	})
	req, _ := http.NewRequest("GET", "http://"+m.ingress+"/", nil)
	req.Host = "other.example.com"
	if resp, body := do(t, c, req); resp.StatusCode != 404 {
		t.Fatalf("unrouted host: %d %s", resp.StatusCode, body)
	}
}

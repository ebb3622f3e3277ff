package sidecar_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/outrider-mesh/outrider/internal/testutil/consultest"
	"github.com/outrider-mesh/outrider/internal/testutil/loadtest"
	"github.com/outrider-mesh/outrider/sidecar"
)

// cutProxy relays TCP to a Consul agent until cut: then it closes its
// listener and every relayed connection, so the sidecars behind it see
// Consul go away (connections reset, new ones refused) until restore.
type cutProxy struct {
	addr, target string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]bool
}

func startCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	p := &cutProxy{addr: addr(consultest.FreePorts(t, 1)[0]), target: target, conns: map[net.Conn]bool{}}
	p.restore(t)
	t.Cleanup(p.cut)
	return p
}

// restore listens again on the same address.
func (p *cutProxy) restore(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		t.Fatalf("cut proxy: %v", err)
	}
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.relay(c)
		}
	}()
}

func (p *cutProxy) relay(c net.Conn) {
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns[c], p.conns[up] = true, true
	p.mu.Unlock()
	go func() { io.Copy(up, c); up.Close() }()
	io.Copy(c, up)
	c.Close()
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, up)
	p.mu.Unlock()
}

// cut closes the listener and every relayed connection.
func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
}

// Consul-mode changes and an outage under steady load, through a client
// sidecar to web's: web's intentions change (the client's allow edited,
// unrelated allows and a wildcard deny added and removed), the client's
// registration gains an upstream (api), and then Consul is cut off from
// both sidecars for two seconds (they keep their leaves, roots, endpoints
// and intentions, and serve on them). No request to web fails; the new
// upstream serves; after Consul returns the sidecars follow it again: the
// removal of the client's allow makes its new requests 403.
func TestConsulChangesAndOutageUnderLoad(t *testing.T) {
	t.Parallel()
	a := consultest.Start(t)
	proxy := startCutProxy(t, a.HTTPAddr)
	cfg := api.DefaultConfig()
	cfg.Address, cfg.Token = proxy.addr, ""
	viaProxyClient, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	viaProxy := &consultest.Agent{HTTPAddr: proxy.addr, Client: viaProxyClient, Node: a.Node, Datacenter: a.Datacenter}
	for _, name := range []string{"web", "api"} {
		if _, _, err := a.Client.ConfigEntries().Set(&api.ServiceConfigEntry{Kind: api.ServiceDefaults, Name: name, Protocol: "http"}, nil); err != nil {
			t.Fatal(err)
		}
	}
	intentions := func(sources ...*api.SourceIntention) {
		t.Helper()
		if _, _, err := a.Client.ConfigEntries().Set(&api.ServiceIntentionsConfigEntry{
			Kind: api.ServiceIntentions, Name: "web", Sources: sources}, nil); err != nil {
			t.Fatal(err)
		}
	}
	allowClient := func(desc string) *api.SourceIntention {
		return &api.SourceIntention{Name: "client", Action: api.IntentionActionAllow, Description: desc}
	}
	intentions(allowClient("v1"), &api.SourceIntention{Name: "other", Action: api.IntentionActionDeny})

	web, apiApp := startHTTPApp(t, "web-1"), startHTTPApp(t, "api-1")
	p := consultest.FreePorts(t, 6)
	webUp, apiUp := addr(p[2]), addr(p[5])
	register(t, a, service{name: "web", id: "web-1", appPort: web.port(), publicPort: p[0]})
	register(t, a, service{name: "api", id: "api-1", appPort: apiApp.port(), publicPort: p[4]})
	webUpstream := api.Upstream{DestinationName: "web", LocalBindAddress: "127.0.0.1", LocalBindPort: p[2]}
	client := service{name: "client", id: "client-1", appPort: p[3], publicPort: p[1], upstreams: []api.Upstream{webUpstream}}
	register(t, a, client)
	startSidecar(t, viaProxy, sidecar.Options{SidecarFor: "web-1"}).waitReady(t)
	startSidecar(t, a, sidecar.Options{SidecarFor: "api-1"}).waitReady(t)
	clientSC := startSidecar(t, viaProxy, sidecar.Options{SidecarFor: "client-1"})
	clientSC.waitReady(t)
	waitRoutable(t, a, "web", 1)
	get := func(url string) error {
		resp, err := http.Get(url)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("GET %s: %d (%s)", url, resp.StatusCode, resp.Header.Get("X-Outrider-Error"))
		}
		return nil
	}
	eventually(t, 20*time.Second, func() error { return get("http://" + webUp + "/echo") })

	load := loadtest.New(t)
	load.Pooled("http://"+webUp+"/echo", 2)
	load.Fresh("http://"+webUp+"/echo", 1)
	load.Held(t, webUp, "/echo", 20*time.Millisecond)

	// Intentions change; the client stays allowed (an exact source
	// outranks the wildcard deny).
	for i, sources := range [][]*api.SourceIntention{
		{allowClient("v2"), {Name: "other", Action: api.IntentionActionDeny}, {Name: "batch", Action: api.IntentionActionAllow}},
		{allowClient("v3"), {Name: "*", Action: api.IntentionActionDeny}},
		{allowClient("v4"), {Name: "batch", Action: api.IntentionActionAllow}, {Name: "*", Action: api.IntentionActionDeny}},
	} {
		intentions(sources...)
		time.Sleep(400 * time.Millisecond)
		if n := load.Failed(); n > 0 {
			t.Fatalf("%d requests failed after intentions change %d", n, i+1)
		}
	}
	// The client's registration gains an upstream: it serves, the
	// existing one goes on.
	client.upstreams = append(client.upstreams, api.Upstream{DestinationName: "api", LocalBindAddress: "127.0.0.1", LocalBindPort: p[5]})
	register(t, a, client)
	eventually(t, 20*time.Second, func() error { return get("http://" + apiUp + "/echo") })

	// Consul goes away for two seconds.
	proxy.cut()
	during := load.Sent()
	time.Sleep(2 * time.Second)
	if n := load.Sent() - during; n < 20 {
		t.Fatalf("only %d requests sent while Consul was cut off", n)
	}
	proxy.restore(t)
	time.Sleep(time.Second)
	load.Check(t, "Consul intentions and registration changes, and a 2s Consul outage, under load", 300)

	// Consul is followed again: removing the client's allow (the wildcard
	// deny remains) refuses its new requests.
	intentions(&api.SourceIntention{Name: "*", Action: api.IntentionActionDeny})
	eventually(t, 20*time.Second, func() error {
		resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Get("http://" + webUp + "/echo")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			return fmt.Errorf("status %d after the client's allow was removed, want 403", resp.StatusCode)
		}
		return nil
	})
}

package sidecar_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/outrider-mesh/outrider/discovery"
	"github.com/outrider-mesh/outrider/internal/testutil/consultest"
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
	rules, err := policy.CompileRules([]policy.Rule{{Allow: true, ID: spiffeid.RequireFromPath(td, "/client")}}, policy.RulesOptions{})
	if err != nil {
		t.Fatal(err)
	}
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

	// One connection held open through every rotation.
	held, err := net.Dial("tcp", tcpUp)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	heldReader := bufio.NewReader(held)
	heldGet := func() error {
		held.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(held, "GET /echo HTTP/1.1\r\nHost: web\r\n\r\n"); err != nil {
			return err
		}
		resp, err := http.ReadResponse(heldReader, nil)
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode != 200 {
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		return err
	}
	if err := heldGet(); err != nil {
		t.Fatalf("held connection: %v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	var sent, failed, rotations atomic.Int64
	var firstErr atomic.Pointer[string]
	fail := func(what string, err error) {
		failed.Add(1)
		msg := what + ": " + err.Error()
		firstErr.CompareAndSwap(nil, &msg)
	}
	var wg sync.WaitGroup
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
	pooled := &http.Client{Timeout: 5 * time.Second}
	fresh := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	worker := func(c *http.Client, url string) {
		for ctx.Err() == nil {
			sent.Add(1)
			resp, err := c.Get(url)
			if err != nil {
				fail(url, err)
				continue
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				fail(url, fmt.Errorf("status %d (%s)", resp.StatusCode, resp.Header.Get("X-Outrider-Error")))
			}
		}
	}
	for range 2 {
		wg.Go(func() { worker(pooled, "http://"+httpUp+"/echo") })
		wg.Go(func() { worker(fresh, "http://"+tcpUp+"/echo") })
	}
	wg.Go(func() {
		for ctx.Err() == nil {
			sent.Add(1)
			if err := heldGet(); err != nil {
				fail("held connection", err)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	wg.Wait()
	pooled.CloseIdleConnections()

	t.Logf("rotation under load: %d requests sent, %d failed, %d SVID rotations per sidecar (one CA rotation), SVID lifetime %s",
		sent.Load(), failed.Load(), rotations.Load(), ttl)
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of %d requests failed during rotations; first: %s", n, sent.Load(), *firstErr.Load())
	}
	if rotations.Load() < 40 || sent.Load() < 100 {
		t.Fatalf("too little happened: %d rotations, %d requests", rotations.Load(), sent.Load())
	}
	for _, admin := range []string{web.admin, client.admin} {
		if n := metricValue(t, admin, "outrider_tls_handshake_failures_total"); n != 0 {
			t.Errorf("%s counted %v handshake failures", admin, n)
		}
	}
}

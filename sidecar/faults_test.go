package sidecar_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/outrider-mesh/outrider/discovery/consul"
	"github.com/outrider-mesh/outrider/internal/testutil"
	"github.com/outrider-mesh/outrider/internal/testutil/consultest"
	"github.com/outrider-mesh/outrider/mtls"
	"github.com/outrider-mesh/outrider/mtls/mtlstest"
	"github.com/outrider-mesh/outrider/sidecar"
)

// closedPromptly asserts that a connection to addr is closed by the sidecar
// without delivering data (the read ends in EOF or a reset).
func closedPromptly(t *testing.T, addr string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "hello")
	n, err := c.Read(make([]byte, 16))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection to %s left open: the sidecar should close it", addr)
	}
	if n != 0 {
		t.Fatalf("read %d bytes from a connection that has nowhere to go", n)
	}
}

func TestNoHealthyUpstreamClosesConnection(t *testing.T) {
	t.Parallel()
	a := consultest.Start(t)
	p := consultest.FreePorts(t, 3)
	register(t, a, service{name: "client", id: "client-1", appPort: p[0], publicPort: p[1],
		upstreams: []api.Upstream{{DestinationName: "nothing", LocalBindPort: p[2]}}})
	logs := &testutil.Buffer{}
	sc := startSidecar(t, a, sidecar.Options{SidecarFor: "client-1", Logger: slog.New(slog.NewTextHandler(logs, nil))})
	sc.waitReady(t)
	closedPromptly(t, addr(p[2]))
	eventually(t, 5*time.Second, func() error {
		if !strings.Contains(logs.String(), "upstream=nothing") || !strings.Contains(logs.String(), balanceNoEndpoint) {
			return errors.New("no log line naming the upstream and the reason")
		}
		return nil
	})
}

const balanceNoEndpoint = "no healthy endpoint"

func TestLocalApplicationDownClosesInbound(t *testing.T) {
	t.Parallel()
	a := consultest.Start(t)
	p := registerPair(t, a, testutil.DeadPort(t)) // nothing listens on web's application port
	logs := &testutil.Buffer{}
	web := startSidecar(t, a, sidecar.Options{SidecarFor: "web-1", Logger: slog.New(slog.NewTextHandler(logs, nil))})
	client := startSidecar(t, a, sidecar.Options{SidecarFor: "client-1"})
	web.waitReady(t)
	client.waitReady(t)
	waitRoutable(t, a, "web", 1)
	eventually(t, 10*time.Second, func() error {
		if len(client.Dump().Upstreams[0].Snapshot.Endpoints) != 1 {
			return errors.New("client sidecar has not seen web yet")
		}
		return nil
	})
	closedPromptly(t, p.upstream)
	eventually(t, 5*time.Second, func() error {
		if !strings.Contains(logs.String(), "local application unreachable") {
			return errors.New("no log line for the unreachable application")
		}
		return nil
	})
}

func TestRejectsUntrustedClientsOnPublicPort(t *testing.T) {
	t.Parallel()
	a := consultest.Start(t)
	app := startEcho(t)
	p := consultest.FreePorts(t, 1)
	register(t, a, service{name: "web", id: "web-1", appPort: app.port(), publicPort: p[0]})
	logs := &testutil.Buffer{}
	sc := startSidecar(t, a, sidecar.Options{SidecarFor: "web-1", Logger: slog.New(slog.NewTextHandler(logs, nil))})
	sc.waitReady(t)

	// Plaintext bytes instead of a ClientHello.
	closedPromptly(t, addr(p[0]))
	// TLS without a client certificate.
	c, err := tls.Dial("tcp", addr(p[0]), &tls.Config{InsecureSkipVerify: true})
	if err == nil {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		_, err = c.Read(make([]byte, 1)) // TLS 1.3: the server's verdict arrives after the client's Finished
		c.Close()
	}
	if err == nil {
		t.Fatal("a client without a certificate was accepted")
	}
	// A certificate for the right trust domain and a valid-looking SPIFFE ID,
	// from a CA that is not Consul's.
	td := strings.TrimPrefix(sc.Dump().Identity.TrustDomain, "spiffe://")
	rogue := mtlstest.NewCA(t, td)
	cert, err := mtls.TLSCertificate(rogue.SVID(t, "spiffe://"+td+"/ns/default/dc/dc1/svc/client"))
	if err != nil {
		t.Fatal(err)
	}
	c, err = tls.Dial("tcp", addr(p[0]), &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{*cert}})
	if err == nil {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		_, err = c.Read(make([]byte, 1))
		c.Close()
	}
	if err == nil {
		t.Fatal("a client with a certificate from another CA was accepted")
	}
	eventually(t, 5*time.Second, func() error {
		if !strings.Contains(logs.String(), "x509svid: could not verify leaf certificate") {
			return errors.New("wrong-CA rejection not logged with its reason")
		}
		if n := strings.Count(logs.String(), "inbound connection rejected"); n < 3 {
			return errors.New("rejections not logged with a reason")
		}
		return nil
	})
	if n := app.accepted.Load(); n != 0 {
		t.Fatalf("rejected connections reached the application %d times", n)
	}
}

func TestSidecarForUnregisteredServiceFails(t *testing.T) {
	t.Parallel()
	a := consultest.Start(t)
	for _, opts := range []sidecar.Options{{SidecarFor: "ghost-1"}, {ProxyID: "ghost-1-sidecar-proxy"}} {
		opts.AdminBind = "127.0.0.1:0"
		sc, err := sidecar.New(a.Client, opts)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = sc.Run(ctx)
		cancel()
		if !errors.Is(err, consul.ErrNoSidecar) {
			t.Fatalf("Run(%+v) = %v, want ErrNoSidecar", opts, err)
		}
		if !strings.Contains(err.Error(), "ghost-1") {
			t.Fatalf("error %q does not name the service", err)
		}
	}
}

func TestConsulUnreachableAtStart(t *testing.T) {
	t.Parallel()
	cfg := api.DefaultConfig()
	cfg.Address = addr(testutil.DeadPort(t)) // nothing listens: Consul is down
	client, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	logs := &testutil.Buffer{}
	sc, err := sidecar.New(client, sidecar.Options{
		SidecarFor: "web-1", AdminBind: "127.0.0.1:0", ConsulAddress: cfg.Address,
		Logger:     slog.New(slog.NewTextHandler(logs, nil)),
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sc.Run(ctx) }()
	admin, err := sc.AdminAddr(ctx)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() error {
		if strings.Count(logs.String(), "cannot reach Consul") < 3 {
			return errors.New("fewer than 3 retries logged")
		}
		return nil
	})
	if !strings.Contains(logs.String(), "consul="+cfg.Address) {
		t.Fatalf("retry log does not name the Consul address %s:\n%s", cfg.Address, logs.String())
	}
	resp, err := http.Get("http://" + admin + "/ready")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "registration") {
		t.Fatalf("/ready = %d %q, want 503 naming the missing registration", resp.StatusCode, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after cancel = %v, want nil", err)
	}
}

// With ACLs enabled and default_policy deny, a connection that no intention
// matches is denied (Consul's IntentionDefaultAllow follows the ACL default);
// an allow intention opens it.
func TestACLDefaultDenyAppliesWithoutIntentions(t *testing.T) {
	t.Parallel()
	a := consultest.Start(t, `acl { enabled = true
  default_policy = "deny"
  tokens { initial_management = "root-token" } }`)
	cfg := api.DefaultConfig()
	cfg.Address, cfg.Token = a.HTTPAddr, "root-token"
	client, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	a.Client = client
	m := &mesh{agent: a, web: startEcho(t)}
	m.upstream = registerPair(t, a, m.web.port()).upstream
	web := startSidecar(t, a, sidecar.Options{SidecarFor: "web-1", TokenSet: true})
	clientSC := startSidecar(t, a, sidecar.Options{SidecarFor: "client-1", TokenSet: true})
	clientSC.waitReady(t)
	web.waitReady(t)
	waitRoutable(t, a, "web", 1)
	if d := web.Dump(); d.Consul.Token != "(redacted)" {
		t.Fatalf("config_dump token = %q, want (redacted)", d.Consul.Token)
	}
	// The denial below must come from policy, not from a discovery gap.
	eventually(t, 10*time.Second, func() error {
		if s := clientSC.Dump().Upstreams[0].Snapshot; s == nil || len(s.Endpoints) != 1 {
			return errors.New("client sidecar has not discovered web yet")
		}
		return nil
	})
	for range 3 {
		if got, err := roundTrip(m.upstream, "default"); err == nil && got == "default" {
			t.Fatal("connection allowed with ACL default deny and no intention")
		}
	}
	if n := m.web.accepted.Load(); n != 0 {
		t.Fatalf("denied connections reached the application %d times", n)
	}
	if d := web.Dump(); d.Stats["connections_denied"] == 0 {
		t.Fatalf("no denial counted: %v", d.Stats)
	}
	setIntention(t, a, "web", "client", api.IntentionActionAllow)
	m.waitFlowing(t)
}

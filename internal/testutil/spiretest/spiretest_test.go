package spiretest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// An entry's SVID is served through go-spiffe's Workload API client and
// verifies against the server's bundle, whose CA has the configured TTL.
func TestSVID(t *testing.T) {
	t.Parallel()
	s := Start(t, "example.org", WithCATTL(6*time.Hour))
	const id = "spiffe://example.org/web"
	s.CreateEntry(t, id)
	s.WaitForSVID(t, id)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	x, err := workloadapi.FetchX509Context(ctx, workloadapi.WithAddr(s.Address()))
	if err != nil {
		t.Fatal(err)
	}
	svid := x.DefaultSVID()
	if svid.ID.String() != id {
		t.Fatalf("SVID %s, want %s", svid.ID, id)
	}
	bundle, err := x509bundle.Parse(s.TrustDomain(), s.Bundle(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := x509svid.Verify(svid.Certificates, bundle); err != nil {
		t.Fatalf("SVID does not verify against the server's bundle: %v", err)
	}
	for _, ca := range bundle.X509Authorities() {
		if life := ca.NotAfter.Sub(ca.NotBefore); life > 6*time.Hour+time.Minute {
			t.Errorf("CA lifetime %v, want 6h (WithCATTL)", life)
		}
	}
	if got := x.Bundles.Len(); got != 1 {
		t.Errorf("%d bundles served, want 1 (own trust domain)", got)
	}
}

// A bundle set for another trust domain is served with the SVID of an
// entry that federates with it.
func TestFederatedBundle(t *testing.T) {
	t.Parallel()
	s := Start(t, "example.org")
	other := spiffeid.RequireTrustDomainFromString("other.test")
	ca := selfSignedCA(t, other)
	s.SetFederatedBundle(t, "other.test", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw}))
	const id = "spiffe://example.org/federated"
	s.CreateEntry(t, id, FederatesWith("other.test"))

	x := s.WaitForSVID(t, id)
	b, err := x.Bundles.GetX509BundleForTrustDomain(other)
	if err != nil {
		t.Fatalf("no bundle for %s: %v", other, err)
	}
	if auth := b.X509Authorities(); len(auth) != 1 || !auth[0].Equal(ca) {
		t.Fatalf("bundle for %s: %d authorities, not the one set", other, len(auth))
	}
	if !x.Bundles.Has(s.TrustDomain()) {
		t.Errorf("own bundle missing from %v", x.Bundles.Bundles())
	}
}

// After an agent restart the agent serves SVIDs again, resuming with the
// SVID it kept on disk (no new attestation), and the node alias is the
// same.
func TestRestartAgent(t *testing.T) {
	t.Parallel()
	s := Start(t, "example.org")
	const id = "spiffe://example.org/web"
	s.CreateEntry(t, id)
	s.WaitForSVID(t, id)

	s.StopAgent(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := workloadapi.FetchX509Context(ctx, workloadapi.WithAddr(s.Address())); err == nil {
		t.Fatal("Workload API answered with the agent stopped")
	}
	s.StartAgent(t)
	s.WaitForSVID(t, id)
	s.RestartAgent(t)
	s.WaitForSVID(t, id)

	// Every run after the first resumed: the server saw one attestation.
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := len(s.agents); n != 3 {
		t.Fatalf("%d agent runs, want 3", n)
	}
	for i, a := range s.agents[1:] {
		if log := a.log.String(); !strings.Contains(log, "SVID loaded") || strings.Contains(log, "Node attestation was successful") {
			t.Errorf("agent run %d attested again instead of loading its SVID:\n%s", i+2, log)
		}
	}
}

// With a short TTL the agent rotates the workload SVID and pushes the new
// one to a watching client.
func TestRotation(t *testing.T) {
	t.Parallel()
	const ttl = 30 * time.Second
	s := Start(t, "example.org", WithSVIDTTL(ttl))
	const id = "spiffe://example.org/web"
	s.CreateEntry(t, id)
	first := s.WaitForSVID(t, id).DefaultSVID()
	if lifetime := first.Certificates[0].NotAfter.Sub(first.Certificates[0].NotBefore); lifetime > ttl+time.Minute {
		t.Fatalf("SVID lifetime %v, want about %v", lifetime, ttl)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*ttl)
	defer cancel()
	client, err := workloadapi.New(ctx, workloadapi.WithAddr(s.Address()))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	updates := make(chan *workloadapi.X509Context, 16)
	done := make(chan error, 1)
	go func() { done <- client.WatchX509Context(ctx, watcher{updates}) }()
	start := time.Now()
	for {
		select {
		case x := <-updates:
			svid := x.DefaultSVID()
			if svid.ID.String() == id && svid.Certificates[0].SerialNumber.Cmp(first.Certificates[0].SerialNumber) != 0 {
				t.Logf("rotated %v after the first SVID was issued (%v into the watch)",
					time.Since(first.Certificates[0].NotBefore.Add(10*time.Second)).Round(time.Second),
					time.Since(start).Round(time.Second))
				cancel()
				<-done
				return
			}
		case err := <-done:
			t.Fatalf("watch ended without a rotation: %v", err)
		}
	}
}

type watcher struct {
	updates chan<- *workloadapi.X509Context
}

func (w watcher) OnX509ContextUpdate(x *workloadapi.X509Context) {
	select {
	case w.updates <- x:
	default:
	}
}

func (watcher) OnX509ContextWatchError(error) {}

// An entry the server refuses fails the test with SPIRE's reason.
func TestCreateEntryRefused(t *testing.T) {
	t.Parallel()
	s := Start(t, "example.org")
	ft := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.CreateEntry(ft, "spiffe://example.org/x", FederatesWith("unknown.test"))
	}()
	<-done
	if !ft.failed || !strings.Contains(ft.msg, "unable to find federated bundle") {
		t.Fatalf("CreateEntry with an unknown federated trust domain: failed=%v %q", ft.failed, ft.msg)
	}
}

// fakeTB records a Fatalf instead of failing the test.
type fakeTB struct {
	testing.TB
	failed bool
	msg    string
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed = true
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func selfSignedCA(t *testing.T, td spiffeid.TrustDomain) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(td.IDString())
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: td.Name()},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		URIs:                  []*url.URL{u},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

package devca_test

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/outrider-mesh/outrider/internal/testutil"
	"github.com/outrider-mesh/outrider/mtls/devca"
)

var (
	td  = spiffeid.RequireTrustDomainFromString("example.org")
	web = spiffeid.RequireFromString("spiffe://example.org/web")
)

func newCA(t *testing.T, opts ...devca.Option) *devca.CA {
	t.Helper()
	ca, err := devca.New(td, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func TestDevCANew(t *testing.T) {
	t.Parallel()
	before := time.Now()
	ca := newCA(t)
	root := ca.Root()
	if !root.IsCA || root.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("root: IsCA %v, key usage %b", root.IsCA, root.KeyUsage)
	}
	if len(root.URIs) != 1 || root.URIs[0].String() != "spiffe://example.org" {
		t.Errorf("root URI SANs = %v, want [spiffe://example.org]", root.URIs)
	}
	if got := root.NotAfter.Sub(before); got < devca.DefaultValidity-time.Minute || got > devca.DefaultValidity+time.Minute {
		t.Errorf("root valid for %s, want about %s", got, devca.DefaultValidity)
	}
	if ca.TrustDomain() != td {
		t.Errorf("trust domain %s", ca.TrustDomain())
	}
	if b := ca.Bundle(); b.TrustDomain() != td || !b.HasX509Authority(root) || len(b.X509Authorities()) != 1 {
		t.Errorf("bundle %v does not hold just the root", b.X509Authorities())
	}

	short := newCA(t, devca.WithValidity(2*time.Hour))
	if got := short.Root().NotAfter.Sub(before); got < time.Hour || got > 3*time.Hour {
		t.Errorf("WithValidity(2h): root valid for %s", got)
	}
	if _, err := devca.New(td, devca.WithValidity(-time.Hour)); err == nil {
		t.Error("negative validity accepted")
	}
	if _, err := devca.New(spiffeid.TrustDomain{}); err == nil {
		t.Error("empty trust domain accepted")
	}
}

func TestDevCAMintVerifies(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	before := time.Now()
	svid, err := ca.Mint(web, time.Hour, "web.example.org", "web")
	if err != nil {
		t.Fatal(err)
	}
	id, chains, err := x509svid.Verify(svid.Certificates, ca.Bundle())
	if err != nil {
		t.Fatalf("minted SVID does not verify: %v", err)
	}
	if id != web || svid.ID != web || len(chains) != 1 {
		t.Errorf("verified %s (SVID.ID %s, %d chains), want %s", id, svid.ID, len(chains), web)
	}

	leaf := svid.Certificates[0]
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != web.String() {
		t.Errorf("URI SANs %v, want exactly [%s]", leaf.URIs, web)
	}
	if want := x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageKeyAgreement; leaf.KeyUsage != want {
		t.Errorf("key usage %b, want %b", leaf.KeyUsage, want)
	}
	if want := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}; !slices.Equal(leaf.ExtKeyUsage, want) {
		t.Errorf("extended key usage %v, want %v", leaf.ExtKeyUsage, want)
	}
	if leaf.IsCA || !leaf.BasicConstraintsValid {
		t.Errorf("IsCA %v, basic constraints valid %v; want a non-CA leaf", leaf.IsCA, leaf.BasicConstraintsValid)
	}
	if d := before.Sub(leaf.NotBefore); d < 50*time.Second || d > 70*time.Second {
		t.Errorf("NotBefore %s before issuance, want about a minute", d)
	}
	if d := leaf.NotAfter.Sub(before); d < time.Hour-time.Minute || d > time.Hour+time.Minute {
		t.Errorf("valid for %s, want about 1h", d)
	}
	if !slices.Equal(leaf.DNSNames, []string{"web.example.org", "web"}) || leaf.Subject.CommonName != "web.example.org" {
		t.Errorf("DNS SANs %v, CN %q", leaf.DNSNames, leaf.Subject.CommonName)
	}

	// go-spiffe's own SVID checks (key usage, not a CA, key matches leaf).
	certPEM, keyPEM, err := svid.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x509svid.Parse(certPEM, keyPEM); err != nil {
		t.Errorf("x509svid.Parse rejects a minted SVID: %v", err)
	}

	// Another CA of the same trust domain does not vouch for it.
	if _, _, err := x509svid.Verify(svid.Certificates, newCA(t).Bundle()); err == nil {
		t.Error("SVID verified against another root")
	}
}

func TestDevCAMintRejects(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	for _, c := range []struct {
		name string
		id   spiffeid.ID
		ttl  time.Duration
		dns  []string
		want string
	}{
		{"other trust domain", spiffeid.RequireFromString("spiffe://other.org/web"), time.Hour, nil, "not in the CA's trust domain"},
		{"no path", td.ID(), time.Hour, nil, "add a path"},
		{"zero ID", spiffeid.ID{}, time.Hour, nil, "empty SPIFFE ID"},
		{"zero ttl", web, 0, nil, "ttl must be positive"},
		{"empty DNS name", web, time.Hour, []string{""}, "empty DNS name"},
	} {
		if _, err := ca.Mint(c.id, c.ttl, c.dns...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}
}

func TestDevCAMintCappedAtRootExpiry(t *testing.T) {
	t.Parallel()
	ca := newCA(t, devca.WithValidity(time.Hour))
	svid, err := ca.Mint(web, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := svid.Certificates[0].NotAfter, ca.Root().NotAfter; !got.Equal(want) {
		t.Errorf("leaf NotAfter %s, want the root's %s", got, want)
	}
}

func TestDevCASaveLoad(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "ca")
	ca := newCA(t)
	if err := ca.Save(dir); err != nil {
		t.Fatal(err)
	}
	testutil.WantFileModes(t, dir, map[string]os.FileMode{
		devca.CAFile: 0o644, devca.CAKeyFile: 0o600, devca.BundleFile: 0o644,
	})
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("CA directory: %v, %v; want mode 0700", fi.Mode(), err)
	}

	loaded, err := devca.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if loaded.TrustDomain() != td || !loaded.Root().Equal(ca.Root()) {
		t.Fatalf("loaded CA %s %s differs from the saved one", loaded.TrustDomain(), loaded.Root().Subject)
	}
	svid, err := loaded.Mint(web, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := x509bundle.Load(td, filepath.Join(dir, devca.BundleFile))
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string]*x509bundle.Bundle{"saved bundle.pem": bundle, "original CA": ca.Bundle()} {
		if id, _, err := x509svid.Verify(svid.Certificates, b); err != nil || id != web {
			t.Errorf("SVID of the reloaded CA against the %s: %s, %v", name, id, err)
		}
	}
	noTempFiles(t, dir)
}

func TestDevCAParseRejects(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	a, b := newCA(t), newCA(t)
	if err := a.Save(filepath.Join(dir, "a")); err != nil {
		t.Fatal(err)
	}
	if err := b.Save(filepath.Join(dir, "b")); err != nil {
		t.Fatal(err)
	}
	read := func(ca, name string) []byte {
		data, err := os.ReadFile(filepath.Join(dir, ca, name))
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	svid, err := a.Mint(web, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	leafPEM, leafKeyPEM, err := svid.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		cert, key []byte
		want      string
	}{
		{"key of another CA", read("a", devca.CAFile), read("b", devca.CAKeyFile), "does not match"},
		{"leaf as CA", leafPEM, leafKeyPEM, "not a CA"},
		{"no PEM", []byte("garbage"), read("a", devca.CAKeyFile), "no PEM CERTIFICATE block"},
		{"key missing", read("a", devca.CAFile), nil, "CA key: no PEM block"},
	} {
		if _, err := devca.Parse(c.cert, c.key); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}
	if _, err := devca.Load(filepath.Join(dir, "missing")); err == nil {
		t.Error("Load of a missing directory succeeded")
	}
}

func TestDevCAWriteSVID(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	svid, err := ca.Mint(web, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "web")
	if err := devca.WriteBundle(dir, ca.Bundle()); err != nil {
		t.Fatal(err)
	}
	if err := devca.WriteSVID(dir, svid); err != nil {
		t.Fatal(err)
	}
	testutil.WantFileModes(t, dir, map[string]os.FileMode{
		devca.SVIDFile: 0o644, devca.SVIDKeyFile: 0o600, devca.BundleFile: 0o644,
	})
	loaded, err := x509svid.Load(filepath.Join(dir, devca.SVIDFile), filepath.Join(dir, devca.SVIDKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := x509bundle.Load(td, filepath.Join(dir, devca.BundleFile))
	if err != nil {
		t.Fatal(err)
	}
	if id, _, err := x509svid.Verify(loaded.Certificates, bundle); err != nil || id != web {
		t.Errorf("written SVID against the written bundle: %s, %v", id, err)
	}
	keyBlock, _ := pem.Decode(mustRead(t, filepath.Join(dir, devca.SVIDKeyFile)))
	if keyBlock == nil || keyBlock.Type != "PRIVATE KEY" {
		t.Errorf("svid-key.pem is not PKCS#8")
	}
	noTempFiles(t, dir)

	if err := devca.WriteSVID(dir, nil); err == nil {
		t.Error("WriteSVID(nil) succeeded")
	}
	if err := devca.WriteBundle(dir, x509bundle.New(td)); err == nil {
		t.Error("WriteBundle of an empty bundle succeeded")
	}
}

// A reader polling svid.pem while SVIDs are rewritten never sees half a
// file: every read parses to a complete chain.
func TestDevCAWriteIsAtomic(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	dir := t.TempDir()
	svid, err := ca.Mint(web, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := devca.WriteSVID(dir, svid); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			data, err := os.ReadFile(filepath.Join(dir, devca.SVIDFile))
			if err != nil {
				t.Errorf("read: %v", err)
				return
			}
			block, rest := pem.Decode(data)
			if block == nil || len(rest) != 0 {
				t.Errorf("read a partial svid.pem (%d bytes)", len(data))
				return
			}
			if _, err := x509.ParseCertificate(block.Bytes); err != nil {
				t.Errorf("read a corrupt svid.pem: %v", err)
				return
			}
		}
	})
	for range 50 {
		if err := devca.WriteSVID(dir, svid); err != nil {
			t.Error(err)
			break
		}
	}
	close(stop)
	wg.Wait()
	noTempFiles(t, dir)
}

func ExampleCA_Mint() {
	ca, err := devca.New(spiffeid.RequireTrustDomainFromString("example.org"))
	if err != nil {
		panic(err)
	}
	svid, err := ca.Mint(spiffeid.RequireFromString("spiffe://example.org/web"), 24*time.Hour)
	if err != nil {
		panic(err)
	}
	id, _, err := x509svid.Verify(svid.Certificates, ca.Bundle())
	fmt.Println(id, err)
	// Output: spiffe://example.org/web <nil>
}

func noTempFiles(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".tmp") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

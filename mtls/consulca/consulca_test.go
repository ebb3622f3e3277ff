package consulca

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"go.uber.org/goleak"

	"github.com/outrider-mesh/outrider/discovery/consul"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	testTD     = "11111111-2222-3333-4444-555555555555.consul"
	testLeafID = "spiffe://" + testTD + "/ns/default/dc/dc1/svc/web"
)

var update = flag.Bool("update", false, "regenerate the PEM files in testdata")

func readTestdata(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestParseLeaf(t *testing.T) {
	t.Parallel()
	roots, err := parseRoots(&api.CARootList{
		TrustDomain: testTD,
		Roots:       []*api.CARoot{{ID: "a", RootCertPEM: readTestdata(t, "root.pem")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		cert, key string // PEM text
		wantChain int    // certificates in the SVID when no error
		wantErr   string // substring; "" means success
	}{
		{name: "SEC1 EC key (Consul's format)", cert: "leaf.pem", key: "leaf-ec.key", wantChain: 1},
		{name: "PKCS#8 key", cert: "leaf.pem", key: "leaf-pkcs8.key", wantChain: 1},
		{name: "PKCS#1 RSA key (Consul with PrivateKeyType rsa)", cert: "leaf-rsa.pem", key: "leaf-rsa.key", wantChain: 1},
		{name: "chain with an intermediate", cert: "leaf-chain.pem", key: "leaf-chain.key", wantChain: 2},
		{name: "no certificate", cert: "", key: "leaf-ec.key", wantErr: "leaf has no certificate"},
		{name: "only a key where the certificate goes", cert: "leaf-ec.key", key: "leaf-ec.key", wantErr: "leaf has no certificate"},
		{name: "no key", cert: "leaf.pem", key: "", wantErr: "leaf has no private key"},
		{name: "key is not PEM", cert: "leaf.pem", key: "!not pem", wantErr: "leaf has no private key"},
		{name: "garbage SEC1 key", cert: "leaf.pem", key: "!EC PRIVATE KEY", wantErr: "leaf key"},
		{name: "garbage PKCS#1 key", cert: "leaf.pem", key: "!RSA PRIVATE KEY", wantErr: "leaf key"},
		{name: "garbage PKCS#8 key", cert: "leaf.pem", key: "!PRIVATE KEY", wantErr: "cannot parse DER encoded private key"},
		{name: "key of another certificate", cert: "leaf.pem", key: "other.key", wantErr: "does not match"},
		{name: "CA certificate as leaf", cert: "root.pem", key: "leaf-ec.key", wantErr: "certificate validation failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			lc := &api.LeafCert{SerialNumber: "01:02", CertPEM: pemInput(t, tt.cert), PrivateKeyPEM: pemInput(t, tt.key)}
			l, err := parseLeaf(lc)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseLeaf error = %v, want one containing %q", err, tt.wantErr)
				}
				if !strings.HasPrefix(err.Error(), "consulca: ") {
					t.Errorf("error %q lacks the package prefix", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseLeaf: %v", err)
			}
			if got := l.svid.ID.String(); got != testLeafID {
				t.Errorf("ID = %s, want %s", got, testLeafID)
			}
			if l.serial != "01:02" {
				t.Errorf("serial = %q, want Consul's %q", l.serial, "01:02")
			}
			if len(l.svid.Certificates) != tt.wantChain || len(l.cert.Certificate) != tt.wantChain {
				t.Errorf("chain: SVID has %d certificates, TLS certificate %d; want %d",
					len(l.svid.Certificates), len(l.cert.Certificate), tt.wantChain)
			}
			if l.cert.Leaf != l.svid.Certificates[0] || l.cert.PrivateKey != l.svid.PrivateKey {
				t.Error("TLS certificate does not carry the SVID's leaf and key")
			}
			// The leaf and the chain Consul sent verify against Consul's roots.
			if id, _, err := x509svid.Verify(l.svid.Certificates, roots.bundle); err != nil || id != l.svid.ID {
				t.Errorf("Verify against the roots = %v, %v", id, err)
			}
		})
	}
}

// pemInput resolves a test input: "" is empty, "!TYPE" is a PEM block of
// that type holding garbage, "!text" without a type is that text, anything
// else names a testdata file.
func pemInput(t testing.TB, s string) string {
	t.Helper()
	switch {
	case s == "":
		return ""
	case strings.HasPrefix(s, "!") && strings.ToUpper(s) == s:
		return string(pem.EncodeToMemory(&pem.Block{Type: s[1:], Bytes: []byte("garbage")}))
	case strings.HasPrefix(s, "!"):
		return s[1:]
	}
	return readTestdata(t, s)
}

func TestParseRoots(t *testing.T) {
	t.Parallel()
	rootA, rootB := readTestdata(t, "root.pem"), readTestdata(t, "root-b.pem")
	tests := []struct {
		name    string
		list    api.CARootList
		wantIDs []string
		wantErr string
	}{
		{
			name:    "one root",
			list:    api.CARootList{ActiveRootID: "a", TrustDomain: testTD, Roots: []*api.CARoot{{ID: "a", RootCertPEM: rootA, Active: true}}},
			wantIDs: []string{"a"},
		},
		{
			name: "rotation: active and previous root",
			list: api.CARootList{ActiveRootID: "b", TrustDomain: testTD, Roots: []*api.CARoot{
				{ID: "a", RootCertPEM: rootA},
				{ID: "b", RootCertPEM: rootB, Active: true},
			}},
			wantIDs: []string{"a", "b"},
		},
		{
			name:    "bad trust domain",
			list:    api.CARootList{TrustDomain: "Not A Domain!", Roots: []*api.CARoot{{ID: "a", RootCertPEM: rootA}}},
			wantErr: `trust domain "Not A Domain!"`,
		},
		{
			name:    "empty trust domain",
			list:    api.CARootList{Roots: []*api.CARoot{{ID: "a", RootCertPEM: rootA}}},
			wantErr: "trust domain",
		},
		{
			name:    "no roots",
			list:    api.CARootList{TrustDomain: testTD},
			wantErr: "no CA roots",
		},
		{
			name:    "root without a certificate",
			list:    api.CARootList{TrustDomain: testTD, Roots: []*api.CARoot{{ID: "a", RootCertPEM: readTestdata(t, "other.key")}}},
			wantErr: "root a: no certificate in PEM",
		},
		{
			name:    "root with a garbage certificate",
			list:    api.CARootList{TrustDomain: testTD, Roots: []*api.CARoot{{ID: "a", RootCertPEM: pemInput(t, "!CERTIFICATE")}}},
			wantErr: "root a: x509:",
		},
		{
			name: "one bad root spoils the list",
			list: api.CARootList{TrustDomain: testTD, Roots: []*api.CARoot{
				{ID: "a", RootCertPEM: rootA},
				{ID: "b", RootCertPEM: ""},
			}},
			wantErr: "root b: no certificate in PEM",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, err := parseRoots(&tt.list)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseRoots error = %v, want one containing %q", err, tt.wantErr)
				}
				if !strings.HasPrefix(err.Error(), "consulca: ") {
					t.Errorf("error %q lacks the package prefix", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseRoots: %v", err)
			}
			if r.td.Name() != testTD || r.bundle.TrustDomain() != r.td {
				t.Errorf("trust domain = %s (bundle %s), want %s", r.td, r.bundle.TrustDomain(), testTD)
			}
			if fmt.Sprint(r.ids) != fmt.Sprint(tt.wantIDs) {
				t.Errorf("ids = %v, want %v", r.ids, tt.wantIDs)
			}
			if n := len(r.bundle.X509Authorities()); n != len(tt.wantIDs) {
				t.Errorf("bundle has %d authorities, want %d", n, len(tt.wantIDs))
			}
		})
	}
}

func FuzzParseLeaf(f *testing.F) {
	for _, files := range [][2]string{
		{"leaf.pem", "leaf-ec.key"}, {"leaf.pem", "leaf-pkcs8.key"},
		{"leaf-rsa.pem", "leaf-rsa.key"}, {"leaf-chain.pem", "leaf-chain.key"},
	} {
		f.Add(readTestdata(f, files[0]), readTestdata(f, files[1]))
	}
	f.Fuzz(func(t *testing.T, certPEM, keyPEM string) {
		l, err := parseLeaf(&api.LeafCert{CertPEM: certPEM, PrivateKeyPEM: keyPEM})
		if err == nil && (l.svid == nil || l.cert == nil || l.svid.ID.IsZero()) {
			t.Fatalf("parseLeaf returned an incomplete leaf without error: %+v", l)
		}
	})
}

func FuzzParseRoots(f *testing.F) {
	f.Add(testTD, readTestdata(f, "root.pem"))
	f.Add(testTD, readTestdata(f, "root.pem")+readTestdata(f, "root-b.pem"))
	f.Fuzz(func(t *testing.T, td, rootPEM string) {
		r, err := parseRoots(&api.CARootList{TrustDomain: td, Roots: []*api.CARoot{{ID: "x", RootCertPEM: rootPEM}}})
		if err == nil && (r.bundle.Empty() || r.td.IsZero()) {
			t.Fatalf("parseRoots returned an empty bundle without error")
		}
	})
}

// fakeConsul serves the Consul agent's two Connect CA endpoints with
// blocking-query semantics: a request whose index equals the current one
// waits for a change, for its wait parameter, or for the client to go away.
type fakeConsul struct {
	mu       sync.Mutex
	changed  chan struct{} // closed and replaced on every change
	leaf     api.LeafCert
	leafIdx  uint64
	roots    api.CARootList
	rootsIdx uint64
	failing  map[string]bool // by endpoint: "leaf", "roots"
}

func newFakeConsul(leaf api.LeafCert, roots api.CARootList) *fakeConsul {
	return &fakeConsul{
		changed:  make(chan struct{}),
		leaf:     leaf,
		leafIdx:  10,
		roots:    roots,
		rootsIdx: 20,
		failing:  map[string]bool{},
	}
}

// change applies fn under the lock and wakes every blocked query.
func (f *fakeConsul) change(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn()
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *fakeConsul) setLeaf(lc api.LeafCert) { f.change(func() { f.leaf = lc; f.leafIdx++ }) }

func (f *fakeConsul) setFailing(endpoint string, fail bool) {
	f.change(func() { f.failing[endpoint] = fail })
}

// current returns an endpoint's index, body, whether it is failing, and
// the channel that is closed on the next change.
func (f *fakeConsul) current(endpoint string) (uint64, any, bool, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if endpoint == "leaf" {
		return f.leafIdx, f.leaf, f.failing[endpoint], f.changed
	}
	return f.rootsIdx, f.roots, f.failing[endpoint], f.changed
}

func (f *fakeConsul) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var endpoint string
	switch r.URL.Path {
	case "/v1/agent/connect/ca/roots":
		endpoint = "roots"
	case "/v1/agent/connect/ca/leaf/web":
		endpoint = "leaf"
	default:
		http.NotFound(w, r)
		return
	}
	q := r.URL.Query()
	index, _ := strconv.ParseUint(q.Get("index"), 10, 64)
	wait, err := time.ParseDuration(q.Get("wait"))
	if err != nil || wait <= 0 || wait > 10*time.Second {
		wait = 10 * time.Second
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		idx, body, failing, changed := f.current(endpoint)
		if failing {
			http.Error(w, "fake consul: injected failure", http.StatusInternalServerError)
			return
		}
		if index == 0 || index != idx {
			w.Header().Set("X-Consul-Index", strconv.FormatUint(idx, 10))
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(body)
			return
		}
		select {
		case <-changed:
		case <-timer.C:
			index = 0 // answer with the unchanged index, as Consul does
		case <-r.Context().Done():
			return
		}
	}
}

func parseCertPEM(t testing.TB, certPEM string) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode([]byte(certPEM))
	if b == nil {
		t.Fatal("no PEM certificate")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// consulSerial formats a serial number as Consul's LeafCert.SerialNumber.
func consulSerial(c *x509.Certificate) string {
	var parts []string
	for _, x := range c.SerialNumber.Bytes() {
		parts = append(parts, fmt.Sprintf("%02x", x))
	}
	return strings.Join(parts, ":")
}

func leafCert(t testing.TB, certFile, keyFile string) api.LeafCert {
	t.Helper()
	certPEM := readTestdata(t, certFile)
	return api.LeafCert{
		SerialNumber:  consulSerial(parseCertPEM(t, certPEM)),
		CertPEM:       certPEM,
		PrivateKeyPEM: readTestdata(t, keyFile),
		Service:       "web",
		ServiceURI:    testLeafID,
	}
}

// eventually polls cond until it holds or the test's bound passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSource(t *testing.T) {
	t.Parallel()
	fake := newFakeConsul(leafCert(t, "leaf.pem", "leaf-ec.key"), api.CARootList{
		ActiveRootID: "b",
		TrustDomain:  testTD,
		Roots: []*api.CARoot{
			{ID: "a", Name: "previous", RootCertPEM: readTestdata(t, "root.pem")},
			{ID: "b", Name: "active", RootCertPEM: readTestdata(t, "root-b.pem"), Active: true},
		},
	})
	fake.setFailing("roots", true) // the leaf loads first; Ready must wait for the roots
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	client, err := api.NewClient(&api.Config{Address: srv.URL, HttpClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	src := New(client, "web",
		consul.WithBackoff(10*time.Millisecond, 50*time.Millisecond),
		consul.WithWaitTime(200*time.Millisecond))

	if _, err := src.GetX509SVID(); err == nil {
		t.Error("GetX509SVID succeeded before Run")
	}
	ctx, cancel := context.WithCancel(t.Context())
	runErr := make(chan error, 1)
	go func() { runErr <- src.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-runErr; !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v, want context.Canceled", err)
		}
	})

	eventually(t, "the leaf to load while the roots fail", func() bool {
		st := src.Detail()
		return st.LeafSerial != "" && st.Watches[1].Failures > 0
	})
	select {
	case <-src.Ready():
		t.Fatal("Ready closed before the roots loaded")
	default:
	}
	if _, err := src.GetX509BundleForTrustDomain(spiffeid.RequireTrustDomainFromString(testTD)); err == nil {
		t.Error("bundle served before the roots loaded")
	}

	fake.setFailing("roots", false)
	select {
	case <-src.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("Ready not closed after the leaf and the roots loaded")
	}

	td, err := src.TrustDomain()
	if err != nil || td.Name() != testTD {
		t.Fatalf("TrustDomain = %v, %v", td, err)
	}
	if _, err := src.GetX509BundleForTrustDomain(td); err != nil {
		t.Errorf("own trust domain: %v", err)
	}
	other := spiffeid.RequireTrustDomainFromString("example.org")
	if _, err := src.GetX509BundleForTrustDomain(other); err == nil || !strings.Contains(err.Error(), "example.org") {
		t.Errorf("another trust domain: error = %v, want one naming it", err)
	}
	svid, err := src.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	if id, _, err := x509svid.Verify(svid.Certificates, src); err != nil || id.String() != testLeafID {
		t.Errorf("the leaf does not verify against the roots from Consul: %v, %v", id, err)
	}
	st := src.Detail()
	if st.LeafID != testLeafID || st.TrustDomain != testTD || fmt.Sprint(st.RootIDs) != "[a b]" ||
		st.Watches[0].Index != 10 || st.Watches[1].Index != 20 || st.NotAfter.IsZero() {
		t.Errorf("Status = %+v", st)
	}

	// Consul rotates the leaf: the blocked query wakes and the new leaf is
	// served from the next handshake on.
	rotated := leafCert(t, "leaf-rsa.pem", "leaf-rsa.key")
	fake.setLeaf(rotated)
	eventually(t, "the rotated leaf", func() bool { return src.Detail().LeafSerial == rotated.SerialNumber })
	cert, err := src.Certificate()
	if err != nil || consulSerial(cert.Leaf) != rotated.SerialNumber {
		t.Fatalf("Certificate after rotation = %v, %v", cert, err)
	}
	if st := src.Detail(); st.Watches[0].Index != 11 {
		t.Errorf("leaf index after rotation = %d, want 11", st.Watches[0].Index)
	}

	// Consul fails: the last good leaf and roots keep being served, and
	// Status says they are stale.
	fake.setFailing("leaf", true)
	fake.setFailing("roots", true)
	eventually(t, "both watches to report failures", func() bool {
		st := src.Detail()
		return st.Watches[0].Failures >= 2 && st.Watches[1].Failures >= 2
	})
	st = src.Detail()
	for _, w := range st.Watches {
		if !w.Stale() || !strings.Contains(w.LastError, "500") || w.LastSuccess.IsZero() {
			t.Errorf("watch status during failure = %+v", w)
		}
	}
	if st.LeafSerial != rotated.SerialNumber {
		t.Errorf("Status leaf serial during failure = %q, want the last good %q", st.LeafSerial, rotated.SerialNumber)
	}
	if got, err := src.Certificate(); err != nil || got != cert {
		t.Errorf("Certificate during failure = %v, %v; want the last good one", got, err)
	}
	if _, err := src.GetX509BundleForTrustDomain(td); err != nil {
		t.Errorf("bundle during failure: %v", err)
	}

	fake.setFailing("leaf", false)
	fake.setFailing("roots", false)
	eventually(t, "the watches to recover", func() bool {
		st := src.Detail()
		return !st.Watches[0].Stale() && !st.Watches[1].Stale()
	})
}

// TestGenerateTestdata rewrites testdata/ (go test -run TestGenerateTestdata
// -update). The certificates are valid for a century so that the committed
// files never expire; parseLeaf and parseRoots do not check validity.
func TestGenerateTestdata(t *testing.T) {
	if !*update {
		t.Skip("run with -update to regenerate testdata")
	}
	notBefore := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	notAfter := notBefore.AddDate(100, 0, 0)
	tdURI, _ := url.Parse("spiffe://" + testTD)
	leafURI, _ := url.Parse(testLeafID)
	files := map[string][]byte{}
	ecKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	sec1 := func(k *ecdsa.PrivateKey) []byte {
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
	}
	certPEM := func(c *x509.Certificate) []byte {
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	issue := func(serial int64, tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) *x509.Certificate {
		tmpl.SerialNumber = big.NewInt(serial)
		tmpl.NotBefore, tmpl.NotAfter = notBefore, notAfter
		tmpl.BasicConstraintsValid = true
		if parent == nil {
			parent = tmpl
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	caTmpl := func(cn string) *x509.Certificate {
		return &x509.Certificate{
			Subject:  pkix.Name{CommonName: cn},
			IsCA:     true,
			KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
			URIs:     []*url.URL{tdURI},
		}
	}
	leafTmpl := func() *x509.Certificate { // as Consul issues them
		return &x509.Certificate{
			Subject:     pkix.Name{CommonName: "web"},
			KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageKeyAgreement,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			URIs:        []*url.URL{leafURI},
		}
	}

	rootKey, rootBKey := ecKey(), ecKey()
	root := issue(1, caTmpl("Consul CA 1"), nil, &rootKey.PublicKey, rootKey)
	rootB := issue(2, caTmpl("Consul CA 2"), nil, &rootBKey.PublicKey, rootBKey)
	files["root.pem"] = certPEM(root)
	files["root-b.pem"] = certPEM(rootB)

	leafKey := ecKey()
	leaf := issue(16, leafTmpl(), root, &leafKey.PublicKey, rootKey)
	files["leaf.pem"] = certPEM(leaf)
	files["leaf-ec.key"] = sec1(leafKey)
	p8, err := x509.MarshalPKCS8PrivateKey(leafKey)
	if err != nil {
		t.Fatal(err)
	}
	files["leaf-pkcs8.key"] = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8})

	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaLeaf := issue(17, leafTmpl(), root, &rsaKey.PublicKey, rootKey)
	files["leaf-rsa.pem"] = certPEM(rsaLeaf)
	files["leaf-rsa.key"] = pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)})

	interKey := ecKey()
	inter := issue(3, caTmpl("Consul CA Intermediate"), root, &interKey.PublicKey, rootKey)
	chainKey := ecKey()
	chainLeaf := issue(18, leafTmpl(), inter, &chainKey.PublicKey, interKey)
	files["leaf-chain.pem"] = append(certPEM(chainLeaf), certPEM(inter)...)
	files["leaf-chain.key"] = sec1(chainKey)

	files["other.key"] = sec1(ecKey())

	for name, b := range files {
		if err := os.WriteFile(filepath.Join("testdata", name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

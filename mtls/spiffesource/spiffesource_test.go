package spiffesource

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/outrider-mesh/outrider/internal/backoff"
	"github.com/outrider-mesh/outrider/internal/testutil"
	"github.com/outrider-mesh/outrider/mtls"
	"github.com/outrider-mesh/outrider/mtls/mtlstest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	testTD  = "example.org"
	otherTD = "other.org"
	testID  = "spiffe://" + testTD + "/ns/default/sa/web"
)

// waitTimeout bounds every wait for the source to reach a state.
const waitTimeout = mtlstest.WaitTimeout

// fakeAgent is a SPIFFE Workload API served by a real gRPC server on a unix
// socket, as a SPIRE agent serves it. It answers FetchX509SVID only, and,
// like SPIRE, only to requests carrying the "workload.spiffe.io: true"
// header. Every stream is sent the current response when it opens and
// again on every push.
type fakeAgent struct {
	workload.UnimplementedSpiffeWorkloadAPIServer
	t    *testing.T
	path string

	mu      sync.Mutex
	refuse  codes.Code // non-OK: every request fails with it
	calls   int        // FetchX509SVID requests received
	resp    *workload.X509SVIDResponse
	changed chan struct{} // closed and replaced by push
	srv     *grpc.Server
	served  chan struct{} // closed when srv.Serve returned
}

func newFakeAgent(t *testing.T) *fakeAgent {
	a := &fakeAgent{t: t, path: filepath.Join(t.TempDir(), "agent.sock"), changed: make(chan struct{})}
	t.Cleanup(a.stop)
	return a
}

// addr is the Workload API address of the agent.
func (a *fakeAgent) addr() string { return "unix://" + a.path }

// start listens on the socket and serves until stop.
func (a *fakeAgent) start() {
	a.t.Helper()
	l, err := net.Listen("unix", a.path)
	if err != nil {
		a.t.Fatalf("fake agent: listen: %v", err)
	}
	srv := grpc.NewServer()
	workload.RegisterSpiffeWorkloadAPIServer(srv, a)
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := srv.Serve(l); err != nil {
			a.t.Errorf("fake agent: serve: %v", err)
		}
	}()
	a.mu.Lock()
	a.srv, a.served = srv, served
	a.mu.Unlock()
}

// stop closes the socket and every stream, as an agent that exits does.
func (a *fakeAgent) stop() {
	a.mu.Lock()
	srv, served := a.srv, a.served
	a.srv, a.served = nil, nil
	a.mu.Unlock()
	if srv != nil {
		srv.Stop()
		<-served
	}
}

// setRefuse makes every later request fail with code (codes.OK: serve).
func (a *fakeAgent) setRefuse(code codes.Code) {
	a.mu.Lock()
	a.refuse = code
	a.mu.Unlock()
}

func (a *fakeAgent) requests() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.calls
}

// push makes resp the response of new streams and sends it on open ones.
func (a *fakeAgent) push(resp *workload.X509SVIDResponse) {
	a.mu.Lock()
	a.resp = resp
	close(a.changed)
	a.changed = make(chan struct{})
	a.mu.Unlock()
}

func (a *fakeAgent) FetchX509SVID(_ *workload.X509SVIDRequest, stream grpc.ServerStreamingServer[workload.X509SVIDResponse]) error {
	md, _ := metadata.FromIncomingContext(stream.Context())
	if v := md.Get("workload.spiffe.io"); len(v) != 1 || v[0] != "true" {
		return status.Error(codes.InvalidArgument, "security header missing from request")
	}
	a.mu.Lock()
	a.calls++
	refuse := a.refuse
	a.mu.Unlock()
	if refuse != codes.OK {
		return status.Error(refuse, "refused by the test")
	}
	for {
		a.mu.Lock()
		resp, changed := a.resp, a.changed
		a.mu.Unlock()
		if resp != nil {
			if err := stream.Send(proto.Clone(resp).(*workload.X509SVIDResponse)); err != nil {
				return err
			}
		}
		select {
		case <-changed:
		case <-stream.Context().Done():
			return nil
		}
	}
}

// response is what an agent sends for svid: its chain and key, the bundle
// of its trust domain (nil: none), and federated bundles.
func response(t *testing.T, svid *x509svid.SVID, own *x509bundle.Bundle, federated ...*x509bundle.Bundle) *workload.X509SVIDResponse {
	t.Helper()
	return &workload.X509SVIDResponse{
		Svids:            []*workload.X509SVID{svidMessage(t, svid, own, "")},
		FederatedBundles: federatedMap(federated...),
	}
}

func svidMessage(t *testing.T, svid *x509svid.SVID, own *x509bundle.Bundle, hint string) *workload.X509SVID {
	t.Helper()
	certs, key, err := svid.MarshalRaw()
	if err != nil {
		t.Fatal(err)
	}
	return &workload.X509SVID{SpiffeId: svid.ID.String(), X509Svid: certs, X509SvidKey: key, Bundle: bundleDER(own), Hint: hint}
}

func federatedMap(bundles ...*x509bundle.Bundle) map[string][]byte {
	if len(bundles) == 0 {
		return nil
	}
	m := make(map[string][]byte, len(bundles))
	for _, b := range bundles {
		m[b.TrustDomain().IDString()] = bundleDER(b)
	}
	return m
}

func bundleDER(b *x509bundle.Bundle) []byte {
	if b == nil {
		return nil
	}
	var der []byte
	for _, c := range b.X509Authorities() {
		der = append(der, c.Raw...)
	}
	return der
}

type logs = testutil.Logs

func newSource(t *testing.T, addr string, l *logs, opts ...Option) *Source {
	t.Helper()
	return New(append([]Option{WithAddress(addr), WithLogger(l.Logger()), WithBackoff(5*time.Millisecond, 40*time.Millisecond)}, opts...)...)
}

func serial(t *testing.T, s *Source) string {
	t.Helper()
	svid, err := s.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	return svid.Certificates[0].SerialNumber.Text(16)
}

func serialOf(svid *x509svid.SVID) string { return svid.Certificates[0].SerialNumber.Text(16) }

// handshake runs a TLS handshake between two endpoints that both present
// src's SVID and verify with its bundles.
func handshake(src mtls.Source, want spiffeid.ID) error {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	srv := tls.Server(c1, mtls.ServerConfig(src, nil, nil))
	cli := tls.Client(c2, mtls.ClientConfig(src, want, nil))
	errc := make(chan error, 1)
	go func() {
		err := srv.HandshakeContext(ctx)
		if err != nil {
			c1.Close()
		}
		errc <- err
	}()
	err := cli.HandshakeContext(ctx)
	if err != nil {
		c2.Close()
	}
	return errors.Join(err, <-errc)
}

func TestFakeAgentRequiresSecurityHeader(t *testing.T) {
	t.Parallel()
	ca := mtlstest.NewCA(t, testTD)
	agent := newFakeAgent(t)
	agent.push(response(t, ca.SVID(t, testID), ca.Bundle()))
	agent.start()

	conn, err := grpc.NewClient(agent.addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := workload.NewSpiffeWorkloadAPIClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()

	stream, err := client.FetchX509SVID(ctx, &workload.X509SVIDRequest{})
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("without the header: got %v, want InvalidArgument", err)
	}

	stream, err = client.FetchX509SVID(metadata.AppendToOutgoingContext(ctx, "workload.spiffe.io", "true"), &workload.X509SVIDRequest{})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatalf("with the header: %v", err)
	}
	if len(resp.Svids) != 1 {
		t.Fatalf("got %d SVIDs, want 1", len(resp.Svids))
	}
}

func TestSocketAbsentAtStartThenAppears(t *testing.T) {
	t.Parallel()
	ca := mtlstest.NewCA(t, testTD)
	svid := ca.SVID(t, testID)
	agent := newFakeAgent(t)
	agent.push(response(t, svid, ca.Bundle()))
	var l logs
	s := newSource(t, agent.addr(), &l)
	mtlstest.Run(t, s)

	mtlstest.WaitFor(t, "two failed attempts logged", func() bool {
		return len(l.Records(t, "cannot reach the SPIFFE Workload API; retrying")) >= 2
	})
	select {
	case <-s.Ready():
		t.Fatal("Ready is closed without an SVID")
	default:
	}
	st := s.Status()
	if !strings.Contains(st.LastError, "cannot reach the SPIFFE Workload API") || st.LastErrorAt.IsZero() {
		t.Errorf("LastError = %q at %v, want why the agent cannot be reached", st.LastError, st.LastErrorAt)
	}
	if st.Source != Name || st.Endpoint != agent.addr() {
		t.Errorf("Status source %q endpoint %q, want %q %q", st.Source, st.Endpoint, Name, agent.addr())
	}
	if _, err := s.GetX509SVID(); !errors.Is(err, mtls.ErrNotReady) {
		t.Errorf("GetX509SVID before any SVID: %v, want ErrNotReady", err)
	}
	if _, err := s.Certificate(); !errors.Is(err, mtls.ErrNotReady) {
		t.Errorf("Certificate before any SVID: %v, want ErrNotReady", err)
	}
	if _, err := s.GetX509BundleForTrustDomain(ca.TrustDomain()); !errors.Is(err, mtls.ErrNotReady) {
		t.Errorf("GetX509BundleForTrustDomain before any bundle: %v, want ErrNotReady", err)
	}
	for i, r := range l.Records(t, "cannot reach the SPIFFE Workload API; retrying")[:2] {
		if r["level"] != "WARN" || r["attempt"] != float64(i+1) || r["retry_in"] == nil || r["address"] != agent.addr() {
			t.Errorf("failure log %d = %v, want WARN with attempt %d, retry_in and address", i, r, i+1)
		}
	}

	agent.start()
	mtlstest.WaitReady(t, s)
	if got := serial(t, s); got != serialOf(svid) {
		t.Errorf("serial %s, want %s", got, serialOf(svid))
	}
	st = s.Status()
	if st.LastError != "" || st.SPIFFEID != testID || st.TrustDomain != testTD ||
		st.Serial != serialOf(svid) || st.Rotations != 0 || st.Updated.IsZero() ||
		!st.NotAfter.Equal(svid.Certificates[0].NotAfter) || strings.Join(st.TrustDomains, ",") != testTD {
		t.Errorf("Status after connecting = %+v", st)
	}
	if got := l.Records(t, "connected to the SPIFFE Workload API"); len(got) != 1 {
		t.Errorf("got %d 'connected' logs, want 1", len(got))
	}
	loaded := l.Records(t, "SVID loaded")
	if len(loaded) != 1 || loaded[0]["level"] != "INFO" || loaded[0]["spiffe_id"] != testID ||
		loaded[0]["serial"] != serialOf(svid) || loaded[0]["not_after"] == nil {
		t.Errorf("'SVID loaded' logs = %v", loaded)
	}
	if err := handshake(s, svid.ID); err != nil {
		t.Errorf("handshake: %v", err)
	}
}

func TestRotation(t *testing.T) {
	t.Parallel()
	ca := mtlstest.NewCA(t, testTD)
	other := mtlstest.NewCA(t, otherTD)
	first, second := ca.SVID(t, testID), ca.SVID(t, testID)
	agent := newFakeAgent(t)
	agent.push(response(t, first, ca.Bundle()))
	agent.start()
	var l logs
	s := newSource(t, agent.addr(), &l)
	mtlstest.Run(t, s)
	mtlstest.WaitReady(t, s)
	cert1, _ := s.Certificate()
	before := s.Status()

	agent.push(response(t, second, ca.Bundle()))
	mtlstest.WaitFor(t, "the second SVID", func() bool { return serial(t, s) == serialOf(second) })
	cert2, err := s.Certificate()
	if err != nil || cert2 == cert1 || cert2.Leaf.SerialNumber.Cmp(second.Certificates[0].SerialNumber) != 0 {
		t.Errorf("Certificate after rotation: leaf %v, err %v", cert2.Leaf.SerialNumber, err)
	}
	st := s.Status()
	if st.Rotations != 1 || st.Serial != serialOf(second) || !st.Updated.After(before.Updated) {
		t.Errorf("Status after rotation = %+v", st)
	}
	rotated := l.Records(t, "SVID rotated")
	if len(rotated) != 1 || rotated[0]["serial"] != serialOf(second) || rotated[0]["previous_serial"] != serialOf(first) {
		t.Errorf("'SVID rotated' logs = %v", rotated)
	}

	// The same response again is not a rotation, and the certificate is
	// not rebuilt. The federated bundle that follows shows it was seen.
	agent.push(response(t, second, ca.Bundle()))
	agent.push(response(t, second, ca.Bundle(), other.Bundle()))
	mtlstest.WaitFor(t, "the federated bundle", func() bool {
		_, err := s.GetX509BundleForTrustDomain(other.TrustDomain())
		return err == nil
	})
	if got := s.Status().Rotations; got != 1 {
		t.Errorf("Rotations = %d after an identical response, want 1", got)
	}
	if cert3, _ := s.Certificate(); cert3 != cert2 {
		t.Error("the certificate was rebuilt for the same SVID")
	}
	if err := handshake(s, second.ID); err != nil {
		t.Errorf("handshake after rotation: %v", err)
	}
}

func TestFederatedBundleAddedThenRemoved(t *testing.T) {
	t.Parallel()
	ca := mtlstest.NewCA(t, testTD)
	other := mtlstest.NewCA(t, otherTD)
	svid := ca.SVID(t, testID)
	agent := newFakeAgent(t)
	agent.push(response(t, svid, ca.Bundle()))
	agent.start()
	var l logs
	s := newSource(t, agent.addr(), &l)
	mtlstest.Run(t, s)
	mtlstest.WaitReady(t, s)

	_, err := s.GetX509BundleForTrustDomain(other.TrustDomain())
	if want := `no X.509 bundle for trust domain "other.org"`; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("bundle of other.org before federation: %v, want an error containing %s", err, want)
	}

	agent.push(response(t, svid, ca.Bundle(), other.Bundle()))
	mtlstest.WaitFor(t, "the federated bundle", func() bool {
		_, err := s.GetX509BundleForTrustDomain(other.TrustDomain())
		return err == nil
	})
	b, _ := s.GetX509BundleForTrustDomain(other.TrustDomain())
	if !b.Equal(other.Bundle()) {
		t.Errorf("federated bundle = %v, want other.org's root", b.X509Authorities())
	}
	own, err := s.GetX509BundleForTrustDomain(ca.TrustDomain())
	if err != nil || !own.Equal(ca.Bundle()) {
		t.Errorf("own bundle = %v, %v", own, err)
	}
	if got := strings.Join(s.Status().TrustDomains, ","); got != "example.org,other.org" {
		t.Errorf("TrustDomains = %s", got)
	}

	// A peer of the federated trust domain is verified against its bundle.
	peer := other.SVID(t, "spiffe://other.org/ns/default/sa/api")
	if _, _, err := x509svid.Verify(peer.Certificates, s); err != nil {
		t.Errorf("verifying a federated peer: %v", err)
	}

	agent.push(response(t, svid, ca.Bundle()))
	mtlstest.WaitFor(t, "the federation removed", func() bool {
		_, err := s.GetX509BundleForTrustDomain(other.TrustDomain())
		return err != nil && strings.Contains(err.Error(), `no X.509 bundle for trust domain "other.org"`)
	})
	if got := strings.Join(s.Status().TrustDomains, ","); got != testTD {
		t.Errorf("TrustDomains = %s", got)
	}
	if _, _, err := x509svid.Verify(peer.Certificates, s); err == nil {
		t.Error("a peer of a removed federation still verifies")
	}
	if got := s.Status().Rotations; got != 0 {
		t.Errorf("Rotations = %d for bundle changes, want 0", got)
	}
}

func TestAgentRestartKeepsIdentity(t *testing.T) {
	t.Parallel()
	ca := mtlstest.NewCA(t, testTD)
	svid := ca.SVID(t, testID)
	agent := newFakeAgent(t)
	agent.push(response(t, svid, ca.Bundle()))
	agent.start()
	var l logs
	s := newSource(t, agent.addr(), &l)
	mtlstest.Run(t, s)
	mtlstest.WaitReady(t, s)

	agent.stop()
	mtlstest.WaitFor(t, "the lost agent in Status", func() bool { return s.Status().LastError != "" })
	if got := serial(t, s); got != serialOf(svid) {
		t.Errorf("serial %s while the agent is away, want %s", got, serialOf(svid))
	}
	if _, err := s.GetX509BundleForTrustDomain(ca.TrustDomain()); err != nil {
		t.Errorf("bundle while the agent is away: %v", err)
	}
	if err := handshake(s, svid.ID); err != nil {
		t.Errorf("handshake while the agent is away: %v", err)
	}
	mtlstest.WaitFor(t, "a failed attempt logged", func() bool {
		return len(l.Records(t, "cannot reach the SPIFFE Workload API; retrying")) > 0
	})
	warn := l.Records(t, "cannot reach the SPIFFE Workload API; retrying")[0]
	if warn["keeping_svid"] != testID || warn["attempt"] != float64(1) {
		t.Errorf("failure log = %v, want attempt 1 and the SVID kept", warn)
	}

	// The agent comes back with a renewed SVID.
	renewed := ca.SVID(t, testID)
	agent.push(response(t, renewed, ca.Bundle()))
	agent.start()
	mtlstest.WaitFor(t, "the renewed SVID", func() bool { return serial(t, s) == serialOf(renewed) })
	mtlstest.WaitFor(t, "LastError cleared", func() bool { return s.Status().LastError == "" })
	if got := l.Records(t, "reconnected to the SPIFFE Workload API"); len(got) != 1 || got[0]["after_attempts"] == nil {
		t.Errorf("'reconnected' logs = %v, want 1 with after_attempts", got)
	}

	// The new stream is live: later updates arrive too.
	third := ca.SVID(t, testID)
	agent.push(response(t, third, ca.Bundle()))
	mtlstest.WaitFor(t, "the third SVID", func() bool { return serial(t, s) == serialOf(third) })
}

func TestInvalidUpdateIsRejected(t *testing.T) {
	t.Parallel()
	ca := mtlstest.NewCA(t, testTD)
	other := mtlstest.NewCA(t, otherTD)
	svid := ca.SVID(t, testID)
	good := response(t, svid, ca.Bundle())
	agent := newFakeAgent(t)
	agent.push(good)
	agent.start()
	var l logs
	s := newSource(t, agent.addr(), &l)
	mtlstest.Run(t, s)
	mtlstest.WaitReady(t, s)

	mismatched := svidMessage(t, ca.SVID(t, testID), ca.Bundle(), "")
	mismatched.X509SvidKey = svidMessage(t, ca.SVID(t, testID), nil, "").X509SvidKey
	tests := []struct {
		name    string
		resp    *workload.X509SVIDResponse
		wantErr string
	}{
		{"no SVID", &workload.X509SVIDResponse{FederatedBundles: federatedMap(ca.Bundle())}, "no SVIDs in response"},
		{"no bundle for the SVID's trust domain", response(t, ca.SVID(t, testID), nil, other.Bundle()),
			`no X.509 bundle for the SVID's trust domain "example.org"`},
		{"key does not match the certificate", &workload.X509SVIDResponse{Svids: []*workload.X509SVID{mismatched}},
			"private key"},
		{"certificate is not DER", &workload.X509SVIDResponse{Svids: []*workload.X509SVID{{
			SpiffeId: testID, X509Svid: []byte("garbage"), X509SvidKey: mismatched.X509SvidKey, Bundle: bundleDER(ca.Bundle()),
		}}}, "cannot parse DER encoded certificate"},
	}
	for _, tt := range tests {
		agent.push(tt.resp)
		mtlstest.WaitFor(t, tt.name+" rejected", func() bool { return strings.Contains(s.Status().LastError, tt.wantErr) })
		if got := serial(t, s); got != serialOf(svid) {
			t.Errorf("%s: serial %s, want the previous %s", tt.name, got, serialOf(svid))
		}
		if _, err := s.GetX509BundleForTrustDomain(ca.TrustDomain()); err != nil {
			t.Errorf("%s: own bundle lost: %v", tt.name, err)
		}
		if _, err := s.GetX509BundleForTrustDomain(other.TrustDomain()); err == nil {
			t.Errorf("%s: the rejected update's federated bundle is trusted", tt.name)
		}
		if err := handshake(s, svid.ID); err != nil {
			t.Errorf("%s: handshake: %v", tt.name, err)
		}

		agent.push(good)
		mtlstest.WaitFor(t, "LastError cleared after "+tt.name, func() bool { return s.Status().LastError == "" })
	}
	rejected := l.Records(t, "rejected an update from the SPIFFE Workload API; keeping the current identity")
	if len(rejected) < len(tests) || rejected[0]["level"] != "ERROR" {
		t.Errorf("rejection logs = %v, want %d at ERROR", rejected, len(tests))
	}
	if st := s.Status(); st.Rotations != 0 {
		t.Errorf("Rotations = %d, want 0", st.Rotations)
	}
}

func TestSVIDHint(t *testing.T) {
	t.Parallel()
	ca := mtlstest.NewCA(t, testTD)
	internal := ca.SVID(t, testID)
	external := ca.SVID(t, "spiffe://example.org/ns/default/sa/web-external")
	agent := newFakeAgent(t)
	agent.push(&workload.X509SVIDResponse{Svids: []*workload.X509SVID{
		svidMessage(t, internal, ca.Bundle(), "internal"),
		svidMessage(t, external, ca.Bundle(), "external"),
	}})
	agent.start()

	var l1, l2, l3 logs
	first := newSource(t, agent.addr(), &l1)
	hinted := newSource(t, agent.addr(), &l2, WithSVIDHint("external"))
	missing := newSource(t, agent.addr(), &l3, WithSVIDHint("nope"))
	mtlstest.Run(t, first)
	mtlstest.Run(t, hinted)
	mtlstest.Run(t, missing)
	mtlstest.WaitReady(t, first)
	mtlstest.WaitReady(t, hinted)
	if got := serial(t, first); got != serialOf(internal) {
		t.Errorf("without a hint: serial %s, want the first SVID's %s", got, serialOf(internal))
	}
	if got := serial(t, hinted); got != serialOf(external) {
		t.Errorf("with hint external: serial %s, want %s", got, serialOf(external))
	}
	mtlstest.WaitFor(t, "the missing hint rejected", func() bool {
		return strings.Contains(missing.Status().LastError, `no SVID with hint "nope"`)
	})
	select {
	case <-missing.Ready():
		t.Error("ready without an SVID for the hint")
	default:
	}
}

func TestRunReturnsOnCancel(t *testing.T) {
	t.Parallel()
	ca := mtlstest.NewCA(t, testTD)
	agent := newFakeAgent(t)
	agent.push(response(t, ca.SVID(t, testID), ca.Bundle()))
	agent.start()

	t.Run("connected", func(t *testing.T) {
		t.Parallel()
		var l logs
		s := newSource(t, agent.addr(), &l)
		stop := mtlstest.Run(t, s)
		mtlstest.WaitReady(t, s)
		if err := stop(); !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v, want context.Canceled", err)
		}
		if got := l.Records(t, "cannot reach the SPIFFE Workload API; retrying"); len(got) != 0 {
			t.Errorf("the cancellation was logged as a failure: %v", got)
		}
		// The identity stays readable after Run returned.
		if _, err := s.Certificate(); err != nil {
			t.Errorf("Certificate after Run returned: %v", err)
		}
	})
	t.Run("retrying", func(t *testing.T) {
		t.Parallel()
		var l logs
		s := newSource(t, "unix://"+filepath.Join(t.TempDir(), "absent.sock"), &l, WithBackoff(time.Hour, time.Hour))
		stop := mtlstest.Run(t, s)
		mtlstest.WaitFor(t, "a failed attempt", func() bool { return s.Status().LastError != "" })
		if err := stop(); !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v, want context.Canceled", err)
		}
	})
}

func TestRunTwiceAtOnce(t *testing.T) {
	t.Parallel()
	var l logs
	s := newSource(t, "unix://"+filepath.Join(t.TempDir(), "absent.sock"), &l)
	mtlstest.Run(t, s)
	mtlstest.WaitFor(t, "Run started", func() bool { return s.Status().LastError != "" })
	if err := s.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("second Run: %v, want already running", err)
	}
}

// Not parallel: it sets the environment.
func TestConfiguration(t *testing.T) {
	t.Setenv("SPIFFE_ENDPOINT_SOCKET", "unix:///run/spire/agent.sock")
	if got := New().Status().Endpoint; got != "unix:///run/spire/agent.sock" {
		t.Errorf("default address %q, want SPIFFE_ENDPOINT_SOCKET's", got)
	}
	if got := New(WithAddress("unix:///elsewhere.sock")).Status().Endpoint; got != "unix:///elsewhere.sock" {
		t.Errorf("WithAddress: endpoint %q", got)
	}

	t.Setenv("SPIFFE_ENDPOINT_SOCKET", "")
	tests := []struct {
		name    string
		opts    []Option
		wantErr string
	}{
		{"no address at all", nil, "no SPIFFE Workload API address: set SPIFFE_ENDPOINT_SOCKET"},
		{"not a URI scheme the Workload API uses", []Option{WithAddress("http://127.0.0.1:8081")}, `address "http://127.0.0.1:8081"`},
		{"a path without scheme", []Option{WithAddress("/run/spire/agent.sock")}, `address "/run/spire/agent.sock"`},
		{"tcp without an IP", []Option{WithAddress("tcp://localhost:8081")}, "must be an IP:port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			err := New(tt.opts...).Run(ctx)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || ctx.Err() != nil {
				t.Errorf("Run: %v, want at once an error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestBackoffDelay(t *testing.T) {
	t.Parallel()
	lo, hi := 100*time.Millisecond, time.Second
	tests := []struct {
		n        int
		min, max time.Duration
	}{
		{1, 50 * time.Millisecond, 100 * time.Millisecond},
		{2, 100 * time.Millisecond, 200 * time.Millisecond},
		{4, 400 * time.Millisecond, 800 * time.Millisecond},
		{5, 500 * time.Millisecond, time.Second},
		{60, 500 * time.Millisecond, time.Second},
	}
	for _, tt := range tests {
		for range 100 {
			if d := backoff.Delay(lo, hi, tt.n); d < tt.min || d > tt.max {
				t.Fatalf("backoff.Delay(%v, %v, %d) = %v, want in [%v, %v]", lo, hi, tt.n, d, tt.min, tt.max)
			}
		}
	}
}

// The certificate chain served is kept whole: intermediates included.
func TestIntermediateChain(t *testing.T) {
	t.Parallel()
	root := mtlstest.NewCA(t, testTD)
	inter := root.Intermediate(t)
	svid := inter.SVID(t, testID)
	agent := newFakeAgent(t)
	agent.push(response(t, svid, root.Bundle()))
	agent.start()
	var l logs
	s := newSource(t, agent.addr(), &l)
	mtlstest.Run(t, s)
	mtlstest.WaitReady(t, s)
	cert, err := s.Certificate()
	if err != nil || len(cert.Certificate) != 2 {
		t.Fatalf("certificate chain of %d, err %v; want leaf and intermediate", len(cert.Certificate), err)
	}
	leaf, _ := x509.ParseCertificate(cert.Certificate[1])
	if !leaf.IsCA {
		t.Error("second certificate is not the intermediate")
	}
	if err := handshake(s, svid.ID); err != nil {
		t.Errorf("handshake: %v", err)
	}
}

// An agent that refuses the watch (SPIRE answers PermissionDenied to a
// workload it has no entry for) is retried like an absent one; so is an
// InvalidArgument, after which go-spiffe gives the watch up and Run starts
// a new one.
func TestRefusedWatchIsRetried(t *testing.T) {
	t.Parallel()
	ca := mtlstest.NewCA(t, testTD)
	for _, code := range []codes.Code{codes.PermissionDenied, codes.InvalidArgument} {
		t.Run(code.String(), func(t *testing.T) {
			agent := newFakeAgent(t)
			agent.push(response(t, ca.SVID(t, testID), ca.Bundle()))
			agent.setRefuse(code)
			agent.start()
			var l logs
			s := newSource(t, agent.addr(), &l)
			mtlstest.Run(t, s)
			mtlstest.WaitFor(t, "three refused requests", func() bool { return agent.requests() >= 3 })
			st := s.Status()
			if !strings.Contains(st.LastError, "refused the X.509 SVID watch") || !strings.Contains(st.LastError, code.String()) {
				t.Errorf("LastError = %q", st.LastError)
			}
			refused := l.Records(t, "the SPIFFE Workload API refused to serve an X.509 SVID; retrying")
			if len(refused) < 2 || refused[0]["level"] != "WARN" || refused[1]["attempt"] != float64(2) {
				t.Errorf("refusal logs = %v, want WARN with counted attempts", refused)
			}
			if ended := len(l.Records(t, "SPIFFE Workload API watch ended; starting a new one")); (code == codes.InvalidArgument) != (ended > 0) {
				t.Errorf("%d new watches started by Run", ended)
			}
			agent.setRefuse(codes.OK)
			mtlstest.WaitReady(t, s)
			if got := l.Records(t, "connected to the SPIFFE Workload API"); len(got) != 1 {
				t.Errorf("'connected' logs = %v", got)
			}
		})
	}
}

package mtls_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/outrider-mesh/outrider/mtls"
	"github.com/outrider-mesh/outrider/mtls/mtlstest"
	"github.com/outrider-mesh/outrider/telemetry/metrics"
)

// allowList is an authorizer over a set of SPIFFE IDs that a test changes
// between connections, as a sidecar's intentions change under it.
type allowList struct {
	mu  sync.Mutex
	ids map[string]bool
}

func newAllowList(ids ...string) *allowList {
	a := &allowList{ids: map[string]bool{}}
	for _, id := range ids {
		a.ids[id] = true
	}
	return a
}

func (a *allowList) remove(id string) {
	a.mu.Lock()
	delete(a.ids, id)
	a.mu.Unlock()
}

func (a *allowList) authorize(peer spiffeid.ID) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.ids[peer.String()] {
		return fmt.Errorf("%s denied by the test's allow list", peer)
	}
	return nil
}

// TestIdentityEdgesResumptionAfterRevocation: a Dialer that holds a
// session ticket for an Outrider server (so it resumes) is refused on its
// next, resumed, handshake once its SPIFFE ID has left the server's allowed
// set, while another allowed client of the same server still resumes. The
// refusal is counted as denied on the server, and so is every later
// attempt. (In TLS 1.3 the client's Dial completes before the server's
// verdict arrives, so the Dialer keeps its ticket and resumes again: each
// resumption is authorized afresh.)
// (TestResumptionCannotSkipAuthorization flips a whole authorizer for a
// ClientConfig at TLS 1.2 and 1.3; this is the Dialer's default path, TLS
// 1.3, with a per-ID change.)
func TestIdentityEdgesResumptionAfterRevocation(t *testing.T) {
	t.Parallel()
	ca := mtlstest.NewCA(t, trustDomain)
	allowed := newAllowList(clientID, otherID)
	s := startServerALPN(t, mtlstest.NewSource(ca.SVID(t, serverID), ca.Bundle()), allowed.authorize,
		[]string{mtls.ALPNOutrider})
	web := mtls.NewDialer(mtlstest.NewSource(ca.SVID(t, clientID), ca.Bundle()), wait)
	db := mtls.NewDialer(mtlstest.NewSource(ca.SVID(t, otherID), ca.Bundle()), wait)

	for i, c := range []struct {
		d       *mtls.Dialer
		resumed bool
	}{{web, false}, {web, true}, {db, false}, {db, true}} {
		cs, err := dial(t, c.d, s.addr, serverID)
		if err != nil {
			t.Fatalf("connection %d: %v", i+1, err)
		}
		if o := s.next(t); o.err != nil || cs.DidResume != c.resumed {
			t.Fatalf("connection %d: resumed %v (want %v), server %+v", i+1, cs.DidResume, c.resumed, o)
		}
	}

	allowed.remove(clientID)
	for i := range 2 {
		_, err := dial(t, web, s.addr, serverID)
		wantErrContaining(t, fmt.Sprintf("revoked client, attempt %d", i+1), err, "bad certificate")
		if got := metrics.ClassifyHandshakeError(err); got != metrics.ReasonBadCertificate {
			t.Errorf("client: ClassifyHandshakeError(%q) = %s", err, got)
		}
		o := s.next(t)
		if got := metrics.ClassifyHandshakeError(o.err); got != metrics.ReasonDenied {
			t.Errorf("server: ClassifyHandshakeError(%q) = %s, want %s", o.err, got, metrics.ReasonDenied)
		}
		wantErrContaining(t, "server", o.err, clientID+" denied by")
		if len(o.verdicts) != 1 || !o.verdicts[0].resumed {
			t.Errorf("attempt %d: server verdicts %+v, want one for a resumed handshake", i+1, o.verdicts)
		}
	}

	cs, err := dial(t, db, s.addr, serverID)
	if err != nil || !cs.DidResume {
		t.Errorf("still-allowed client: resumed=%v, %v", cs.DidResume, err)
	}
	if o := s.next(t); o.err != nil {
		t.Errorf("server, still-allowed client: %v", o.err)
	}
}

// TestIdentityEdgesResumedServerIdentity is the client side: when the
// identity expected at an address changes (the endpoint was reassigned to
// another service), the Dialer refuses the resumed session, whose
// certificate names the old one. The server saw a resumed handshake,
// so the refusal was the client's check of the resumed session's peer.
func TestIdentityEdgesResumedServerIdentity(t *testing.T) {
	t.Parallel()
	ca := mtlstest.NewCA(t, trustDomain)
	s := startServerALPN(t, mtlstest.NewSource(ca.SVID(t, serverID), ca.Bundle()), nil, []string{mtls.ALPNOutrider})
	d := mtls.NewDialer(mtlstest.NewSource(ca.SVID(t, clientID), ca.Bundle()), wait)
	for i := range 2 {
		if _, err := dial(t, d, s.addr, serverID); err != nil {
			t.Fatalf("connection %d: %v", i+1, err)
		}
		s.next(t)
	}
	_, err := dial(t, d, s.addr, otherID)
	wantErrContaining(t, "client", err, "server presented "+serverID, "want "+otherID)
	if got := metrics.ClassifyHandshakeError(err); got != metrics.ReasonSPIFFEIDMismatch {
		t.Errorf("ClassifyHandshakeError(%q) = %s, want %s", err, got, metrics.ReasonSPIFFEIDMismatch)
	}
	if o := s.next(t); len(o.verdicts) != 1 || !o.verdicts[0].resumed {
		t.Errorf("server verdicts %+v, want one for a resumed handshake", o.verdicts)
	}
}

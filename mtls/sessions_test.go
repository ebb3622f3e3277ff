package mtls

import (
	"crypto/tls"
	"testing"
)

// The cache keeps tickets only for addresses marked Outrider, and a later
// handshake that does not negotiate the marker drops the ticket.
func TestOutriderSessions(t *testing.T) {
	o := newOutriderSessions(2)
	ticket := &tls.ClientSessionState{}
	o.Put("10.0.0.1:1", ticket)
	if _, ok := o.Get("10.0.0.1:1"); ok {
		t.Fatal("kept a ticket for an unknown server")
	}
	o.observe("10.0.0.1:1", ALPNOutrider)
	o.Put("10.0.0.1:1", ticket)
	if got, ok := o.Get("10.0.0.1:1"); !ok || got != ticket {
		t.Fatal("dropped a ticket for an Outrider server")
	}
	o.observe("10.0.0.1:1", "") // the address now hosts something else
	if _, ok := o.Get("10.0.0.1:1"); ok {
		t.Fatal("kept the ticket after the server stopped negotiating the marker")
	}
	o.Put("10.0.0.1:1", ticket)
	if _, ok := o.Get("10.0.0.1:1"); ok {
		t.Fatal("stored a ticket for a forgotten server")
	}
	// The mark set is bounded.
	for _, a := range []string{"a:1", "b:1", "c:1"} {
		o.observe(a, ALPNOutrider)
	}
	if n := len(o.outrider); n > 2 {
		t.Fatalf("%d marked addresses, want at most 2", n)
	}
}

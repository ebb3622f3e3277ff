package mtls_test

import (
	"crypto/tls"
	"net"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/outrider-mesh/outrider/mtls"
	"github.com/outrider-mesh/outrider/mtls/mtlstest"
)

// Mesh links use X25519 by default; the post-quantum hybrid is used when
// both sides prefer it, and a sidecar preferring it still talks to one
// that does not.
func TestKeyExchange(t *testing.T) {
	ca := mtlstest.NewCA(t, trustDomain)
	web := mtlstest.NewSource(ca.SVID(t, serverID), ca.Bundle())
	client := mtlstest.NewSource(ca.SVID(t, clientID), ca.Bundle())
	tests := []struct {
		name           string
		server, client []tls.CurveID
		want           tls.CurveID
	}{
		{"default", nil, nil, tls.X25519},
		{"both post-quantum", mtls.PostQuantumCurves, mtls.PostQuantumCurves, tls.X25519MLKEM768},
		{"client post-quantum, server default", nil, mtls.PostQuantumCurves, tls.X25519},
		{"server post-quantum, client default", mtls.PostQuantumCurves, nil, tls.X25519},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sc := mtls.ServerConfig(web, nil, nil)
			if tt.server != nil {
				sc.CurvePreferences = tt.server
			}
			cc := mtls.ClientConfig(client, spiffeid.RequireFromString(serverID), nil)
			if tt.client != nil {
				cc.CurvePreferences = tt.client
			}
			c1, c2 := net.Pipe()
			defer c1.Close()
			defer c2.Close()
			errc := make(chan error, 1)
			go func() { errc <- tls.Server(c2, sc).Handshake() }()
			conn := tls.Client(c1, cc)
			if err := conn.Handshake(); err != nil {
				t.Fatal(err)
			}
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			if got := conn.ConnectionState().CurveID; got != tt.want {
				t.Fatalf("key exchange %v, want %v", got, tt.want)
			}
		})
	}
}

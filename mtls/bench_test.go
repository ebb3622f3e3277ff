package mtls_test

import (
	"crypto/tls"
	"net"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/outrider-mesh/outrider/mtls"
	"github.com/outrider-mesh/outrider/mtls/mtlstest"
)

// BenchmarkHandshake measures one full mTLS handshake, both sides, over an
// in-memory pipe: the per-connection cost the L4 path pays on every new
// client connection.
func BenchmarkHandshake(b *testing.B) {
	ca := mtlstest.NewCA(b, "example.org")
	web := mtlstest.NewSource(ca.SVID(b, "spiffe://example.org/ns/default/dc/dc1/svc/web"), ca.Bundle())
	client := mtlstest.NewSource(ca.SVID(b, "spiffe://example.org/ns/default/dc/dc1/svc/client"), ca.Bundle())
	want := spiffeid.RequireFromString("spiffe://example.org/ns/default/dc/dc1/svc/web")
	srvConf := mtls.ServerConfig(web, func(spiffeid.ID) error { return nil }, nil)
	cliConf := mtls.ClientConfig(client, want, nil)
	cliConf.CurvePreferences = []tls.CurveID{tls.CurveP256}
	b.ReportAllocs()
	for b.Loop() {
		c1, c2 := net.Pipe()
		errc := make(chan error, 1)
		go func() {
			s := tls.Server(c2, srvConf)
			errc <- s.Handshake()
		}()
		cc := tls.Client(c1, cliConf)
		if err := cc.Handshake(); err != nil {
			b.Fatal(err)
		}
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
		c1.Close()
		c2.Close()
	}
}

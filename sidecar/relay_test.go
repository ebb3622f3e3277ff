package sidecar

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/outrider-mesh/outrider/mtls"
	"github.com/outrider-mesh/outrider/mtls/mtlstest"
)

// stream is one relayed stream under test: the test holds the far side of
// each connection (tlsPeer speaks mTLS, plainPeer plaintext) and the relay
// holds the near sides.
type stream struct {
	tlsPeer   *tls.Conn
	plainPeer *net.TCPConn
	done      chan [2]int64
	errc      chan error
}

func tcpPair(t *testing.T) (near, far net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	far, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	near, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { near.Close(); far.Close() })
	return near, far
}

func startStream(t *testing.T, ls *loops, conns *tracker) *stream {
	t.Helper()
	ca := mtlstest.NewCA(t, "example.org")
	webID := "spiffe://example.org/ns/default/dc/dc1/svc/web"
	web := mtlstest.NewSource(ca.SVID(t, webID), ca.Bundle())
	client := mtlstest.NewSource(ca.SVID(t, "spiffe://example.org/ns/default/dc/dc1/svc/client"), ca.Bundle())

	tlsNear, tlsFar := tcpPair(t)
	plainNear, plainFar := tcpPair(t)
	raw := newLoopConn(tlsNear)
	tc := tls.Server(raw, mtls.ServerConfig(web, nil, nil))
	peer := tls.Client(tlsFar, mtls.ClientConfig(client, spiffeid.RequireFromString(webID), nil))
	errc := make(chan error, 1)
	go func() { errc <- peer.Handshake() }()
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	s := &stream{tlsPeer: peer, plainPeer: plainFar.(*net.TCPConn), done: make(chan [2]int64, 1), errc: make(chan error, 1)}
	release, _ := conns.add(tlsNear)
	go func() {
		defer release()
		fromTLS, fromPlain, err := forward(ls, tc, raw, plainNear, conns, tlsNear)
		s.errc <- err
		s.done <- [2]int64{fromTLS, fromPlain}
	}()
	return s
}

// dataPaths runs f with the event loop and with the goroutine splice.
func dataPaths(t *testing.T, f func(t *testing.T, ls *loops)) {
	t.Run("loop", func(t *testing.T) {
		ls, err := newLoops(1)
		if err != nil {
			t.Fatal(err)
		}
		defer ls.close()
		f(t, ls)
	})
	t.Run("goroutines", func(t *testing.T) { f(t, nil) })
}

func TestForwardHalfClose(t *testing.T) {
	dataPaths(t, func(t *testing.T, ls *loops) {
		s := startStream(t, ls, newTracker())
		deadline := time.Now().Add(10 * time.Second)
		s.tlsPeer.SetDeadline(deadline)
		s.plainPeer.SetDeadline(deadline)

		io.WriteString(s.tlsPeer, "request")
		s.tlsPeer.CloseWrite()
		got, err := io.ReadAll(s.plainPeer) // EOF arrives as the half-close
		if err != nil || string(got) != "request" {
			t.Fatalf("plain side read %q, %v", got, err)
		}
		// The other direction is still open after the first one ended.
		io.WriteString(s.plainPeer, "response")
		s.plainPeer.CloseWrite()
		got, err = io.ReadAll(s.tlsPeer)
		if err != nil || string(got) != "response" {
			t.Fatalf("TLS side read %q, %v", got, err)
		}
		select {
		case n := <-s.done:
			if n != [2]int64{7, 8} {
				t.Fatalf("bytes relayed = %v, want [7 8]", n)
			}
			if err := <-s.errc; err != nil {
				t.Fatalf("clean stream reported %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("relay did not finish after both directions ended")
		}
	})
}

// A slow reader on one side: the relay stops reading the fast side instead
// of buffering without bound, and every byte arrives in order.
func TestForwardBackpressure(t *testing.T) {
	dataPaths(t, func(t *testing.T, ls *loops) {
		s := startStream(t, ls, newTracker())
		payload := make([]byte, 8<<20)
		rand.Read(payload)
		go func() {
			s.plainPeer.Write(payload)
			s.plainPeer.CloseWrite()
		}()
		time.Sleep(200 * time.Millisecond) // let the kernel buffers fill
		s.tlsPeer.SetDeadline(time.Now().Add(20 * time.Second))
		h := sha256.New()
		n, err := io.Copy(h, s.tlsPeer)
		if err != nil || n != int64(len(payload)) {
			t.Fatalf("read %d bytes, %v; want %d", n, err, len(payload))
		}
		want := sha256.Sum256(payload)
		if !bytes.Equal(h.Sum(nil), want[:]) {
			t.Fatal("payload corrupted")
		}
		s.tlsPeer.CloseWrite()
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
			t.Fatal("relay did not finish")
		}
	})
}

// Drain's force close reaches a stream held by the event loop.
func TestForwardForceClosedByDrain(t *testing.T) {
	dataPaths(t, func(t *testing.T, ls *loops) {
		conns := newTracker()
		s := startStream(t, ls, conns)
		io.WriteString(s.tlsPeer, "x")
		s.plainPeer.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(s.plainPeer, make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if n := conns.drain(ctx); n != 1 {
			t.Fatalf("drain closed %d connections, want 1", n)
		}
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
			t.Fatal("relay still running after a forced close")
		}
		if _, err := s.plainPeer.Read(make([]byte, 1)); err == nil {
			t.Fatal("plaintext peer still connected after the forced close")
		}
	})
}

// A peer that resets its connection ends the stream on the other side too.
func TestForwardPeerReset(t *testing.T) {
	dataPaths(t, func(t *testing.T, ls *loops) {
		s := startStream(t, ls, newTracker())
		io.WriteString(s.tlsPeer, "x")
		s.plainPeer.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(s.plainPeer, make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
		s.plainPeer.SetLinger(0)
		s.plainPeer.Close() // RST
		s.tlsPeer.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := s.tlsPeer.Read(make([]byte, 1)); err == nil {
			t.Fatal("TLS peer still connected after the plaintext peer reset")
		}
		select {
		case <-s.done:
			if err := <-s.errc; err == nil {
				t.Fatal("a reset stream reported a clean end")
			}
		case <-time.After(5 * time.Second):
			t.Fatal("relay still running after a reset")
		}
	})
}

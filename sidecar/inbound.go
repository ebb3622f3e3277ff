package sidecar

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// inbound is the public listener: it terminates mTLS from other sidecars,
// authorizes the peer during the handshake, and pipes the connection to the
// local application.
type inbound struct {
	ln    net.Listener
	tls   *tls.Config
	cfg   atomic.Pointer[PublicListener] // updated in place on registration changes
	log   *slog.Logger
	stat  *counters
	loops *loops   // nil: relay with two goroutines per connection
	conns *tracker // owner of c, for relays that outlive the handler's view of c
}

func (in *inbound) handle(c net.Conn) {
	cfg := in.cfg.Load()
	start := time.Now()
	remote := c.RemoteAddr().String()
	ctx, cancel := context.WithTimeout(context.Background(), cfg.HandshakeTimeout)
	raw := newLoopConn(c)
	tc := tls.Server(raw, in.tls)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		if errors.Is(err, io.EOF) {
			// Closed before saying anything: a TCP health check (Consul's
			// "sidecar listening" check does this every interval).
			in.log.Debug("inbound connection closed before the TLS handshake", "remote", remote)
			return
		}
		in.stat.handshakeFailures.Add(1)
		in.log.Warn("inbound connection rejected", "remote", remote, "reason", err)
		return
	}
	cs := tc.ConnectionState()
	if cs.DidResume {
		in.stat.resumed.Add(1)
	}
	peer := ""
	if pcs := cs.PeerCertificates; len(pcs) > 0 {
		if id, err := x509svid.IDFromCert(pcs[0]); err == nil {
			peer = id.String()
		}
	}
	d := net.Dialer{Timeout: cfg.LocalConnectTimeout}
	app, err := d.Dial("tcp", cfg.LocalService)
	if err != nil {
		in.stat.upstreamFailures.Add(1)
		in.log.Error("local application unreachable; closing inbound connection",
			"remote", remote, "peer", peer, "local_service", cfg.LocalService, "error", err)
		return
	}
	defer app.Close()
	in.stat.active.Add(1)
	up, down, err := forward(in.loops, tc, raw, app, in.conns, c)
	in.stat.active.Add(-1)
	if err != nil {
		in.log.Debug("inbound connection aborted", "remote", remote, "peer", peer, "reason", err)
	}
	in.stat.connections.Add(1)
	if in.log.Enabled(context.Background(), slog.LevelDebug) {
		in.log.Debug("inbound connection closed", "remote", remote, "peer", peer,
			"bytes_in", up, "bytes_out", down, "duration", time.Since(start))
	}
}

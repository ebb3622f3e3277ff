package sidecar

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/outrider-mesh/outrider/discovery"
	"github.com/outrider-mesh/outrider/mtls"
	"github.com/outrider-mesh/outrider/sidecar/balance"
)

// maxDialAttempts bounds how many distinct endpoints one connection tries.
const maxDialAttempts = 3

// outbound is one upstream listener: plaintext from the application, mTLS
// to an endpoint picked per connection from the latest snapshot.
type outbound struct {
	up     Upstream
	ln     net.Listener
	dialer *mtls.Dialer
	log    *slog.Logger
	stat   *counters
	loops  *loops
	conns  *tracker

	// picker is replaced by the discovery goroutine on every snapshot and
	// read by every connection.
	picker atomic.Pointer[pickerState]
}

type pickerState struct {
	snap   *discovery.Snapshot
	picker balance.Picker
}

// update publishes a new snapshot; called on the discovery goroutine.
func (o *outbound) update(snap *discovery.Snapshot) {
	o.picker.Store(&pickerState{snap: snap, picker: balance.New(balance.RoundRobin, snap)})
	o.log.Info("upstream endpoints updated", "upstream", o.up.DestinationName, "endpoints", len(snap.Endpoints), "index", snap.Index)
}

func (o *outbound) handle(c net.Conn) {
	start := time.Now()
	ps := o.picker.Load()
	if ps == nil {
		o.stat.upstreamFailures.Add(1)
		o.log.Error("no endpoints discovered yet; closing connection", "upstream", o.up.DestinationName)
		return
	}
	tc, ep, err := o.dial(ps)
	if err != nil {
		o.stat.upstreamFailures.Add(1)
		o.log.Error("upstream unavailable; closing connection", "upstream", o.up.DestinationName,
			"endpoints", len(ps.snap.Endpoints), "error", err)
		return
	}
	defer tc.Close()
	o.stat.active.Add(1)
	recv, sent, err := forward(o.loops, tc, tc.NetConn().(*loopConn), c, o.conns, c)
	o.stat.active.Add(-1)
	if err != nil {
		o.log.Debug("outbound connection aborted", "upstream", o.up.DestinationName, "endpoint", ep.Address, "reason", err)
	}
	o.stat.connections.Add(1)
	if o.log.Enabled(context.Background(), slog.LevelDebug) {
		o.log.Debug("outbound connection closed", "upstream", o.up.DestinationName, "endpoint", ep.Address,
			"bytes_out", sent, "bytes_in", recv, "duration", time.Since(start))
	}
}

// dial tries up to maxDialAttempts distinct endpoints, in picker order.
func (o *outbound) dial(ps *pickerState) (*tls.Conn, discovery.Endpoint, error) {
	var errs []error
	tried := make(map[string]bool, maxDialAttempts)
	attempts := min(maxDialAttempts, len(ps.snap.Endpoints))
	for i := 0; len(tried) < attempts && i < 4*maxDialAttempts; i++ {
		ep, err := ps.picker.Pick()
		if err != nil {
			return nil, ep, err
		}
		if tried[ep.Address] {
			continue
		}
		tried[ep.Address] = true
		tc, err := o.dialer.Dial(context.Background(), ep.Address, ep.Identity)
		if err == nil {
			return tc, ep, nil
		}
		o.log.Warn("upstream endpoint failed; trying another", "upstream", o.up.DestinationName, "endpoint", ep.Address, "error", err)
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return nil, discovery.Endpoint{}, balance.ErrNoEndpoint
	}
	return nil, discovery.Endpoint{}, errors.Join(errs...)
}

//go:build !linux

package sidecar

import (
	"crypto/tls"
	"errors"
	"net"
)

// Outside Linux there is no event loop: streams are spliced by goroutines.

type loopConn struct{ net.Conn }

func newLoopConn(c net.Conn) *loopConn { return &loopConn{Conn: c} }

type loops struct{}

func newLoops(int) (*loops, error) { return nil, errors.New("sidecar: the event loop needs Linux") }

func (*loops) relayStream(*tls.Conn, *loopConn, net.Conn, *tracker, net.Conn) (int64, int64, error) {
	return 0, 0, errors.New("sidecar: the event loop needs Linux")
}

func (*loops) close() {}

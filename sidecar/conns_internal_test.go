package sidecar

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
)

// drainInbound ends the public listener's keep-alive connections at once
// (and any registered later), leaving the application's outbound ones to
// drain, which ends the rest.
func TestTrackerDrainsInboundFirst(t *testing.T) {
	tr := newTracker()
	pipe := func() net.Conn {
		a, b := net.Pipe()
		t.Cleanup(func() { a.Close(); b.Close() })
		return a
	}
	// Each connection, told to end, closes (as one idle between requests
	// does); drain calls the funcs before it waits.
	told := map[string]bool{}
	register := func(name string, inbound bool) {
		c := pipe()
		done, ok := tr.add(c)
		if !ok {
			t.Fatalf("%s: refused before drain", name)
		}
		tr.onDrain(c, func() { told[name] = true; done() }, inbound)
	}
	register("in", true)
	register("out", false)
	tr.drainInbound()
	if !told["in"] || told["out"] {
		t.Fatalf("after drainInbound: told %v, want only the inbound connection", told)
	}
	register("in-late", true)
	register("out-late", false)
	if !told["in-late"] || told["out-late"] {
		t.Fatalf("registered after drainInbound: told %v, want the inbound one at once", told)
	}
	if n := tr.drain(context.Background()); n != 0 {
		t.Fatalf("drain closed %d connections, want 0", n)
	}
	if !told["out"] || !told["out-late"] {
		t.Fatalf("after drain: told %v, want every connection", told)
	}
}

// A connection handed over once drain started (accepted just before its
// listener closed) is closed and refused, not tracked behind drain's back:
// drain's wait has begun and would not cover its handler.
func TestTrackerRefusesAfterDrain(t *testing.T) {
	tr := newTracker()
	if n := tr.drain(context.Background()); n != 0 {
		t.Fatalf("drain closed %d connections, want 0", n)
	}
	a, b := net.Pipe()
	defer b.Close()
	if release, ok := tr.add(a); ok || release != nil {
		t.Fatal("a connection added after drain was accepted")
	}
	if _, err := a.Write([]byte("x")); !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("refused connection still open: write error %v", err)
	}
	if n := tr.count(); n != 0 {
		t.Fatalf("tracker holds %d connections, want 0", n)
	}
}

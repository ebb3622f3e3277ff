package sidecar

import (
	"io"
	"net"
	"testing"
)

// cycleConn is a net.Conn whose Read serves data over and over and whose
// Write discards (the guard's own cost, without a socket's).
type cycleConn struct {
	net.Conn
	data []byte
	off  int
}

func (c *cycleConn) Read(p []byte) (int, error) {
	if c.off == len(c.data) {
		c.off = 0
	}
	n := copy(p, c.data[c.off:])
	c.off += n
	return n, nil
}

func (c *cycleConn) Write(p []byte) (int, error) { return len(p), nil }
func (c *cycleConn) Close() error                { return nil }

// BenchmarkGuardedConnRead reads a client's request stream (HEADERS, a 1
// KiB DATA frame, an empty DATA ending the stream) the way Go's HTTP/2
// server does: each frame header, then its payload, one Read each.
func BenchmarkGuardedConnRead(b *testing.B) {
	var cycle []byte
	cycle = append(cycle, h2frame(frameHeaders, flagEndHeaders, 1, 40)...)
	cycle = append(cycle, h2frame(frameData, 0, 1, 1024)...)
	cycle = append(cycle, h2frame(frameData, flagEndStream, 1, 16)...)
	g := newGuardedConn(&cycleConn{data: cycle}, func(string, bool) { b.Fatal("abuse") })
	g.scan.scan([]byte(clientPreface))
	buf := make([]byte, 16<<10)
	b.SetBytes(int64(len(cycle)))
	b.ReportAllocs()
	for b.Loop() {
		for range 3 {
			if _, err := io.ReadFull(g, buf[:9]); err != nil {
				b.Fatal(err)
			}
			n := int(buf[0])<<16 | int(buf[1])<<8 | int(buf[2])
			if _, err := io.ReadFull(g, buf[:n]); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkGuardedConnWrite writes a server's response stream the way
// Go's HTTP/2 server's 4 KiB bufio.Writer hands it over: a HEADERS frame
// and two 16 KiB DATA frames, in 4 KiB writes.
func BenchmarkGuardedConnWrite(b *testing.B) {
	var cycle []byte
	cycle = append(cycle, h2frame(frameSettings, 0, 0, 0)...) // so the writes are known to be HTTP/2
	for range 4 {
		cycle = append(cycle, h2frame(frameHeaders, flagEndHeaders, 1, 60)...)
		cycle = append(cycle, h2frame(frameData, 0, 1, 16<<10)...)
		cycle = append(cycle, h2frame(frameData, flagEndStream, 1, 16<<10)...)
	}
	g := newGuardedConn(&cycleConn{}, func(string, bool) {})
	b.SetBytes(int64(len(cycle)))
	b.ReportAllocs()
	for b.Loop() {
		for p := cycle; len(p) > 0; {
			n := min(len(p), 4<<10)
			if _, err := g.Write(p[:n]); err != nil {
				b.Fatal(err)
			}
			p = p[n:]
		}
	}
}

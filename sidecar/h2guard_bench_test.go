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
	b.Run("bare", func(b *testing.B) { benchReads(b, &cycleConn{data: cycle}, len(cycle)) })
	b.Run("guarded", func(b *testing.B) { benchReads(b, g, len(cycle)) })
}

func benchReads(b *testing.B, c net.Conn, size int) {
	buf := make([]byte, 16<<10)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for b.Loop() {
		for range 3 {
			if _, err := io.ReadFull(c, buf[:9]); err != nil {
				b.Fatal(err)
			}
			n := int(buf[0])<<16 | int(buf[1])<<8 | int(buf[2])
			if _, err := io.ReadFull(c, buf[:n]); err != nil {
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
	b.Run("bare", func(b *testing.B) { benchWrites(b, &cycleConn{}, cycle) })
	b.Run("guarded", func(b *testing.B) { benchWrites(b, newGuardedConn(&cycleConn{}, func(string, bool) {}), cycle) })
}

func benchWrites(b *testing.B, c net.Conn, cycle []byte) {
	b.SetBytes(int64(len(cycle)))
	b.ReportAllocs()
	for b.Loop() {
		for p := cycle; len(p) > 0; {
			n := min(len(p), 4<<10)
			if _, err := c.Write(p[:n]); err != nil {
				b.Fatal(err)
			}
			p = p[n:]
		}
	}
}

// BenchmarkGuardedConnWriteTCP is BenchmarkGuardedConnWrite over a
// loopback TCP connection, whose reader discards: the guard's cost beside
// a real write's.
func BenchmarkGuardedConnWriteTCP(b *testing.B) {
	var cycle []byte
	cycle = append(cycle, h2frame(frameSettings, 0, 0, 0)...)
	for range 4 {
		cycle = append(cycle, h2frame(frameHeaders, flagEndHeaders, 1, 60)...)
		cycle = append(cycle, h2frame(frameData, 0, 1, 16<<10)...)
		cycle = append(cycle, h2frame(frameData, flagEndStream, 1, 16<<10)...)
	}
	dial := func(b *testing.B) net.Conn {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		go func() {
			c, err := ln.Accept()
			if err == nil {
				io.Copy(io.Discard, c)
				c.Close()
			}
		}()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		return c
	}
	b.Run("bare", func(b *testing.B) { benchWrites(b, dial(b), cycle) })
	b.Run("guarded", func(b *testing.B) { benchWrites(b, newGuardedConn(dial(b), func(string, bool) {}), cycle) })
}

package sidecar

import (
	"bytes"
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// recordConn is a net.Conn that records what is written to it and reads
// EOF; onWrite, when set, runs inside each Write before it records (the
// reader's goroutine acting while the server's write is in progress).
type recordConn struct {
	net.Conn
	mu      sync.Mutex
	buf     bytes.Buffer
	writes  int
	onWrite func(i int)
	closed  bool
}

func (c *recordConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	i := c.writes
	c.writes++
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return 0, net.ErrClosed
	}
	if c.onWrite != nil {
		c.onWrite(i)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.Write(p)
}

func (c *recordConn) Read([]byte) (int, error)         { return 0, io.EOF }
func (c *recordConn) SetWriteDeadline(time.Time) error { return nil }
func (c *recordConn) SetReadDeadline(time.Time) error  { return nil }
func (c *recordConn) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	return nil
}
func (c *recordConn) bytes() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.buf.Bytes())
}

// serverStream is what Go's HTTP/2 server would write: its SETTINGS,
// then frames, encoded by http2.Framer.
func serverStream(t testing.TB, frames func(fr *http2.Framer)) []byte {
	var b bytes.Buffer
	fr := http2.NewFramer(&b, nil)
	if err := fr.WriteSettings(http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 100}); err != nil {
		t.Fatal(err)
	}
	frames(fr)
	return b.Bytes()
}

// readFrames parses b with http2.Framer; it fails t unless b is whole,
// valid frames.
func readFrames(t testing.TB, b []byte) []http2.Frame {
	t.Helper()
	fr := http2.NewFramer(io.Discard, bytes.NewReader(b))
	fr.SetMaxReadFrameSize(1 << 24)
	var out []http2.Frame
	for {
		f, err := fr.ReadFrame()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("written stream does not parse after %d frames: %v", len(out), err)
		}
		if d, ok := f.(*http2.DataFrame); ok {
			d.Data() // valid until the next ReadFrame only
		}
		out = append(out, f)
	}
}

// lastGoAway checks that the stream ends with the guard's GOAWAY and
// returns it.
func lastGoAway(t *testing.T, frames []http2.Frame) *http2.GoAwayFrame {
	t.Helper()
	if len(frames) == 0 {
		t.Fatal("nothing written")
	}
	ga, ok := frames[len(frames)-1].(*http2.GoAwayFrame)
	if !ok {
		t.Fatalf("last frame is %v, want GOAWAY", frames[len(frames)-1].Header())
	}
	if ga.ErrCode != http2.ErrCodeEnhanceYourCalm {
		t.Errorf("GOAWAY code %v, want ENHANCE_YOUR_CALM", ga.ErrCode)
	}
	return ga
}

func TestOutFramesBoundaries(t *testing.T) {
	stream := serverStream(t, func(fr *http2.Framer) {
		fr.WriteData(1, false, make([]byte, 10000))
		fr.WritePing(true, [8]byte{})
		fr.WriteData(1, true, nil)
	})
	// The frame ends, from the frames' lengths: SETTINGS (9+6), DATA
	// (9+10000), PING (9+8), empty DATA (9).
	ends := []int{15, 15 + 10009, 15 + 10009 + 17, 15 + 10009 + 17 + 9}
	isEnd := map[int]bool{0: true}
	for _, e := range ends {
		isEnd[e] = true
	}
	for _, chunk := range []int{1, 3, 9, 10, 4096, len(stream)} {
		var o outFrames
		for off := 0; off < len(stream); {
			p := stream[off:min(off+chunk, len(stream))]
			// rest finds the next frame end without moving o.
			want := len(p)
			for e := off + 1; e <= off+len(p); e++ {
				if isEnd[e] {
					want = e - off
					break
				}
			}
			if got := o.rest(p); got != want {
				t.Fatalf("chunk %d at %d: rest %d, want %d", chunk, off, got, want)
			}
			o.advance(p)
			off += len(p)
			if o.atBoundary() != isEnd[off] {
				t.Fatalf("chunk %d at %d: atBoundary %v, want %v", chunk, off, o.atBoundary(), isEnd[off])
			}
		}
	}
	var o outFrames
	if o.advance([]byte("HTTP/1.1 200 OK\r\n\r\n")); !o.plain || o.atBoundary() {
		t.Fatalf("an HTTP/1.1 response is followed as frames: %+v", o)
	}
}

func TestOutFramesServerGoAway(t *testing.T) {
	stream := serverStream(t, func(fr *http2.Framer) { fr.WriteGoAway(7, http2.ErrCodeNo, []byte("bye")) })
	var o outFrames
	for i := range stream {
		o.advance(stream[i : i+1])
	}
	if !o.goAway || o.goAwayLast != 7 {
		t.Fatalf("server GOAWAY not seen: %+v", o)
	}
	g := &guardedConn{out: o}
	ga := appendGoAway(nil, 7, errCodeEnhanceYourCalm, "x")
	if got := g.appendGoAway(nil, goAwayRequest{last: 9, debug: "x"}); !bytes.Equal(got, ga) {
		t.Fatalf("GOAWAY after the server's names a higher last stream: % x", got)
	}
}

// TestGuardedConnGoAway: where the guard's GOAWAY goes relative to the
// server's writes.
func TestGuardedConnGoAway(t *testing.T) {
	stream := serverStream(t, func(fr *http2.Framer) {
		fr.WritePing(true, [8]byte{1})
		fr.WriteData(1, false, make([]byte, 16<<10))
		fr.WriteData(1, true, make([]byte, 100))
	})
	dataEnd := 15 + 17 + 9 + 16<<10 // the end of the large DATA frame

	t.Run("idle server", func(t *testing.T) {
		rc := &recordConn{}
		g := newGuardedConn(rc, nil)
		if _, err := g.Write(stream[:15+17]); err != nil {
			t.Fatal(err)
		}
		if !g.goAway(goAwayRequest{last: 5, debug: "ping"}) {
			t.Fatal("GOAWAY not sent")
		}
		if n, err := g.Write(stream[15+17:]); n != 0 || !errors.Is(err, errAbuse) {
			t.Fatalf("write after GOAWAY: %d %v", n, err)
		}
		frames := readFrames(t, rc.bytes())
		ga := lastGoAway(t, frames)
		if len(frames) != 3 || ga.LastStreamID != 5 || string(ga.DebugData()) != "ping" {
			t.Fatalf("frames %d, GOAWAY last %d debug %q", len(frames), ga.LastStreamID, ga.DebugData())
		}
	})

	t.Run("pending while a large DATA frame is written", func(t *testing.T) {
		rc := &recordConn{}
		g := newGuardedConn(rc, nil)
		res := make(chan bool)
		// The server's bufio.Writer hands the frames over in 4 KiB
		// writes; the abuse comes while the second one is written.
		rc.onWrite = func(i int) {
			if i == 1 {
				go func() { res <- g.goAway(goAwayRequest{last: 1, debug: "x"}) }()
				for { // until the reader has seen the write in progress
					g.mu.Lock()
					p := g.pending != nil
					g.mu.Unlock()
					if p {
						return
					}
					runtime.Gosched()
				}
			}
		}
		var werr error
		written := 0
		for off := 0; off < len(stream) && werr == nil; off += 4096 {
			var n int
			n, werr = g.Write(stream[off:min(off+4096, len(stream))])
			written += n
		}
		if !<-res {
			t.Fatal("GOAWAY not sent")
		}
		if !errors.Is(werr, errAbuse) || written != dataEnd {
			t.Fatalf("server wrote %d bytes (%v), want the %d up to the end of the DATA frame, then errAbuse", written, werr, dataEnd)
		}
		out := rc.bytes()
		if !bytes.Equal(out[:dataEnd], stream[:dataEnd]) {
			t.Fatal("the server's bytes were changed")
		}
		frames := readFrames(t, out)
		lastGoAway(t, frames)
		if len(frames) != 4 {
			t.Fatalf("%d frames, want SETTINGS, PING, DATA, GOAWAY", len(frames))
		}
	})

	t.Run("before the server's SETTINGS", func(t *testing.T) {
		rc := &recordConn{}
		g := newGuardedConn(rc, nil)
		if !g.goAway(goAwayRequest{last: 0, debug: "x"}) {
			t.Fatal("GOAWAY not sent")
		}
		frames := readFrames(t, rc.bytes())
		if _, ok := frames[0].(*http2.SettingsFrame); !ok || len(frames) != 2 {
			t.Fatalf("frames %v, want SETTINGS then GOAWAY", frames)
		}
		lastGoAway(t, frames)
	})

	t.Run("HTTP/1.1", func(t *testing.T) {
		rc := &recordConn{}
		g := newGuardedConn(rc, nil)
		g.Write([]byte("HTTP/1.1 200 OK\r\n"))
		if g.goAway(goAwayRequest{}) {
			t.Fatal("GOAWAY on an HTTP/1.1 connection")
		}
		if string(rc.bytes()) != "HTTP/1.1 200 OK\r\n" {
			t.Fatalf("wrote %q", rc.bytes())
		}
	})
}

// blockedConn's Write blocks until it is closed: a peer that does not read.
type blockedConn struct {
	recordConn
	once    sync.Once
	closing chan struct{}
	entered chan struct{}
}

func (c *blockedConn) Write(p []byte) (int, error) {
	c.entered <- struct{}{}
	<-c.closing
	return 0, net.ErrClosed
}

func (c *blockedConn) Close() error {
	c.once.Do(func() { close(c.closing) })
	return nil
}

// TestGuardedConnBlockedWrite: a server write blocked on a peer that does
// not read cannot hold the guard: it gives up the GOAWAY, closes the
// connection (which ends the write) and reports it.
func TestGuardedConnBlockedWrite(t *testing.T) {
	bc := &blockedConn{closing: make(chan struct{}), entered: make(chan struct{}, 1)}
	reported := make(chan bool, 1)
	g := newGuardedConn(bc, func(_ string, goAway bool) { reported <- goAway })
	werr := make(chan error, 1)
	go func() {
		_, err := g.Write(h2frame(frameSettings, 0, 0, 0))
		werr <- err
	}()
	<-bc.entered
	g.end(abusePing)
	if <-reported {
		t.Error("reported a GOAWAY that was not written")
	}
	if err := <-werr; err == nil {
		t.Error("the blocked write succeeded")
	}
	if err := g.Close(); err != nil {
		t.Errorf("Close after end: %v", err)
	}
}

// TestGuardedConnEnd: the guard's end of a connection as the server sees
// it through Read, with the GOAWAY, the metric callback and Close waiting
// for the linger.
func TestGuardedConnEnd(t *testing.T) {
	client, server := net.Pipe()
	reported := make(chan string, 1)
	g := newGuardedConn(server, func(reason string, goAway bool) {
		if goAway {
			reported <- reason
		} else {
			reported <- ""
		}
	})
	go func() {
		var b []byte
		b = append(b, clientPreface...)
		b = append(b, h2frame(frameSettings, 0, 0, 0)...)
		b = append(b, h2frame(frameHeaders, flagEndHeaders|flagEndStream, 3, 10)...)
		for range 200 {
			b = append(b, h2frame(framePing, 0, 0, 8)...)
		}
		client.Write(b)
	}()
	// The client reads until GOAWAY, then closes, which ends the
	// guard's linger.
	got := make(chan []byte)
	go func() {
		var b bytes.Buffer
		fr := http2.NewFramer(io.Discard, io.TeeReader(client, &b))
		for {
			f, err := fr.ReadFrame()
			if _, ok := f.(*http2.GoAwayFrame); ok || err != nil {
				break
			}
		}
		client.Close()
		got <- b.Bytes()
	}()
	buf := make([]byte, 64<<10)
	var err error
	for err == nil {
		_, err = g.Read(buf)
	}
	if !errors.Is(err, errAbuse) {
		t.Fatalf("server read %v, want errAbuse", err)
	}
	if r := <-reported; r != abusePing {
		t.Fatalf("reported %q, want %q with GOAWAY", r, abusePing)
	}
	frames := readFrames(t, <-got)
	ga := lastGoAway(t, frames)
	if ga.LastStreamID != 3 || string(ga.DebugData()) != "too_many_pings" {
		t.Errorf("GOAWAY last stream %d debug %q, want 3 and too_many_pings", ga.LastStreamID, ga.DebugData())
	}
}

// FuzzGuardedConnWrites writes a server's frames in chunks the input
// chooses, with the GOAWAY asked for at a point it chooses (between
// writes or during one), and checks that what went out is the server's
// stream up to a frame end, then the GOAWAY: valid frames for
// http2.Framer, none cut.
func FuzzGuardedConnWrites(f *testing.F) {
	f.Add([]byte{3, 200, 7, 1, 0, 40}, uint16(5), false)
	f.Add([]byte{0, 1, 1, 1, 2, 2}, uint16(0), true)
	f.Add([]byte{9, 9, 9, 250, 250, 250, 1, 2, 3}, uint16(3), true)
	f.Fuzz(func(t *testing.T, plan []byte, at uint16, during bool) {
		if len(plan) > 64 {
			plan = plan[:64]
		}
		// Frames from the plan's even bytes, chunk sizes from the odd.
		stream := serverStream(t, func(fr *http2.Framer) {
			for i := 0; i < len(plan); i += 2 {
				b := plan[i]
				switch b % 5 {
				case 0:
					fr.WriteData(uint32(b)|1, false, make([]byte, int(b)*70))
				case 1:
					fr.WritePing(true, [8]byte{b})
				case 2:
					fr.WriteRSTStream(uint32(b)|1, http2.ErrCodeCancel)
				case 3:
					fr.WriteWindowUpdate(0, uint32(b)+1)
				case 4:
					fr.WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(b) | 1, BlockFragment: make([]byte, b), EndHeaders: true})
				}
			}
		})
		var chunks []int
		for i := 1; i < len(plan); i += 2 {
			chunks = append(chunks, int(plan[i])*37+1)
		}
		if len(chunks) == 0 {
			chunks = []int{len(stream)}
		}
		rc := &recordConn{}
		g := newGuardedConn(rc, nil)
		res := make(chan bool, 1)
		ask := func() {
			go func() { res <- g.goAway(goAwayRequest{last: 1, debug: "f"}) }()
			for {
				g.mu.Lock()
				asked := g.done != nil
				g.mu.Unlock()
				if asked {
					return
				}
				runtime.Gosched()
			}
		}
		if during {
			rc.onWrite = func(i int) {
				if i == int(at)%8 {
					ask()
				}
			}
		}
		asked := during
		var werr error
		for i, off := 0, 0; off < len(stream) && werr == nil; i++ {
			if !during && i == int(at)%8 {
				ask()
				asked = true
			}
			n := min(chunks[i%len(chunks)], len(stream)-off)
			var w int
			w, werr = g.Write(stream[off : off+n])
			off += w
		}
		if !asked || during && rc.writes <= int(at)%8 {
			return // the stream ended before the GOAWAY was asked for
		}
		// The server's stream ends with a whole frame: a Write always
		// comes to end the frame the GOAWAY waits for.
		if !<-res {
			t.Fatal("GOAWAY not sent")
		}
		out := rc.bytes()
		lastGoAway(t, readFrames(t, out))
		body := out[:len(out)-(9+8+1)]
		if !during && at%8 == 0 {
			// Asked before the server wrote: the guard's own SETTINGS.
			if !bytes.Equal(body, h2frame(frameSettings, 0, 0, 0)) {
				t.Fatalf("before the server's first write: % x", body)
			}
		} else if !bytes.Equal(body, stream[:len(body)]) {
			t.Fatal("the server's bytes were changed")
		}
	})
}

package sidecar

import (
	"testing"
	"time"
)

// h2frame encodes one frame header and a payload of n zero bytes.
func h2frame(typ, flags byte, stream uint32, n int) []byte {
	b := []byte{byte(n >> 16), byte(n >> 8), byte(n), typ, flags, byte(stream >> 24), byte(stream >> 16), byte(stream >> 8), byte(stream)}
	return append(b, make([]byte, n)...)
}

func repeatFrame(n int, f []byte) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = f
	}
	return out
}

// fakeClock is a clock tests move by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func TestFrameScanner(t *testing.T) {
	type step struct {
		frames  [][]byte
		advance time.Duration
	}
	repeat := func(n int, advance time.Duration, f func(i int) [][]byte) []step {
		out := make([]step, n)
		for i := range out {
			out[i] = step{frames: f(i), advance: advance}
		}
		return out
	}
	headers := func(id uint32, flags byte) []byte { return h2frame(frameHeaders, flags, id, 10) }
	cases := []struct {
		name  string
		steps []step
		want  string
	}{
		{"rapid reset", repeat(300, 0, func(i int) [][]byte {
			id := uint32(2*i + 1)
			return [][]byte{headers(id, flagEndHeaders|flagEndStream), h2frame(frameRSTStream, 0, id, 4)}
		}), abuseRapidReset},
		{"requests without resets", repeat(2000, time.Millisecond, func(i int) [][]byte {
			return [][]byte{headers(uint32(2*i+1), flagEndHeaders|flagEndStream)}
		}), ""},
		{"cancellations after a second are not premature", repeat(300, 0, func(i int) [][]byte {
			return [][]byte{headers(uint32(2*i+1), flagEndHeaders)}
		}), ""},
		{"some early cancellations among many requests", repeat(1000, time.Millisecond, func(i int) [][]byte {
			id := uint32(2*i + 1)
			f := [][]byte{headers(id, flagEndHeaders|flagEndStream)}
			if i%3 == 0 {
				f = append(f, h2frame(frameRSTStream, 0, id, 4))
			}
			return f
		}), ""},
		{"ping flood", repeat(150, 0, func(int) [][]byte { return [][]byte{h2frame(framePing, 0, 0, 8)} }), abusePing},
		{"ping acks are answers", repeat(500, 0, func(int) [][]byte { return [][]byte{h2frame(framePing, flagAck, 0, 8)} }), ""},
		{"keepalive pings", repeat(500, time.Second, func(int) [][]byte { return [][]byte{h2frame(framePing, 0, 0, 8)} }), ""},
		{"settings flood", repeat(150, 0, func(int) [][]byte { return [][]byte{h2frame(frameSettings, 0, 0, 6)} }), abuseSettings},
		{"empty data flood", repeat(300, 0, func(int) [][]byte { return [][]byte{h2frame(frameData, 0, 1, 0)} }), abuseEmptyData},
		{"priority flood", repeat(1200, 0, func(int) [][]byte { return [][]byte{h2frame(framePriority, 0, 1, 5)} }), abusePriority},
		{"window update flood", repeat(11000, 0, func(int) [][]byte { return [][]byte{h2frame(frameWindowUpdate, 0, 0, 4)} }), abuseWindowUpdate},
		{"continuation flood", []step{{frames: append([][]byte{headers(1, 0)}, repeatFrame(100, h2frame(frameContinuation, 0, 1, 1))...)}}, abuseContinuation},
		{"a header block in a few continuations", []step{{frames: append([][]byte{headers(1, 0)}, repeatFrame(20, h2frame(frameContinuation, 0, 1, 1))...)}}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			clk := &fakeClock{t: time.Unix(1e9, 0)}
			s := frameScanner{now: clk.now}
			if r := s.scan([]byte(clientPreface)); r != "" {
				t.Fatalf("preface: %s", r)
			}
			got := ""
			for i, st := range c.steps {
				for _, f := range st.frames {
					if got = s.scan(f); got != "" {
						break
					}
				}
				if got != "" {
					t.Logf("closed at step %d", i)
					break
				}
				clk.t = clk.t.Add(st.advance)
				if c.name == "cancellations after a second are not premature" && i == len(c.steps)-1 {
					// Now reset them all, two seconds later.
					clk.t = clk.t.Add(2 * time.Second)
					for j := range c.steps {
						if got = s.scan(h2frame(frameRSTStream, 0, uint32(2*j+1), 4)); got != "" {
							break
						}
					}
				}
			}
			if got != c.want {
				t.Fatalf("scan = %q, want %q", got, c.want)
			}
		})
	}
}

// TestFrameScannerSplitReads feeds the stream one byte at a time: frame
// headers and the preface split across reads are followed.
func TestFrameScannerSplitReads(t *testing.T) {
	s := frameScanner{now: time.Now}
	var stream []byte
	stream = append(stream, clientPreface...)
	for i := range 200 {
		id := uint32(2*i + 1)
		stream = append(stream, h2frame(frameHeaders, flagEndHeaders, id, 17)...)
		stream = append(stream, h2frame(frameData, 0, id, 300)...)
		stream = append(stream, h2frame(frameRSTStream, 0, id, 4)...)
	}
	got := ""
	for i := range stream {
		if got = s.scan(stream[i : i+1]); got != "" {
			break
		}
	}
	if got != abuseRapidReset {
		t.Fatalf("byte-wise scan = %q, want %q", got, abuseRapidReset)
	}
}

func TestFrameScannerIgnoresHTTP1(t *testing.T) {
	s := frameScanner{now: time.Now}
	req := []byte("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
	if r := s.scan(req); r != "" || !s.off {
		t.Fatalf("HTTP/1.1: %q off=%v", r, s.off)
	}
	for range 1000 {
		if r := s.scan(h2frame(framePing, 0, 0, 8)); r != "" {
			t.Fatalf("bytes after an HTTP/1.1 head judged as frames: %s", r)
		}
	}
}

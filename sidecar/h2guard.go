package sidecar

import (
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// The HTTP/2 guard reads the frame headers a client sends, as they pass
// to the HTTP/2 server, and ends the connection (GOAWAY ENHANCE_YOUR_CALM,
// then a close: see guardedConn.end) when the client abuses
// the protocol in ways the server itself does not bound: streams reset
// right after they were opened (rapid reset, CVE-2023-44487: each one a
// request started upstream), and floods of frames that cost the proxy
// work or answers without being requests (PING, SETTINGS, WINDOW_UPDATE,
// PRIORITY, empty DATA, CONTINUATION). Header block size and concurrent
// streams are bounded by the server (MaxHeaderBytes, MaxConcurrentStreams).
//
// The limits follow Envoy's edge defaults in spirit (premature resets over
// half of at least 100 streams; one empty frame in a row there, a budget
// here) and leave room for real clients: gRPC keepalive pings every few
// seconds, a WINDOW_UPDATE per DATA frame of a fast download, cancelled
// calls.
const (
	// prematureReset is how soon after its HEADERS a reset counts as
	// premature.
	prematureReset = time.Second
	// minResetStreams: premature resets are judged once this many streams
	// were reset early, and the connection closed when they are at least
	// half of the streams it opened.
	minResetStreams = 100
	// maxContinuation bounds CONTINUATION frames per header block (a
	// block of 64 KiB in 1-byte frames would otherwise be 65536 frames).
	maxContinuation = 64
)

// frameBudget is a token bucket of frames per second with a burst.
type frameBudget struct {
	rate, burst float64
}

var (
	pingBudget         = frameBudget{rate: 10, burst: 100}
	settingsBudget     = frameBudget{rate: 10, burst: 100}
	emptyDataBudget    = frameBudget{rate: 100, burst: 200}
	priorityBudget     = frameBudget{rate: 100, burst: 1000}
	windowUpdateBudget = frameBudget{rate: 10000, burst: 10000}
)

// Reasons a guarded connection is closed (metric label values).
const (
	abuseRapidReset   = "rapid_reset"
	abusePing         = "ping_flood"
	abuseSettings     = "settings_flood"
	abuseEmptyData    = "empty_data_flood"
	abusePriority     = "priority_flood"
	abuseWindowUpdate = "window_update_flood"
	abuseContinuation = "continuation_flood"
)

// errAbuse is what the server reads from a connection the guard closed.
var errAbuse = errors.New("sidecar: HTTP/2 connection closed for protocol abuse")

// HTTP/2 frame types and flags the guard reads (RFC 9113 §6).
const (
	frameData         = 0x0
	frameHeaders      = 0x1
	framePriority     = 0x2
	frameRSTStream    = 0x3
	frameSettings     = 0x4
	framePing         = 0x6
	frameGoAway       = 0x7
	frameWindowUpdate = 0x8
	frameContinuation = 0x9

	flagEndStream  = 0x1
	flagAck        = 0x1
	flagEndHeaders = 0x4
)

const clientPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// bucket is one frameBudget's state.
type bucket struct {
	tokens float64
	last   time.Time
}

func (b *bucket) take(f frameBudget, now time.Time) bool {
	if b.last.IsZero() {
		b.tokens, b.last = f.burst, now
	}
	b.tokens = min(f.burst, b.tokens+now.Sub(b.last).Seconds()*f.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// frameScanner follows the frame boundaries of a client's byte stream.
// Not safe for concurrent use: the server reads a connection from one
// goroutine.
type frameScanner struct {
	now func() time.Time

	preface int  // bytes of the client preface still to skip
	off     bool // not HTTP/2 (an HTTP/1.1 connection): nothing to check
	started bool

	hdr  [9]byte
	hdrN int
	skip uint32 // payload bytes of the current frame still to pass

	contN int // CONTINUATION frames in the current header block

	// streams opened, by id, with when (recent ones only: a stream
	// older than prematureReset no longer matters).
	opened                 map[uint32]time.Time
	streams, premature     int
	lastStream             uint32 // the highest stream the client opened
	ping, settings, empty  bucket
	priority, windowUpdate bucket
}

// scan reads p, the next bytes from the client; it returns the reason to
// close the connection, or "".
func (s *frameScanner) scan(p []byte) string {
	if s.off {
		return ""
	}
	if !s.started {
		s.started = true
		s.preface = len(clientPreface)
	}
	for len(p) > 0 {
		if s.preface > 0 {
			i := len(clientPreface) - s.preface
			n := min(s.preface, len(p))
			if string(p[:n]) != clientPreface[i:i+n] {
				s.off = true // HTTP/1.1 on a connection that may carry either
				return ""
			}
			s.preface -= n
			p = p[n:]
			continue
		}
		if s.skip > 0 {
			n := min(uint32(len(p)), s.skip)
			s.skip -= n
			p = p[n:]
			continue
		}
		n := copy(s.hdr[s.hdrN:], p)
		s.hdrN += n
		p = p[n:]
		if s.hdrN < len(s.hdr) {
			return ""
		}
		s.hdrN = 0
		length := uint32(s.hdr[0])<<16 | uint32(s.hdr[1])<<8 | uint32(s.hdr[2])
		s.skip = length
		if reason := s.frame(s.hdr[3], s.hdr[4], (uint32(s.hdr[5])<<24|uint32(s.hdr[6])<<16|uint32(s.hdr[7])<<8|uint32(s.hdr[8]))&0x7fffffff, length); reason != "" {
			return reason
		}
	}
	return ""
}

// frame judges one frame header.
func (s *frameScanner) frame(typ, flags byte, stream, length uint32) string {
	now := s.now()
	switch typ {
	case frameHeaders:
		if _, seen := s.opened[stream]; !seen && stream%2 == 1 {
			if s.opened == nil {
				s.opened = map[uint32]time.Time{}
			}
			if len(s.opened) >= 4096 {
				for id, t := range s.opened {
					if now.Sub(t) > prematureReset {
						delete(s.opened, id)
					}
				}
			}
			if len(s.opened) < 8192 {
				s.opened[stream] = now
			}
			s.streams++
			s.lastStream = max(s.lastStream, stream)
		}
		s.contN = 0
		if flags&flagEndHeaders == 0 {
			s.contN = 1
		}
	case frameContinuation:
		if s.contN++; s.contN > maxContinuation {
			return abuseContinuation
		}
	case frameRSTStream:
		if t, ok := s.opened[stream]; ok {
			delete(s.opened, stream)
			if now.Sub(t) < prematureReset {
				s.premature++
				if s.premature >= minResetStreams && 2*s.premature >= s.streams {
					return abuseRapidReset
				}
			}
		}
	case framePing:
		if flags&flagAck == 0 && !s.ping.take(pingBudget, now) {
			return abusePing
		}
	case frameSettings:
		if flags&flagAck == 0 && !s.settings.take(settingsBudget, now) {
			return abuseSettings
		}
	case frameData:
		if length == 0 && flags&flagEndStream == 0 && !s.empty.take(emptyDataBudget, now) {
			return abuseEmptyData
		}
		if flags&flagEndStream != 0 {
			delete(s.opened, stream)
		}
	case framePriority:
		if !s.priority.take(priorityBudget, now) {
			return abusePriority
		}
	case frameWindowUpdate:
		if !s.windowUpdate.take(windowUpdateBudget, now) {
			return abuseWindowUpdate
		}
	}
	return ""
}

// Ending an abusive connection (RFC 9113 §5.4.1: a connection error is
// announced with GOAWAY before the close). The GOAWAY goes between two of
// the server's frames: Go's HTTP/2 server writes on the same connection,
// from its own goroutines, through a bufio.Writer, so one of its Writes
// may end in the middle of a frame. The guard follows the frame headers
// the server writes (outFrames) and writes the GOAWAY where a frame ends,
// with the highest stream the client opened as the last stream (at least
// every stream the server saw: the bytes that completed the abuse never
// reach it) and ENHANCE_YOUR_CALM, the code for a peer generating
// excessive load (as Envoy, gRPC and Netty send for floods and resets).
// It then half-closes and reads, discarding, for a while before it closes
// (golang.org/issue/18701: a close with unread bytes resets the
// connection, and the client may lose the GOAWAY; Go's server waits 1 s
// after its own GOAWAY the same way).
const (
	// goAwayWait bounds the wait for the frame the server is writing to
	// end (a peer that does not read blocks the server's write) and the
	// GOAWAY's own write: past it the guard closes without GOAWAY.
	goAwayWait = 250 * time.Millisecond
	// lingerTime and lingerBytes bound the reading after the GOAWAY.
	lingerTime  = time.Second
	lingerBytes = 256 << 10

	errCodeEnhanceYourCalm = 0xb
)

// goAwayDebug is the GOAWAY's debug data for reason: gRPC's own words for
// a PING flood (gRPC clients seeing ENHANCE_YOUR_CALM "too_many_pings"
// lengthen their keepalive interval), the metric's reason otherwise.
func goAwayDebug(reason string) string {
	if reason == abusePing {
		return "too_many_pings"
	}
	return reason
}

// appendGoAway appends a GOAWAY frame (stream 0; last stream id, error
// code, debug data).
func appendGoAway(b []byte, last uint32, code uint32, debug string) []byte {
	n := 8 + len(debug)
	b = append(b, byte(n>>16), byte(n>>8), byte(n), frameGoAway, 0, 0, 0, 0, 0)
	b = binary.BigEndian.AppendUint32(b, last&0x7fffffff)
	b = binary.BigEndian.AppendUint32(b, code)
	return append(b, debug...)
}

// outFrames follows the frame boundaries of what the server writes.
// HTTP/2 server output starts with the server's SETTINGS frame; anything
// else (an HTTP/1.1 response) is plain and not followed.
type outFrames struct {
	hdr     [9]byte
	hdrN    int
	skip    uint32 // payload bytes of the current frame still to come
	started bool   // the first frame header was read
	plain   bool   // not HTTP/2

	// The last stream id of a GOAWAY the server sent: a later GOAWAY
	// must not name a higher one (RFC 9113 §6.8).
	inGoAway   bool   // the current frame is a GOAWAY
	idN        int    // bytes of its last stream id read
	id         uint32 // so far
	goAway     bool   // the server sent a GOAWAY
	goAwayLast uint32 // its last stream id
}

// atBoundary reports whether the bytes written so far end with a whole
// frame (or are none).
func (o *outFrames) atBoundary() bool { return o.hdrN == 0 && o.skip == 0 && !o.plain }

// next follows p up to the end of the current frame header or frame and
// returns how many bytes of p that was (all of p when plain).
func (o *outFrames) next(p []byte) int {
	if o.plain {
		return len(p)
	}
	if o.skip == 0 {
		n := copy(o.hdr[o.hdrN:], p)
		if o.hdrN += n; o.hdrN < len(o.hdr) {
			return n
		}
		o.hdrN = 0
		h := &o.hdr
		stream := binary.BigEndian.Uint32(h[5:]) & 0x7fffffff
		if !o.started {
			o.started = true
			if h[3] != frameSettings || h[4]&flagAck != 0 || stream != 0 {
				o.plain = true
				return len(p)
			}
		}
		o.skip = uint32(h[0])<<16 | uint32(h[1])<<8 | uint32(h[2])
		o.inGoAway, o.idN, o.id = h[3] == frameGoAway && o.skip >= 8, 0, 0
		return n
	}
	n := min(uint32(len(p)), o.skip)
	o.skip -= n
	if o.inGoAway {
		for _, c := range p[:min(int(n), 4-o.idN)] {
			o.id = o.id<<8 | uint32(c)
			if o.idN++; o.idN == 4 {
				o.inGoAway, o.goAway, o.goAwayLast = false, true, o.id&0x7fffffff
			}
		}
	}
	return int(n)
}

// advance follows all of p.
func (o *outFrames) advance(p []byte) {
	if len(p) <= int(o.skip) && !o.inGoAway {
		o.skip -= uint32(len(p)) // within a payload: most of a DATA frame's writes
		return
	}
	for len(p) > 0 && !o.plain {
		p = p[o.next(p):]
	}
}

// rest is how many bytes of p the current frame still takes (len(p) when
// it does not end in p); o does not move.
func (o *outFrames) rest(p []byte) int {
	t := *o
	for i := 0; i < len(p); {
		i += t.next(p[i:])
		if t.atBoundary() {
			return i
		}
	}
	return len(p)
}

// guardedConn is a client connection the guard watches. Read is called by
// one goroutine at a time (the server's reader), Write by one at a time
// (Go's HTTP/2 server serializes its frame writes; HTTP/1.1 writes come
// from the connection's goroutine), and each may run beside the other.
type guardedConn struct {
	net.Conn
	scan    frameScanner // the reader's
	onAbuse func(reason string, goAway bool)
	closed  bool // the reader's: the guard ended the connection

	// plain: the server's output is not HTTP/2; writes pass untracked.
	plain atomic.Bool
	// state is the write side's (writeIdle and on): a Write takes its
	// turn with one compare-and-swap and gives it back with another, so
	// the reader knows whether one is in progress; other changes are
	// made under mu.
	state atomic.Uint32
	// out follows the server's writes; owned by the Write in progress,
	// else under mu.
	out outFrames

	mu   sync.Mutex
	lost bool // two Writes overlapped: frame ends are unknown
	// pending is the GOAWAY waiting for the end of the frame being
	// written; whoever clears it sends once on sent whether it went.
	pending *goAwayRequest
	sent    chan bool
	done    chan struct{} // made when the guard starts ending the connection, closed once it is closed
}

// The write side's states.
const (
	writeIdle      = iota // no Write in progress
	writeBusy             // a Write in progress
	writeAsked            // a GOAWAY waits for the current frame to end
	writeBusyAsked        // the same, with a Write in progress
	writeStopped          // the guard ends the connection: no more writes
)

// goAwayRequest is what the GOAWAY will say.
type goAwayRequest struct {
	last  uint32
	debug string
}

func newGuardedConn(c net.Conn, onAbuse func(reason string, goAway bool)) *guardedConn {
	return &guardedConn{Conn: c, scan: frameScanner{now: time.Now}, onAbuse: onAbuse}
}

// Read passes the client's bytes on unless they complete an abuse, in
// which case the guard ends the connection (end) and the server reads
// errAbuse instead (none of the offending bytes reach it).
func (g *guardedConn) Read(p []byte) (int, error) {
	if g.closed {
		return 0, errAbuse
	}
	n, err := g.Conn.Read(p)
	if n > 0 {
		if reason := g.scan.scan(p[:n]); reason != "" {
			g.closed = true
			g.end(reason)
			return 0, errAbuse
		}
	}
	return n, err
}

// end says GOAWAY, reports the connection (before the client can see it
// end), lingers and closes it. It runs on the reader's goroutine and
// returns within about goAwayWait + lingerTime, whatever the server or
// the peer do.
func (g *guardedConn) end(reason string) {
	sent := g.goAway(goAwayRequest{last: g.scan.lastStream, debug: goAwayDebug(reason)})
	g.onAbuse(reason, sent)
	if sent {
		g.linger()
	}
	g.Conn.Close()
	close(g.done)
}

// goAway writes the GOAWAY at once when no Write is in progress and the
// server's output ends with a whole frame; otherwise it leaves it to the
// Write that ends the frame and waits for that, at most goAwayWait. It
// reports whether the GOAWAY was written. After it, no server write
// passes. It is called once.
func (g *guardedConn) goAway(req goAwayRequest) bool {
	g.mu.Lock()
	g.done = make(chan struct{})
	for {
		switch g.state.Load() {
		case writeIdle:
			if !g.state.CompareAndSwap(writeIdle, writeAsked) {
				continue // a Write just started
			}
			// No Write can start now: out is the reader's.
			if g.lost || g.out.plain {
				g.state.Store(writeStopped)
				g.mu.Unlock()
				return false
			}
			if g.out.atBoundary() {
				g.state.Store(writeStopped)
				var frame []byte
				if !g.out.started {
					// The server has not sent its SETTINGS yet: an
					// empty one first, as its output must start so.
					frame = append(frame, 0, 0, 0, frameSettings, 0, 0, 0, 0, 0)
				}
				frame = g.appendGoAway(frame, req)
				g.mu.Unlock()
				return g.writeGoAway(frame)
			}
			// Mid-frame: the next Write ends the frame, then says GOAWAY.
		case writeBusy:
			if !g.state.CompareAndSwap(writeBusy, writeBusyAsked) {
				continue // the Write just ended
			}
		default:
			g.mu.Unlock()
			return false
		}
		break
	}
	g.pending, g.sent = &req, make(chan bool, 1)
	g.mu.Unlock()
	t := time.NewTimer(goAwayWait)
	defer t.Stop()
	select {
	case ok := <-g.sent:
		return ok
	case <-t.C:
	}
	g.mu.Lock()
	if g.pending != nil {
		// The frame did not end in time (a peer that does not read
		// blocks the server's write): give up; the close ends the write.
		g.pending = nil
		g.state.Store(writeStopped)
		g.mu.Unlock()
		return false
	}
	g.mu.Unlock()
	return <-g.sent // a Write took it and writes it under its own deadline
}

// appendGoAway appends the GOAWAY for req; by out's owner.
func (g *guardedConn) appendGoAway(b []byte, req goAwayRequest) []byte {
	last := req.last
	if g.out.goAway && g.out.goAwayLast < last {
		last = g.out.goAwayLast
	}
	return appendGoAway(b, last, errCodeEnhanceYourCalm, req.debug)
}

// writeGoAway writes frame under a write deadline.
func (g *guardedConn) writeGoAway(frame []byte) bool {
	g.Conn.SetWriteDeadline(time.Now().Add(goAwayWait))
	_, err := g.Conn.Write(frame)
	return err == nil
}

// linger half-closes the connection and reads what the client still
// sends, discarding it, until it closes, lingerTime passes or lingerBytes
// came.
func (g *guardedConn) linger() {
	if cw, ok := g.Conn.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	g.Conn.SetReadDeadline(time.Now().Add(lingerTime))
	io.CopyN(io.Discard, g.Conn, lingerBytes)
}

// Write passes the server's bytes on and follows their frames. With a
// GOAWAY waiting it writes only the rest of the current frame, then the
// GOAWAY, and returns errAbuse for what it did not write; once the guard
// ends the connection it refuses everything. Its own cost is two
// compare-and-swaps and a frame header or two.
func (g *guardedConn) Write(p []byte) (int, error) {
	if g.plain.Load() {
		return g.Conn.Write(p)
	}
	if !g.state.CompareAndSwap(writeIdle, writeBusy) {
		return g.writeSlow(p)
	}
	n, err := g.Conn.Write(p)
	g.follow(p[:n])
	if g.state.CompareAndSwap(writeBusy, writeIdle) {
		return n, err
	}
	return g.wrote(p, n, err) // a GOAWAY was asked for meanwhile
}

// follow moves out past p, written by the Write in progress.
func (g *guardedConn) follow(p []byte) {
	g.out.advance(p)
	if g.out.plain {
		g.plain.Store(true)
	}
}

// writeSlow is Write when the state is not writeIdle.
func (g *guardedConn) writeSlow(p []byte) (int, error) {
	g.mu.Lock()
	switch g.state.Load() {
	case writeIdle: // the Write in progress ended meanwhile
		g.mu.Unlock()
		return g.Write(p)
	case writeAsked:
		q := p[:g.out.rest(p)]
		g.state.Store(writeBusyAsked)
		g.mu.Unlock()
		n, err := g.Conn.Write(q)
		g.follow(q[:n])
		return g.wrote(p, n, err)
	case writeStopped:
		g.mu.Unlock()
		return 0, errAbuse
	}
	// Two Writes at once: not how the server writes. If it ever does,
	// the guard no longer knows where frames end and sends no GOAWAY.
	g.lost = true
	g.mu.Unlock()
	return g.Conn.Write(p)
}

// wrote ends a Write of n bytes of p made while a GOAWAY waits: once the
// frame ended (or the write failed) the GOAWAY is this goroutine's to
// write, or give up.
func (g *guardedConn) wrote(p []byte, n int, err error) (int, error) {
	ok := err == nil
	if ok && n < len(p) {
		err = errAbuse // p was cut at the frame's end
	}
	g.mu.Lock()
	if g.state.Load() != writeBusyAsked { // the reader gave up
		g.mu.Unlock()
		return n, err
	}
	ok = ok && !g.lost && !g.out.plain
	if ok && !g.out.atBoundary() {
		g.state.Store(writeAsked)
		g.mu.Unlock()
		return n, err
	}
	req := g.pending
	g.pending = nil
	g.state.Store(writeStopped)
	var frame []byte
	if ok {
		frame = g.appendGoAway(nil, *req)
	}
	g.mu.Unlock()
	g.sent <- ok && g.writeGoAway(frame)
	return n, err
}

// Close closes the connection; while the guard ends it, Close waits for
// that instead (so the caller's accounting, and its own close of the
// connection underneath, come after the linger).
func (g *guardedConn) Close() error {
	g.mu.Lock()
	done := g.done
	g.mu.Unlock()
	if done != nil {
		<-done
		return nil
	}
	return g.Conn.Close()
}

// abuseReporter returns the h2Server callback that counts and logs a
// connection the guard closed, and whether it said GOAWAY first.
func abuseReporter(tel *telemetry, log *slog.Logger, listener string) func(reason string, goAway bool, remote net.Addr) {
	return func(reason string, goAway bool, remote net.Addr) {
		tel.metrics.HTTP2Abuse(reason, goAway)
		log.Warn("HTTP/2 connection closed for protocol abuse", "listener", listener, "remote", remote.String(), "reason", reason, "goaway", goAway)
	}
}

package sidecar

import (
	"errors"
	"log/slog"
	"net"
	"time"
)

// The HTTP/2 guard reads the frame headers a client sends, as they pass
// to the HTTP/2 server, and closes the connection when the client abuses
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

// guardedConn is a client connection the guard watches.
type guardedConn struct {
	net.Conn
	scan    frameScanner
	onAbuse func(reason string)
	closed  bool
}

func newGuardedConn(c net.Conn, onAbuse func(reason string)) *guardedConn {
	return &guardedConn{Conn: c, scan: frameScanner{now: time.Now}, onAbuse: onAbuse}
}

// Read passes the client's bytes on unless they complete an abuse, in
// which case the connection is closed and the server reads errAbuse
// instead (none of the offending bytes reach it).
func (g *guardedConn) Read(p []byte) (int, error) {
	if g.closed {
		return 0, errAbuse
	}
	n, err := g.Conn.Read(p)
	if n > 0 {
		if reason := g.scan.scan(p[:n]); reason != "" {
			g.closed = true
			g.Conn.Close()
			g.onAbuse(reason)
			return 0, errAbuse
		}
	}
	return n, err
}

// abuseReporter returns the h2Server callback that counts and logs a
// connection the guard closed.
func abuseReporter(tel *telemetry, log *slog.Logger, listener string) func(reason string, remote net.Addr) {
	return func(reason string, remote net.Addr) {
		tel.metrics.HTTP2Abuse(reason)
		log.Warn("HTTP/2 connection closed for protocol abuse", "listener", listener, "remote", remote.String(), "reason", reason)
	}
}

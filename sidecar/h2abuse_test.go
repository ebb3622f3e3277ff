package sidecar_test

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// rawFrame encodes one HTTP/2 frame.
func rawFrame(typ, flags byte, stream uint32, payload []byte) []byte {
	n := len(payload)
	b := []byte{byte(n >> 16), byte(n >> 8), byte(n), typ, flags, byte(stream >> 24), byte(stream >> 16), byte(stream >> 8), byte(stream)}
	return append(b, payload...)
}

// getHeaderBlock is an HPACK block for GET http://web/echo, from the
// static table and one literal (RFC 7541 appendix A).
var getHeaderBlock = func() []byte {
	b := []byte{0x82, 0x86} // :method GET, :scheme http
	b = append(b, 0x04, 5)  // :path, literal without indexing
	b = append(b, "/echo"...)
	b = append(b, 0x01, 3) // :authority, literal without indexing
	return append(b, "web"...)
}()

// TestH2RapidResetClosesConnection sends the HTTP/2 rapid-reset attack
// (CVE-2023-44487: HEADERS then RST_STREAM, over and over) to an upstream
// listener: the sidecar closes the connection, counts it, and only a small
// fraction of the streams became requests to the application (Go's
// net/http alone served every one of 21,000 here).
func TestH2RapidResetClosesConnection(t *testing.T) {
	t.Parallel()
	p := startStaticPair(t)
	c, err := net.Dial("tcp", p.upstream)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Read what the server sends, and learn when it closes: the highest
	// stream it answered, and its GOAWAY.
	type end struct {
		answered uint32
		goAway   *http2.GoAwayFrame
	}
	closed := make(chan end, 1)
	go func() {
		var e end
		fr := http2.NewFramer(io.Discard, c)
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				break
			}
			if ga, ok := f.(*http2.GoAwayFrame); ok {
				e.goAway = ga
			} else if f.Header().StreamID > e.answered {
				e.answered = f.Header().StreamID
			}
		}
		closed <- e
	}()
	w := bufio.NewWriter(c)
	w.WriteString("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
	w.Write(rawFrame(0x4, 0, 0, nil)) // SETTINGS
	const streams = 5000
	sent := 0
	for i := range streams {
		id := uint32(2*i + 1)
		w.Write(rawFrame(0x1, 0x4|0x1, id, getHeaderBlock)) // HEADERS, END_HEADERS|END_STREAM
		w.Write(rawFrame(0x3, 0, id, []byte{0, 0, 0, 0x8})) // RST_STREAM CANCEL
		if err := w.Flush(); err != nil {
			break // the sidecar closed the connection
		}
		sent++
	}
	select {
	case e := <-closed:
		// GOAWAY's last stream covers every stream the server acted on,
		// so a client retries none of those.
		if e.goAway == nil || e.goAway.ErrCode != http2.ErrCodeEnhanceYourCalm {
			t.Errorf("GOAWAY %v, want ENHANCE_YOUR_CALM", e.goAway)
		} else if e.goAway.LastStreamID < e.answered {
			t.Errorf("GOAWAY last stream %d, but the server answered stream %d", e.goAway.LastStreamID, e.answered)
		} else {
			t.Logf("GOAWAY last stream %d, highest stream answered %d", e.goAway.LastStreamID, e.answered)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the connection stayed open after %d reset streams", sent)
	}
	// Let in-flight requests land before counting.
	time.Sleep(200 * time.Millisecond)
	if n := p.app.count(); n > 300 {
		t.Errorf("the application received %d requests from %d reset streams", n, sent)
	} else {
		t.Logf("%d streams sent before the close, %d reached the application", sent, n)
	}
	if got := metricValue(t, p.client.admin, "outrider_http2_abuse_closed_connections_total", "reason", "rapid_reset"); got != 1 {
		t.Errorf("rapid_reset closes counted: %v, want 1", got)
	}
}

// TestH2PingFloodClosesConnection: a PING flood is cut off, told GOAWAY
// and counted.
func TestH2PingFloodClosesConnection(t *testing.T) {
	t.Parallel()
	p := startStaticPair(t)
	c, err := net.Dial("tcp", p.upstream)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	closed := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, c)
		closed <- err
	}()
	w := bufio.NewWriter(c)
	w.WriteString("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
	w.Write(rawFrame(0x4, 0, 0, nil))
	for range 10000 {
		w.Write(rawFrame(0x6, 0, 0, make([]byte, 8)))
		if w.Flush() != nil {
			break
		}
	}
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the connection stayed open through a PING flood")
	}
	if got := metricValue(t, p.client.admin, "outrider_http2_abuse_closed_connections_total", "reason", "ping_flood"); got != 1 {
		t.Errorf("ping_flood closes counted: %v, want 1", got)
	}
	// The client reads all along: the guard's GOAWAY went out.
	if got := metricValue(t, p.client.admin, "outrider_http2_abuse_goaways_total", "reason", "ping_flood"); got != 1 {
		t.Errorf("ping_flood GOAWAYs counted: %v, want 1", got)
	}
}

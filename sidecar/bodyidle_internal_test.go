package sidecar

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/outrider-mesh/outrider/telemetry/metrics"
)

// TestNetHTTPBodyIdle: on the net/http path (HTTP/2, and HTTP/1.1 at an
// ingress) a request body that stops arriving for longer than the idle
// bound gets 408 (flag SI), over HTTP/1.1 and HTTP/2; a body that keeps
// trickling in, each piece within the bound, is not cut, nor is a gRPC
// stream that idles.
func TestNetHTTPBodyIdle(t *testing.T) {
	got := make(chan string, 8)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			got <- "error"
			return
		}
		got <- string(b)
	}))
	defer app.Close()
	u, _ := url.Parse(app.URL)
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	m := metrics.New("test")
	rt := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		r.URL.Host = u.Host
		return tr.RoundTrip(r)
	})
	log := slog.New(slog.DiscardHandler)
	const idle = 150 * time.Millisecond
	s := newH2Server(reverseProxy(rt, "app", false, &counters{}, log, newTelemetry(m, nil), m.Route(metrics.Outbound, "app"), nil),
		h2ServerConfig{log: log, bodyIdle: idle})
	defer func() {
		s.ln.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.srv.Shutdown(ctx)
	}()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serveConn(c, connInfo{})
		}
	}()
	addr := ln.Addr().String()

	// HTTP/1.1: three bytes of ten, then nothing.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "POST /up HTTP/1.1\r\nHost: app\r\nContent-Length: 10\r\n\r\nabc")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 408 || resp.Header.Get(headerError) != errBodyTimeout {
		t.Fatalf("HTTP/1.1 stalled body: %v %v", resp, err)
	}

	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	h2t := &http.Transport{Protocols: &protos}
	defer h2t.CloseIdleConnections()
	h2 := &http.Client{Transport: h2t, Timeout: 10 * time.Second}
	post := func(contentType string, pieces []string, gap time.Duration, stall bool) (*http.Response, error) {
		pr, pw := io.Pipe()
		go func() {
			for _, p := range pieces {
				io.WriteString(pw, p)
				time.Sleep(gap)
			}
			if stall {
				time.Sleep(10 * idle)
			}
			pw.Close()
		}()
		req, _ := http.NewRequest("POST", "http://"+addr+"/up", pr)
		req.Header.Set("Content-Type", contentType)
		return h2.Do(req)
	}
	resp, err = post("text/plain", []string{"abc"}, 0, true)
	if err != nil || resp.StatusCode != 408 {
		t.Fatalf("HTTP/2 stalled body: %v %v", resp, err)
	}
	resp.Body.Close()
	if g := <-got; g != "error" {
		t.Errorf("the application got %q of a cut body, want a failed read", g)
	}
	<-got // the HTTP/1.1 case's
	resp, err = post("text/plain", strings.Split("abcdef", ""), idle/3, false)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("trickling body: %v %v", resp, err)
	}
	resp.Body.Close()
	if g := <-got; g != "abcdef" {
		t.Errorf("trickling body arrived as %q", g)
	}
	resp, err = post("application/grpc", []string{"a", "b"}, 3*idle, false)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("idle gRPC stream: %v %v", resp, err)
	}
	resp.Body.Close()
	if g := <-got; g != "ab" {
		t.Errorf("gRPC stream arrived as %q", g)
	}
}

// deadlineWriter is a ResponseWriter whose read deadline can be set (as
// net/http's is), for http.NewResponseController.
type deadlineWriter struct{ *httptest.ResponseRecorder }

func (deadlineWriter) SetReadDeadline(time.Time) error { return nil }

// net/http's server cancels the request's context when the connection's
// read deadline fires, before the body read that hit it returns: the
// reverse proxy can then report context.Canceled while the body reader has
// not yet recorded the timeout. That is still a body timeout (408), not a
// client that went away (nothing written): the CI flake of
// TestConfiguredIngressLimits/body_idle.
func TestBodyTimeoutSeenBeforeTheReadReturns(t *testing.T) {
	pr, pw := io.Pipe()
	defer pw.Close()
	rec := &h2Record{upstreamDur: -1}
	w := deadlineWriter{httptest.NewRecorder()}
	body := &countingBody{ReadCloser: pr, rc: http.NewResponseController(w), idle: time.Millisecond, rec: rec}
	reading := make(chan struct{})
	go func() {
		close(reading)
		body.Read(make([]byte, 8)) // blocks: nothing is written to pw
	}()
	<-reading
	for rec.bodyDeadline.Load() == 0 || time.Now().UnixNano() < rec.bodyDeadline.Load() {
		time.Sleep(time.Millisecond)
	}
	r := httptest.NewRequestWithContext(context.WithValue(context.Background(), h2RecordKey{}, rec), "POST", "/up", nil)
	proxyError(w, r, context.Canceled, "app", &counters{}, slog.New(slog.DiscardHandler))
	if w.Code != 408 || w.Header().Get(headerError) != errBodyTimeout {
		t.Fatalf("a body read waiting past its deadline, then context.Canceled: %d %q, want 408 %s",
			w.Code, w.Header().Get(headerError), errBodyTimeout)
	}
	pw.Write([]byte("x")) // the read returns in time after all: the deadline is cleared
	for rec.bodyDeadline.Load() != 0 {
		time.Sleep(time.Millisecond)
	}
	if rec.bodyTimeout() {
		t.Fatal("a read that returned data still counts as timed out")
	}
}

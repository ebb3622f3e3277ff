// Package loadtest is the steady load the rotation, reload, outage and
// drain tests run through sidecars: a few request loops over pooled
// connections, over a new connection per request and over one connection
// held open throughout, counting every request sent and every failure.
//
// A Load is used from one test: Go starts loops, Wait stops and waits for
// them, Check fails the test on any failure. Loops run on their own
// goroutines; the counters are safe to read from the test's at any time.
package loadtest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Load counts the requests of its loops until Wait.
type Load struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	sent, failed atomic.Int64
	firstErr     atomic.Pointer[string]
	clients      []*http.Client
}

// New returns a Load whose loops run until Wait (or the test's end).
func New(t testing.TB) *Load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &Load{ctx: ctx, cancel: cancel}
	t.Cleanup(l.Wait)
	return l
}

// Go runs req in a loop, pause apart, until Wait: each call is one request
// sent, and a non-nil error one failure.
func (l *Load) Go(what string, pause time.Duration, req func(ctx context.Context) error) {
	l.wg.Go(func() {
		for l.ctx.Err() == nil {
			l.sent.Add(1)
			if err := req(l.ctx); err != nil && l.ctx.Err() == nil {
				l.fail(what, err)
			}
			if pause > 0 {
				select {
				case <-l.ctx.Done():
				case <-time.After(pause):
				}
			}
		}
	})
}

func (l *Load) fail(what string, err error) {
	l.failed.Add(1)
	msg := what + ": " + err.Error()
	l.firstErr.CompareAndSwap(nil, &msg)
}

// Pooled runs workers loops of GET url over one pooled HTTP client
// (keep-alive connections reused across requests).
func (l *Load) Pooled(url string, workers int) {
	c := &http.Client{Timeout: 10 * time.Second}
	l.clients = append(l.clients, c)
	for range workers {
		l.Go("pooled "+url, 0, func(ctx context.Context) error { return Get(ctx, c, url) })
	}
}

// Fresh runs workers loops of GET url, each over a new connection.
func (l *Load) Fresh(url string, workers int) {
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for range workers {
		l.Go("fresh "+url, 0, func(ctx context.Context) error { return Get(ctx, c, url) })
	}
}

// Held opens one connection to addr and sends GET path on it, pause
// apart, until Wait; the connection must stay up throughout. It fails the
// test if the first request fails.
func (l *Load) Held(t testing.TB, addr, path string, pause time.Duration) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("loadtest: held connection to %s: %v", addr, err)
	}
	r := bufio.NewReader(c)
	get := func() error {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: load\r\n\r\n"); err != nil {
			return err
		}
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			return err
		}
		return drain(resp)
	}
	if err := get(); err != nil {
		c.Close()
		t.Fatalf("loadtest: held connection to %s: first request: %v", addr, err)
	}
	l.wg.Go(func() {
		defer c.Close()
		for l.ctx.Err() == nil {
			l.sent.Add(1)
			if err := get(); err != nil {
				l.fail("held connection to "+addr, err)
				return // the connection is gone: one failure is enough
			}
			select {
			case <-l.ctx.Done():
			case <-time.After(pause):
			}
		}
	})
}

// Get sends GET url with c and wants a 200 with the whole body read.
func Get(ctx context.Context, c *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	return drain(resp)
}

// drain reads and closes the body; a status other than 200 is an error
// naming Outrider's X-Outrider-Error header.
func drain(resp *http.Response) error {
	_, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d (%s)", resp.StatusCode, resp.Header.Get("X-Outrider-Error"))
	}
	return err
}

// Sent is the number of requests sent so far.
func (l *Load) Sent() int64 { return l.sent.Load() }

// Failed is the number of requests failed so far.
func (l *Load) Failed() int64 { return l.failed.Load() }

// Wait stops the loops and waits for them (idempotent). A request in
// flight is cancelled and not counted as failed.
func (l *Load) Wait() {
	l.cancel()
	l.wg.Wait()
	for _, c := range l.clients {
		c.CloseIdleConnections()
	}
}

// Check stops the load (Wait), logs what was sent under name, and fails
// the test if any request failed or fewer than min were sent.
func (l *Load) Check(t testing.TB, name string, min int64) {
	t.Helper()
	l.Wait()
	t.Logf("%s: %d requests sent, %d failed", name, l.Sent(), l.Failed())
	if n := l.Failed(); n > 0 {
		t.Fatalf("%s: %d of %d requests failed; first: %s", name, n, l.Sent(), *l.firstErr.Load())
	}
	if l.Sent() < min {
		t.Fatalf("%s: only %d requests sent, want at least %d", name, l.Sent(), min)
	}
}

package ratelimit

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outrider-mesh/outrider/gateway/reqinfo"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// go-redis logs every failed dial through a process-wide logger; the
	// package's own warning is the rate-limited one.
	redis.SetLogger(discardRedisLog{})
	goleak.VerifyTestMain(m)
}

type discardRedisLog struct{}

func (discardRedisLog) Printf(context.Context, string, ...any) {}

// fakeClock is a settable clock for local limits.
type fakeClock struct{ ns atomic.Int64 }

var clockBase = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func (c *fakeClock) now() time.Time          { return clockBase.Add(time.Duration(c.ns.Load())) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }
func withFake(c *fakeClock) Option           { return WithClock(c.now) }
func newClock() *fakeClock                   { return &fakeClock{} }
func discardLogger() *slog.Logger            { return slog.New(slog.DiscardHandler) }
func mustNew(t testing.TB, cfg Config, opts ...Option) *Limiter {
	t.Helper()
	opts = append([]Option{WithLogger(discardLogger())}, opts...)
	l, err := New(cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// sidecar stands in for what the sidecar does before the gateway chain:
// it attaches reqinfo (the TCP peer from RemoteAddr, the peer ID from the
// test-only X-Test-Peer header).
func sidecar(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		info := &reqinfo.Info{Peer: r.Header.Get("X-Test-Peer")}
		if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
			info.Remote = ap.Addr()
		}
		next.ServeHTTP(w, r.WithContext(reqinfo.With(r.Context(), info)))
	})
}

// backend counts the requests that reached it.
type backend struct{ hits atomic.Int64 }

func (b *backend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.hits.Add(1)
	_, _ = io.WriteString(w, "ok")
}

// serve runs lim in front of a counting backend.
func serve(t testing.TB, lim *Limiter) (*httptest.Server, *backend) {
	t.Helper()
	b := &backend{}
	srv := httptest.NewServer(sidecar(lim.Wrap(b)))
	t.Cleanup(srv.Close)
	return srv, b
}

// get sends one request with the given headers.
func get(t testing.TB, c *http.Client, url string, hdr ...string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// blast sends n requests from n goroutines at once and counts the
// statuses.
func blast(t *testing.T, urls []string, n int, hdr ...string) map[int]int {
	t.Helper()
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	var mu sync.Mutex
	counts := map[int]int{}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			req, _ := http.NewRequest("GET", urls[i%len(urls)], nil)
			for j := 0; j+1 < len(hdr); j += 2 {
				req.Header.Add(hdr[j], hdr[j+1])
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			mu.Lock()
			counts[resp.StatusCode]++
			mu.Unlock()
		}()
	}
	close(start)
	wg.Wait()
	return counts
}

// silentServer accepts connections and never answers.
func silentServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var conns []net.Conn
		for {
			c, err := ln.Accept()
			if err != nil {
				for _, c := range conns {
					c.Close()
				}
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String()
}

// garbageServer answers every connection with an HTTP response, which
// is not RESP.
func garbageServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String()
}

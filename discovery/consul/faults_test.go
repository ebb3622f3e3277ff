package consul

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/outrider-mesh/outrider/discovery"
)

// fakeClock is the watch's clock in fault tests: sleeping advances it at
// once, so a test can count queries per (virtual) second without waiting.
type fakeClock struct {
	mu    sync.Mutex
	t     time.Time
	slept []time.Duration
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) sleep(ctx context.Context, d time.Duration) bool {
	if ctx.Err() != nil {
		return false
	}
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.slept = append(c.slept, d)
	c.mu.Unlock()
	return true
}

func (c *fakeClock) elapsed() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	var sum time.Duration
	for _, d := range c.slept {
		sum += d
	}
	return sum
}

func (c *fakeClock) sleeps() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.slept...)
}

func withClock(c *fakeClock) Option {
	return func(cfg *watchConfig) { cfg.now, cfg.sleep = c.now, c.sleep }
}

func withQueryGrace(d time.Duration) Option { return func(cfg *watchConfig) { cfg.queryGrace = d } }

// script is a fake Consul HTTP API: call n is answered by step n; past the
// end, by then (nil: hang until the client gives up, as a blocking query
// that never returns).
type script struct {
	steps []http.HandlerFunc
	then  http.HandlerFunc
	calls atomic.Int64
}

func (s *script) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := int(s.calls.Add(1)) - 1
	switch {
	case n < len(s.steps):
		s.steps[n](w, r)
	case s.then != nil:
		s.then(w, r)
	default:
		<-r.Context().Done()
	}
}

func (s *script) client(t *testing.T, hook bool) *api.Client {
	t.Helper()
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	cfg := api.DefaultConfig()
	cfg.Address = srv.Listener.Addr().String()
	newClient := api.NewClient
	if hook {
		newClient = NewClient
	}
	client, err := newClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return client
}

// body answers 200 with index (none when index is "") and the raw body.
func body(index, b string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if index != "" {
			w.Header().Set("X-Consul-Index", index)
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(b))
	}
}

func status(code int, header ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		http.Error(w, http.StatusText(code), code)
	}
}

// entries is a health/connect answer with one sidecar instance per port.
func entries(ports ...int) string {
	var b strings.Builder
	b.WriteString("[")
	for i, p := range ports {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`{"Node":{"Node":"n1","Address":"10.0.0.1","Datacenter":"dc1"},` +
			`"Service":{"Kind":"connect-proxy","ID":"web-sidecar-` + strconv.Itoa(p) + `","Service":"web-sidecar-proxy","Port":` +
			strconv.Itoa(p) + `,"Proxy":{"DestinationServiceName":"web"}},"Checks":[]}`)
	}
	b.WriteString("]")
	return b.String()
}

// recorder collects published snapshots.
type recorder struct {
	mu   sync.Mutex
	got  []*discovery.Snapshot
	seen chan struct{}
}

func newRecorder() *recorder { return &recorder{seen: make(chan struct{}, 1000)} }

func (r *recorder) publish(s *discovery.Snapshot) {
	r.mu.Lock()
	r.got = append(r.got, s)
	r.mu.Unlock()
	r.seen <- struct{}{}
}

func (r *recorder) snapshots() []*discovery.Snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*discovery.Snapshot(nil), r.got...)
}

var testTD = spiffeid.RequireTrustDomainFromString("example.org")

// runWatch runs w until until() holds (polled; generous real-time bound),
// then cancels it and checks that Run returns context.Canceled.
func runWatch[T any](t *testing.T, w *Watch[T], what string, until func() bool) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for !until() {
		if time.Now().After(deadline) {
			cancel()
			<-done
			t.Fatalf("timed out waiting for %s; status %+v", what, w.Status())
		}
		time.Sleep(2 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != context.Canceled {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
}

// Every kind of bad answer after a good one: nothing is published (the
// last good snapshot stays), Status says stale with the cause and still
// shows the last good index and success time, and the watch retries.
func TestWatchFaultKeepsLastGood(t *testing.T) {
	proxy := func(svc string) string {
		return `[{"Node":{"Node":"n1","Address":"10.0.0.1"},"Service":` + svc + `}]`
	}
	tests := []struct {
		name   string
		answer http.HandlerFunc
		errHas string
	}{
		{"500", status(500), "500"},
		{"503", status(503), "503"},
		{"429 without Retry-After", status(429), "429"},
		{"HTML error page with 200", body("11", "<html><body><h1>502 Bad Gateway</h1></body></html>"), "invalid character '<'"},
		{"empty body", body("11", ""), "EOF"},
		{"truncated JSON", body("11", entries(21000, 21001)[:70]), "unexpected EOF"},
		{"port as a string", body("11", strings.Replace(entries(21000), `"Port":21000`, `"Port":"21000"`, 1)), "cannot unmarshal string"},
		{"object where a list is expected", body("11", `{"Node":{},"Service":{}}`), "cannot unmarshal object"},
		{"checks as an object", body("11", strings.Replace(entries(21000), `"Checks":[]`, `"Checks":{}`, 1)), "cannot unmarshal object"},
		{"null entry", body("11", `[null]`), "malformed answer"},
		{"entry without service", body("11", `[{"Node":{"Node":"n1","Address":"10.0.0.1"}}]`), "malformed answer"},
		{"proxy without its Proxy block", body("11", proxy(`{"Kind":"connect-proxy","ID":"p","Service":"p","Port":1}`)), "no Proxy block"},
		{"proxy without destination", body("11", proxy(`{"Kind":"connect-proxy","ID":"p","Service":"p","Port":1,"Proxy":{}}`)), "names no service"},
		{"port out of range", body("11", proxy(`{"ID":"w","Service":"web","Port":70000}`)), "port 70000"},
		{"negative port", body("11", proxy(`{"ID":"w","Service":"web","Port":-1}`)), "port -1"},
		{"no address", body("11", `[{"Node":{"Node":"n1"},"Service":{"ID":"w","Service":"web","Port":1}}]`), "no address"},
		{"bad identity", body("11", proxy(`{"ID":"w","Service":"we/b","Port":1}`)), "instance w"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &script{steps: []http.HandlerFunc{body("10", entries(21000)), tt.answer}}
			client := s.client(t, true)
			rec := newRecorder()
			clk := newFakeClock()
			w := NewWatch("health/connect/web", ConnectEndpoints(client, "web", "", testTD), rec.publish, withClock(clk))
			// Call 3 is the retry (it hangs): by then the failure is recorded.
			runWatch(t, w, "the retry after the bad answer", func() bool { return s.calls.Load() >= 3 })
			got := rec.snapshots()
			if len(got) != 1 || len(got[0].Endpoints) != 1 || got[0].Endpoints[0].Address != "10.0.0.1:21000" {
				t.Fatalf("published %d snapshots (%+v), want only the good one", len(got), got)
			}
			st := w.Status()
			if !st.Stale() || st.Failures != 1 || !strings.Contains(st.LastError, tt.errHas) {
				t.Fatalf("status %+v, want one failure mentioning %q", st, tt.errHas)
			}
			if st.Index != 10 || st.LastSuccess.IsZero() {
				t.Fatalf("status %+v lost the last good index or time", st)
			}
			// Sleeps: the backoff after the failure, then the rate limit's wait.
			if sl := clk.sleeps(); len(sl) == 0 || sl[0] < 125*time.Millisecond || sl[0] > 250*time.Millisecond {
				t.Fatalf("sleeps %v: want a first backoff step (125-250ms) after the failure", sl)
			}
		})
	}
}

// An empty instance list is valid data (the service scaled to zero): it
// is published, and the instances coming back are published too.
func TestWatchPublishesEmptyList(t *testing.T) {
	s := &script{steps: []http.HandlerFunc{body("10", entries(21000)), body("11", "[]"), body("12", entries(21001))}}
	rec := newRecorder()
	w := NewWatch("health/connect/web", ConnectEndpoints(s.client(t, false), "web", "", testTD), rec.publish, withClock(newFakeClock()))
	runWatch(t, w, "three answers", func() bool { return s.calls.Load() >= 4 })
	got := rec.snapshots()
	if len(got) != 3 || len(got[0].Endpoints) != 1 || got[1] == nil || len(got[1].Endpoints) != 0 || len(got[2].Endpoints) != 1 {
		t.Fatalf("published %+v, want 1, 0, 1 endpoints", got)
	}
	if st := w.Status(); st.Stale() || st.Index != 12 {
		t.Fatalf("status %+v", st)
	}
}

// A flapping service (0, 1, 0, 1... instances, the index rising each time)
// has every answer published in order, and the loop is held to the rate
// limit: a burst of 2, then one query per second.
func TestWatchFlappingIsPublishedAndRateLimited(t *testing.T) {
	const n = 20
	var steps []http.HandlerFunc
	for i := range n {
		ports := []int{}
		if i%2 == 1 {
			ports = []int{21000}
		}
		steps = append(steps, body(strconv.Itoa(10+i), entries(ports...)))
	}
	s := &script{steps: steps}
	rec := newRecorder()
	clk := newFakeClock()
	w := NewWatch("health/connect/web", ConnectEndpoints(s.client(t, false), "web", "", testTD), rec.publish, withClock(clk))
	runWatch(t, w, "every answer", func() bool { return s.calls.Load() > n })
	got := rec.snapshots()
	if len(got) != n {
		t.Fatalf("published %d snapshots, want %d", len(got), n)
	}
	for i, snap := range got {
		if len(snap.Endpoints) != i%2 || snap.Index != uint64(10+i) {
			t.Fatalf("snapshot %d: %d endpoints at index %d, want %d at %d", i, len(snap.Endpoints), snap.Index, i%2, 10+i)
		}
	}
	// n+1 queries were sent: 2 from the burst, n-1 paid for by waiting.
	if e, want := clk.elapsed(), time.Duration(n+1-2)*time.Second; e < want-time.Millisecond {
		t.Fatalf("%d queries in %s of (virtual) time, want at least %s: not rate limited", n+1, e, want)
	}
}

// A Consul (or something in front of it) that answers every query at once
// with the same index, with no index, or (for a hash watch) with no hash:
// the loop makes no more than one query per second after a burst of two,
// instead of a busy loop. Answers without an index or hash are published
// (nothing says they did not change) and Status.Warning says why.
func TestWatchRateLimitsImmediateAnswers(t *testing.T) {
	tests := []struct {
		name        string
		index       string
		hashBased   bool
		wantPublish func(calls int) bool
		warning     string
	}{
		{"index never changes", "7", false, func(int) bool { return false }, ""},
		{"no index header", "", false, func(int) bool { return true }, "no X-Consul-Index"},
		{"index 0", "0", false, func(int) bool { return true }, "no X-Consul-Index"},
		{"no content hash", "", true, func(int) bool { return true }, "no X-Consul-ContentHash"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const n = 50
			s := &script{then: body(tt.index, entries(21000))}
			var published atomic.Int64
			clk := newFakeClock()
			opts := []Option{withClock(clk)}
			if tt.hashBased {
				opts = append(opts, HashBased())
			}
			w := NewWatch("health/connect/web", ConnectEndpoints(s.client(t, false), "web", "", testTD),
				func(*discovery.Snapshot) { published.Add(1) }, opts...)
			runWatch(t, w, "50 queries", func() bool { return s.calls.Load() >= n })
			calls := int(s.calls.Load())
			if e, want := clk.elapsed(), time.Duration(calls-2-1)*time.Second; e < want {
				t.Fatalf("%d queries in %s of (virtual) time, want at least %s: busy loop", calls, e, want)
			}
			p := int(published.Load())
			if tt.wantPublish(calls) {
				if p < calls-2 {
					t.Fatalf("published %d of %d answers without an index, want each", p, calls)
				}
			} else if p != 1 {
				t.Fatalf("published %d times, want once (the index never changed)", p)
			}
			if st := w.Status(); st.Stale() || !strings.Contains(st.Warning, tt.warning) || (tt.warning == "") != (st.Warning == "") {
				t.Fatalf("status %+v, want warning %q", st, tt.warning)
			}
		})
	}
}

// The same with the real clock and the default limit, bounded generously:
// in half a second a watch on an instantly answering Consul sends at most
// the burst plus one query (a busy loop sends thousands).
func TestWatchNoBusyLoopRealClock(t *testing.T) {
	s := &script{then: body("7", "[]")}
	w := NewWatch("health/connect/web", ConnectEndpoints(s.client(t, false), "web", "", testTD), func(*discovery.Snapshot) {})
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	w.Run(ctx)
	if c := s.calls.Load(); c > 10 {
		t.Fatalf("%d queries in 500ms against a Consul that answers at once, want at most a few", c)
	}
}

// A 429 or 503 with Retry-After delays the retry by at least that much
// (through the transport hook of NewClient), capped at maxRetryAfter, and
// Status shows it. Without the hook (api.NewClient) the ordinary backoff
// applies.
func TestWatchHonorsRetryAfter(t *testing.T) {
	tests := []struct {
		name   string
		answer http.HandlerFunc
		hook   bool
		want   time.Duration
	}{
		{"429 seconds", status(429, "Retry-After", "7"), true, 7 * time.Second},
		{"503 seconds", status(503, "Retry-After", "3"), true, 3 * time.Second},
		{"429 huge", status(429, "Retry-After", "999999"), true, maxRetryAfter},
		{"429 date", status(429, "Retry-After", newFakeClock().t.Add(90*time.Second).Format(http.TimeFormat)), true, 90 * time.Second},
		{"429 garbage", status(429, "Retry-After", "soon"), true, 0},
		{"429 without the hook", status(429, "Retry-After", "7"), false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &script{steps: []http.HandlerFunc{body("10", entries(21000)), tt.answer}}
			clk := newFakeClock()
			rec := newRecorder()
			w := NewWatch("health/connect/web", ConnectEndpoints(s.client(t, tt.hook), "web", "", testTD), rec.publish, withClock(clk))
			runWatch(t, w, "the retry", func() bool { return s.calls.Load() >= 3 })
			st := w.Status()
			if st.RetryAfter != tt.want || !st.Stale() {
				t.Fatalf("status %+v, want RetryAfter %s", st, tt.want)
			}
			// The first sleep is the one after the failure (the rate limit may
			// add a second).
			if sl := clk.sleeps(); len(sl) == 0 || sl[0] < tt.want || sl[0] > max(tt.want, 250*time.Millisecond) {
				t.Fatalf("slept %v before the retry, want %s first (or the first backoff step when none)", sl, tt.want)
			}
			if len(rec.snapshots()) != 1 {
				t.Fatalf("published %d, want only the good answer", len(rec.snapshots()))
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0}, {"0", 0}, {"12", 12 * time.Second}, {"-3", 0}, {"1.5", 0}, {"99999999999", 0},
		{"86400", maxRetryAfter},
		{now.Add(time.Minute).Format(http.TimeFormat), time.Minute},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
	}
	for _, tt := range tests {
		if got := parseRetryAfter(tt.in, now); got != tt.want {
			t.Errorf("parseRetryAfter(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestTokenBucket(t *testing.T) {
	b := tokenBucket{every: time.Second, burst: 2, tokens: 2}
	t0 := time.Unix(0, 0)
	for i, want := range []time.Duration{0, 0, time.Second} {
		if got := b.take(t0); got != want {
			t.Fatalf("take %d at t0 = %s, want %s", i, got, want)
		}
	}
	// The third query ran at t0+1s; after 10 quiet seconds the bucket is
	// full again, never fuller.
	t1 := t0.Add(11 * time.Second)
	for i, want := range []time.Duration{0, 0, time.Second} {
		if got := b.take(t1); got != want {
			t.Fatalf("take %d at t1 = %s, want %s", i, got, want)
		}
	}
	if d := (&tokenBucket{}).take(t0); d != 0 {
		t.Fatalf("a disabled bucket waits %s", d)
	}
}

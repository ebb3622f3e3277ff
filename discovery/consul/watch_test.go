package consul

import (
	"context"
	"encoding/json"
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

func TestNextIndex(t *testing.T) {
	tests := []struct{ prev, got, want uint64 }{
		{0, 5, 5},
		{5, 7, 7},
		{5, 5, 5},
		{7, 3, 0}, // went backwards: reset
		{0, 0, 1}, // never wait on 0
		{4, 0, 1}, // no index at all: wait on 1, which is always safe
	}
	for _, tt := range tests {
		if got := nextIndex(tt.prev, tt.got); got != tt.want {
			t.Errorf("nextIndex(%d, %d) = %d, want %d", tt.prev, tt.got, got, tt.want)
		}
	}
}

func TestBackoffGrowsWithJitterAndCaps(t *testing.T) {
	lo, hi := 100*time.Millisecond, 2*time.Second
	for n := 1; n <= 10; n++ {
		want := min(lo<<(n-1), hi)
		for range 50 {
			d := Backoff(lo, hi, n)
			if d < want/2 || d > want {
				t.Fatalf("Backoff(n=%d) = %s, want in [%s, %s]", n, d, want/2, want)
			}
		}
	}
}

// fakeConsul serves /v1/health/connect/web with a scripted sequence of
// answers: each entry is either a status code or a list of ports.
type fakeConsul struct {
	mu      sync.Mutex
	answers []fakeAnswer
	calls   atomic.Int64
	indexes []string // the index query parameter of each call
}

type fakeAnswer struct {
	status int
	index  uint64
	ports  []int
}

func (f *fakeConsul) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.indexes = append(f.indexes, r.URL.Query().Get("index"))
	n := int(f.calls.Add(1)) - 1
	if n >= len(f.answers) {
		f.mu.Unlock()
		<-r.Context().Done() // a hung blocking query
		return
	}
	a := f.answers[n]
	f.mu.Unlock()
	if a.status != 0 {
		http.Error(w, "boom", a.status)
		return
	}
	var entries []*api.ServiceEntry
	for _, p := range a.ports {
		entries = append(entries, &api.ServiceEntry{
			Node: &api.Node{Node: "n1", Address: "10.0.0.1", Datacenter: "dc1"},
			Service: &api.AgentService{
				Kind: api.ServiceKindConnectProxy, ID: "web-sidecar-" + strconv.Itoa(p), Service: "web-sidecar-proxy",
				Port: p, Weights: api.AgentWeights{Passing: 3},
				Proxy: &api.AgentServiceConnectProxyConfig{DestinationServiceName: "web"},
			},
		})
	}
	w.Header().Set("X-Consul-Index", strconv.FormatUint(a.index, 10))
	json.NewEncoder(w).Encode(entries)
}

func newFake(t *testing.T, answers ...fakeAnswer) (*fakeConsul, *api.Client) {
	f := &fakeConsul{answers: answers}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	cfg := api.DefaultConfig()
	cfg.Address = srv.Listener.Addr().String()
	client, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return f, client
}

// Errors keep the last good snapshot and mark the watch stale; recovery
// clears it; an index that went backwards resets the blocking index to 0.
func TestWatchKeepsLastGoodAndResetsIndex(t *testing.T) {
	f, client := newFake(t,
		fakeAnswer{index: 10, ports: []int{21000}},
		fakeAnswer{status: 500},
		fakeAnswer{status: 503},
		fakeAnswer{index: 4, ports: []int{21000, 21001}}, // index went backwards
		fakeAnswer{index: 12, ports: []int{21001}},
	)
	td := spiffeid.RequireTrustDomainFromString("11111111-2222-3333-4444-555555555555.consul")
	var mu sync.Mutex
	var got []*discovery.Snapshot
	w := NewWatch("health/connect/web", ConnectEndpoints(client, "web", "", td), func(s *discovery.Snapshot) {
		mu.Lock()
		got = append(got, s)
		mu.Unlock()
	}, withClock(newFakeClock()))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.Run(ctx) }()

	deadline := time.Now().Add(10 * time.Second)
	for f.calls.Load() < 6 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != context.Canceled {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 3 {
		t.Fatalf("published %d snapshots, want 3 (errors publish nothing)", len(got))
	}
	ep := got[0].Endpoints[0]
	if ep.Address != "10.0.0.1:21000" || ep.Weight != 3 ||
		ep.Identity.String() != "spiffe://11111111-2222-3333-4444-555555555555.consul/ns/default/dc/dc1/svc/web" {
		t.Fatalf("endpoint = %+v", ep)
	}
	if len(got[1].Endpoints) != 2 || len(got[2].Endpoints) != 1 {
		t.Fatalf("snapshots = %+v", got)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	// Calls: initial (0), after first answer (10), retry (10), retry (10),
	// after the backwards index (0: reset), after 12.
	want := []string{"", "10", "10", "10", "", "12"}
	for i, w := range want {
		if f.indexes[i] != w && !(w == "" && f.indexes[i] == "0") {
			t.Fatalf("call %d used index %q, want %q (all: %q)", i, f.indexes[i], w, f.indexes)
		}
	}
	if st := w.Status(); st.Stale() || st.Index != 12 || st.IndexResets != 1 || st.Warning != "" {
		t.Fatalf("status after recovery = %+v, want index 12, one reset counted, no warning", st)
	}
}

// Right after an index went backwards, Status says so.
func TestWatchStatusReportsIndexReset(t *testing.T) {
	f, client := newFake(t, fakeAnswer{index: 10, ports: []int{21000}}, fakeAnswer{index: 4, ports: []int{21000}})
	w := NewWatch("health/connect/web", ConnectEndpoints(client, "web", "", spiffeid.RequireTrustDomainFromString("example.org")),
		func(*discovery.Snapshot) {}, withClock(newFakeClock()))
	runWatch(t, w, "the query after the reset", func() bool { return f.calls.Load() >= 3 })
	if st := w.Status(); st.IndexResets != 1 || st.Index != 0 || !strings.Contains(st.Warning, "went backwards (4 after 10)") {
		t.Fatalf("status = %+v, want the reset reported", st)
	}
}

func TestWatchStatusReportsStaleness(t *testing.T) {
	_, client := newFake(t, fakeAnswer{index: 3, ports: []int{21000}}, fakeAnswer{status: 500}, fakeAnswer{status: 500}, fakeAnswer{status: 500})
	td := spiffeid.RequireTrustDomainFromString("example.org")
	w := NewWatch("health/connect/web", ConnectEndpoints(client, "web", "", td), func(*discovery.Snapshot) {},
		withClock(newFakeClock()))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.Run(ctx)
	deadline := time.Now().Add(10 * time.Second)
	for w.Status().Failures < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("status never showed failures: %+v", w.Status())
		}
		time.Sleep(time.Millisecond)
	}
	st := w.Status()
	if !st.Stale() || st.LastError == "" || st.LastSuccess.IsZero() {
		t.Fatalf("status = %+v, want stale with the error and the last success time", st)
	}
}

// A hung blocking query is abandoned when the context ends.
func TestWatchStopsOnHungQuery(t *testing.T) {
	_, client := newFake(t) // every call hangs
	w := NewWatch("health/connect/web", ConnectEndpoints(client, "web", "", spiffeid.RequireTrustDomainFromString("example.org")),
		func(*discovery.Snapshot) { t.Error("published from a hung query") })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := w.Run(ctx); err != context.DeadlineExceeded {
		t.Fatalf("Run = %v, want DeadlineExceeded", err)
	}
}

// A query that outlives its wait time, Consul's jitter and the grace
// (an agent that accepted the request and never answers) is given up: the
// watch reports the failure, keeps the last good snapshot and asks again,
// rather than staying silently stale for ever.
func TestWatchGivesUpOnHungQuery(t *testing.T) {
	f, client := newFake(t, fakeAnswer{index: 10, ports: []int{21000}}) // then every call hangs
	var published atomic.Int64
	w := NewWatch("health/connect/web", ConnectEndpoints(client, "web", "", spiffeid.RequireTrustDomainFromString("example.org")),
		func(*discovery.Snapshot) { published.Add(1) },
		WithWaitTime(16*time.Millisecond), withQueryGrace(20*time.Millisecond), withClock(newFakeClock()))
	runWatch(t, w, "two hung queries given up", func() bool { return w.Status().Failures >= 2 && f.calls.Load() >= 4 })
	st := w.Status()
	if !strings.Contains(st.LastError, "no answer within 37ms (blocking wait 16ms)") || st.Index != 10 {
		t.Fatalf("status = %+v, want the timeout reported and the last good index kept", st)
	}
	if published.Load() != 1 {
		t.Fatalf("published %d times, want only the good answer", published.Load())
	}
}

package overload

import (
	"context"
	"math"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestValidateNamesTheField(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{MaxConnections: -2}, "max_connections"},
		{Config{MaxRequests: -5}, "max_requests"},
		{Config{MaxMemory: -3}, "max_memory"},
		{Config{ShedAt: 1.5}, "shed_at"},
		{Config{RefuseAt: -0.1}, "refuse_at"},
		{Config{ShedAt: math.NaN()}, "shed_at"},
		{Config{ShedAt: 0.9, RefuseAt: 0.8}, "refuse_at"},
	} {
		err := tc.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error naming %s", tc.cfg, err, tc.want)
		}
	}
	if err := (Config{MaxConnections: -1, MaxRequests: -1, MaxMemory: -1, ShedAt: 0.5, RefuseAt: 0.5}).Validate(); err != nil {
		t.Errorf("valid config: %v", err)
	}
}

func TestResolve(t *testing.T) {
	b := Config{}.Resolve(math.MaxInt64)
	if b.MaxConnections <= 0 || b.MaxRequests != DefaultMaxRequests || b.MaxMemory <= 0 || b.MaxMemory > DefaultHeapFallback {
		t.Errorf("defaults: %+v", b)
	}
	if b.MemorySource != "default" && b.MemorySource != "cgroup" {
		t.Errorf("memory source %q", b.MemorySource)
	}
	if b.ShedAt != DefaultShedAt || b.RefuseAt != DefaultRefuseAt {
		t.Errorf("thresholds %+v", b)
	}
	if b := (Config{}).Resolve(512 << 20); b.MaxMemory != 512<<20 || b.MemorySource != "GOMEMLIMIT" {
		t.Errorf("GOMEMLIMIT: %+v", b)
	}
	b = Config{MaxConnections: 7, MaxRequests: 9, MaxMemory: 1 << 20, ShedAt: 0.99}.Resolve(512 << 20)
	if b.MaxConnections != 7 || b.MaxRequests != 9 || b.MaxMemory != 1<<20 || b.MemorySource != "config" || b.RefuseAt != 0.99 {
		t.Errorf("configured: %+v (refuse_at follows a shed_at above its default)", b)
	}
	b = Config{MaxConnections: -1, MaxRequests: -1, MaxMemory: -1}.Resolve(512 << 20)
	if b.MaxConnections != 0 || b.MaxRequests != 0 || b.MaxMemory != 0 || b.MemorySource != "off" {
		t.Errorf("off: %+v", b)
	}
}

func TestMemoryStates(t *testing.T) {
	var used atomic.Int64
	m := New(Budget{MaxMemory: 1000, ShedAt: 0.9, RefuseAt: 0.95}, WithMemoryReader(used.Load))
	step := func(n int64, wantConn, wantReq Reason, keepAlive bool, state string) {
		t.Helper()
		used.Store(n)
		m.Sample()
		if r := m.AdmitConnection(); r != wantConn {
			t.Errorf("at %d: connection %q, want %q", n, r, wantConn)
		} else if r == ReasonNone {
			m.ConnectionDone()
		}
		if r := m.AdmitRequest(); r != wantReq {
			t.Errorf("at %d: request %q, want %q", n, r, wantReq)
		} else if r == ReasonNone {
			m.RequestDone()
		}
		if m.KeepAlive() != keepAlive {
			t.Errorf("at %d: keep-alive %v", n, !keepAlive)
		}
		if st := m.Status(); st.State != state || st.Memory != n {
			t.Errorf("at %d: status %+v, want %s", n, st, state)
		}
	}
	step(100, ReasonNone, ReasonNone, true, "normal")
	step(900, ReasonNone, ReasonMemory, false, "shedding_requests")
	step(960, ReasonMemory, ReasonMemory, false, "refusing_connections")
	step(899, ReasonNone, ReasonNone, true, "normal") // recovers on the next reading
	if st := m.Status(); st.Connections != 0 || st.Requests != 0 {
		t.Errorf("counts leaked: %+v", st)
	}
}

func TestBoundsUnderConcurrency(t *testing.T) {
	m := New(Budget{MaxConnections: 10, MaxRequests: 20})
	var admittedConns, admittedReqs, peakConns, peakReqs atomic.Int64
	var wg sync.WaitGroup
	hold := make(chan struct{})
	for range 100 {
		wg.Go(func() {
			if m.AdmitConnection() == ReasonNone {
				n := admittedConns.Add(1)
				peakConns.Store(max(peakConns.Load(), n))
				<-hold
				m.ConnectionDone()
			}
		})
		wg.Go(func() {
			if m.AdmitRequest() == ReasonNone {
				n := admittedReqs.Add(1)
				peakReqs.Store(max(peakReqs.Load(), n))
				<-hold
				m.RequestDone()
			}
		})
	}
	deadline := time.Now().Add(10 * time.Second)
	for (admittedConns.Load() < 10 || admittedReqs.Load() < 20 || m.refusedConns.Load()+admittedConns.Load() < 100 || m.shed.Load()+admittedReqs.Load() < 100) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if admittedConns.Load() != 10 || admittedReqs.Load() != 20 {
		t.Errorf("admitted %d connections and %d requests, want 10 and 20", admittedConns.Load(), admittedReqs.Load())
	}
	if m.refusedConns.Load() != 90 || m.shed.Load() != 80 {
		t.Errorf("refused %d, shed %d, want 90 and 80", m.refusedConns.Load(), m.shed.Load())
	}
	close(hold)
	wg.Wait()
	if st := m.Status(); st.Connections != 0 || st.Requests != 0 {
		t.Errorf("after release: %+v", st)
	}
	// Slots freed: admitted again.
	if m.AdmitConnection() != ReasonNone || m.AdmitRequest() != ReasonNone {
		t.Error("not admitted after release")
	}
}

func TestNilManagerAdmitsEverything(t *testing.T) {
	var m *Manager
	if m.AdmitConnection() != ReasonNone || m.AdmitRequest() != ReasonNone || !m.KeepAlive() {
		t.Error("nil manager refused")
	}
	m.ConnectionDone()
	m.RequestDone()
}

func TestRunSamplesUntilCancelled(t *testing.T) {
	var used, reads atomic.Int64
	used.Store(2000)
	m := New(Budget{MaxMemory: 1000, ShedAt: 0.95, RefuseAt: 0.98}, WithMemoryReader(func() int64 { reads.Add(1); return used.Load() }))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx, time.Millisecond); close(done) }()
	for m.AdmitConnection() != ReasonMemory {
		time.Sleep(time.Millisecond)
	}
	used.Store(10)
	for m.AdmitConnection() != ReasonNone {
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	if reads.Load() < 2 {
		t.Errorf("%d reads", reads.Load())
	}
}

// The reading follows live data, not garbage: 64 MiB held moves it by
// about that much; the same dropped and collected moves it back.
func TestRuntimeMemoryFollowsLiveData(t *testing.T) {
	runtime.GC()
	base := runtimeMemory()
	if base <= 0 {
		t.Fatalf("runtime memory %d", base)
	}
	held := make([][]byte, 64)
	for i := range held {
		held[i] = make([]byte, 1<<20)
		held[i][0] = 1
	}
	runtime.GC()
	withLive := runtimeMemory()
	if withLive-base < 48<<20 {
		t.Errorf("64 MiB live moved the reading by %d MiB", (withLive-base)>>20)
	}
	runtime.KeepAlive(held)
	held = nil
	runtime.GC()
	if after := runtimeMemory(); after-base > 16<<20 {
		t.Errorf("after the data was collected the reading is still %d MiB above the start", (after-base)>>20)
	}
}

func TestMetrics(t *testing.T) {
	var used atomic.Int64
	m := New(Budget{MaxConnections: 1, MaxRequests: 1, MaxMemory: 100, ShedAt: 0.5, RefuseAt: 0.9}, WithMemoryReader(used.Load))
	reg := prometheus.NewRegistry()
	if err := m.Register(reg); err != nil {
		t.Fatal(err)
	}
	m.AdmitConnection()
	m.AdmitConnection() // refused: max_connections
	m.AdmitRequest()
	m.AdmitRequest() // shed: max_requests
	used.Store(95)
	m.Sample()
	m.AdmitConnection() // refused: memory
	m.AdmitRequest()    // shed: memory
	want := `
# HELP outrider_overload_refused_connections_total Client connections closed at accept by the overload manager, by reason.
# TYPE outrider_overload_refused_connections_total counter
outrider_overload_refused_connections_total{reason="max_connections"} 1
outrider_overload_refused_connections_total{reason="memory"} 1
# HELP outrider_overload_shed_requests_total Requests answered 503 (flag OM) by the overload manager, by reason.
# TYPE outrider_overload_shed_requests_total counter
outrider_overload_shed_requests_total{reason="max_requests"} 1
outrider_overload_shed_requests_total{reason="memory"} 1
# HELP outrider_overload_refusing 1 while new connections are refused because memory is above refuse_at of the budget.
# TYPE outrider_overload_refusing gauge
outrider_overload_refusing 1
# HELP outrider_overload_memory_bytes Memory in use as the overload manager last read it: the Go runtime's, less free heap and garbage.
# TYPE outrider_overload_memory_bytes gauge
outrider_overload_memory_bytes 95
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "outrider_overload_refused_connections_total",
		"outrider_overload_shed_requests_total", "outrider_overload_refusing", "outrider_overload_memory_bytes"); err != nil {
		t.Error(err)
	}
}

func BenchmarkAdmitRequest(b *testing.B) {
	m := New(Budget{MaxRequests: 1 << 30, MaxMemory: 1 << 30, ShedAt: 0.95, RefuseAt: 0.98})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if m.AdmitRequest() == ReasonNone {
				m.RequestDone()
			}
		}
	})
}

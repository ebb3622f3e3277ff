package sidecar

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestLimitsValue(t *testing.T) {
	for _, tt := range []struct {
		in   map[string]any
		want Limits
		err  string
	}{
		{map[string]any{}, Limits{}, ""},
		{map[string]any{"limits": map[string]any{"MaxConnections": 10.0, "MaxPendingRequests": 5.0, "MaxConcurrentRequests": 7.0}}, Limits{10, 5, 7}, ""},
		{map[string]any{"limits": map[string]any{"MaxConnections": -1.0}}, Limits{}, "MaxConnections: want 0 or more"},
		{map[string]any{"limits": map[string]any{"MaxConnections": "x"}}, Limits{}, "MaxConnections: want an integer"},
		{map[string]any{"limits": map[string]any{"MaxConnectionz": 1.0}}, Limits{}, `unknown field "MaxConnectionz"`},
		{map[string]any{"limits": "10"}, Limits{}, "want an object"},
	} {
		got, err := limitsValue(tt.in)
		if (err == nil) != (tt.err == "") || err != nil && !strings.Contains(err.Error(), tt.err) || got != tt.want {
			t.Errorf("limitsValue(%v) = %+v, %v; want %+v, %q", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestBreakerRequests(t *testing.T) {
	b := newBreaker(Limits{MaxConcurrentRequests: 2})
	for i := range 2 {
		if !b.request() {
			t.Fatalf("request %d refused", i+1)
		}
	}
	if b.request() {
		t.Fatal("third concurrent request admitted")
	}
	b.requestDone()
	if !b.request() {
		t.Fatal("request refused after one finished")
	}
	b.set(Limits{})
	for range 100 {
		if !b.request() {
			t.Fatal("unlimited breaker refused")
		}
	}
	if b.overflows.Load() != 1 {
		t.Errorf("overflows %d, want 1", b.overflows.Load())
	}
}

func TestBreakerConnections(t *testing.T) {
	ctx := context.Background()
	b := newBreaker(Limits{MaxConnections: 1})
	if err := b.conn(ctx, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := b.conn(ctx, false, nil); err != errOverflow {
		t.Fatalf("second connection without waiting: %v", err)
	}
	// Waiting is refused without MaxPendingRequests.
	if err := b.conn(ctx, true, nil); err != errOverflow {
		t.Fatalf("waiting with MaxPendingRequests 0: %v", err)
	}
	// An idle connection elsewhere is evicted to make room.
	evicted := 0
	evict := func() bool {
		if evicted > 0 {
			return false
		}
		evicted++
		b.connDone()
		return true
	}
	if err := b.conn(ctx, false, evict); err != nil || evicted != 1 {
		t.Fatalf("with an idle connection to evict: %v (evicted %d)", err, evicted)
	}

	// One request may wait; it gets the slot when the holder releases it.
	b.set(Limits{MaxConnections: 1, MaxPendingRequests: 1})
	got := make(chan error, 1)
	go func() { got <- b.conn(ctx, true, nil) }()
	for b.pending.Load() != 1 {
		time.Sleep(time.Millisecond)
	}
	// A second waiter is over MaxPendingRequests.
	if err := b.conn(ctx, true, nil); err != errOverflow {
		t.Fatalf("second waiter: %v", err)
	}
	b.connDone()
	if err := <-got; err != nil {
		t.Fatalf("waiter after release: %v", err)
	}
	// A waiter gives up when its context ends.
	tctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := b.conn(tctx, true, nil); err != errOverflow {
		t.Fatalf("waiter past its deadline: %v", err)
	}
	if b.pending.Load() != 0 || b.conns.Load() != 1 {
		t.Errorf("pending %d conns %d, want 0 and 1", b.pending.Load(), b.conns.Load())
	}
}

// Concurrent admissions never exceed the limit (run with -race).
func TestBreakerConcurrent(t *testing.T) {
	b := newBreaker(Limits{MaxConnections: 3, MaxPendingRequests: 100})
	var mu sync.Mutex
	most, cur := 0, 0
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			for range 50 {
				if err := b.conn(context.Background(), true, nil); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				cur++
				most = max(most, cur)
				mu.Unlock()
				mu.Lock()
				cur--
				mu.Unlock()
				b.connDone()
			}
		})
	}
	wg.Wait()
	if most > 3 {
		t.Errorf("%d connections at once, limit 3", most)
	}
}

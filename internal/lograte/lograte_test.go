package lograte

import (
	"sync"
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	var l Limiter
	if _, ok := l.Allow(); !ok {
		t.Fatal("first line held back")
	}
	for range 3 {
		if _, ok := l.Allow(); ok {
			t.Fatal("a second line within a second let through")
		}
	}
	l.last.Add(-int64(2 * time.Second))
	if n, ok := l.Allow(); !ok || n != 3 {
		t.Fatalf("after a second: %d %v, want 3 held back and let through", n, ok)
	}
}

// Of many concurrent calls within a second exactly one is let through;
// the next line let through reports the others as held back.
func TestAllowOncePerSecond(t *testing.T) {
	var l Limiter
	if _, ok := l.Allow(); !ok {
		t.Fatal("the first line was held back")
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	passed := 0
	for range 50 {
		wg.Go(func() {
			if _, ok := l.Allow(); ok {
				mu.Lock()
				passed++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if passed != 0 {
		t.Errorf("%d lines passed within the second", passed)
	}
	l.last.Store(0) // a second (and more) later
	if n, ok := l.Allow(); !ok || n != 50 {
		t.Errorf("after the second: %d held back, ok %v; want 50, true", n, ok)
	}
}

package mtlstest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/outrider-mesh/outrider/mtls"
)

// WaitTimeout bounds every wait of the helpers below.
const WaitTimeout = 15 * time.Second

// WaitFor polls cond until it holds, failing the test after WaitTimeout.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(WaitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", WaitTimeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// WaitReady waits until id is ready, failing the test with its status
// after WaitTimeout.
func WaitReady(t testing.TB, id mtls.Identity) {
	t.Helper()
	select {
	case <-id.Ready():
	case <-time.After(WaitTimeout):
		t.Fatalf("not ready after %v; status %+v", WaitTimeout, id.Status())
	}
}

// Run starts id.Run and returns a function that cancels it and returns its
// error (idempotent); the test's cleanup calls it too.
func Run(t testing.TB, id mtls.Identity) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- id.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(WaitTimeout):
				t.Errorf("Run did not return within %v of the cancellation", WaitTimeout)
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

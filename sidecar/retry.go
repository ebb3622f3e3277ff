package sidecar

import (
	"errors"
	"math/rand/v2"
	"sync/atomic"
	"time"
)

// Retry backoff, as Envoy's defaults: the n-th retry waits a uniformly
// random time up to min(retryBackoffBase × 2^(n-1), retryBackoffMax).
const (
	retryBackoffBase = 25 * time.Millisecond
	retryBackoffMax  = 250 * time.Millisecond
)

// errRetriesExhausted: every attempt the route's retry policy allowed was
// answered with a retriable failure, and none is left to relay.
var errRetriesExhausted = errors.New("sidecar: retries exhausted")

// retryBudget bounds the retries in flight of one upstream to a share of
// its requests in flight (Envoy's retry_budget: 20%, and at least 3), so
// that retries cannot multiply the load on an upstream that is failing.
// The zero value is unusable; nil allows no retry. Safe for concurrent
// use; every method is a few atomic operations.
type retryBudget struct {
	percent int64 // of active requests
	min     int64 // retries always allowed
	active  atomic.Int64
	retries atomic.Int64
}

func newRetryBudget() *retryBudget { return &retryBudget{percent: 20, min: 3} }

// start and done bracket one request.
func (b *retryBudget) start() {
	if b != nil {
		b.active.Add(1)
	}
}

func (b *retryBudget) done() {
	if b != nil {
		b.active.Add(-1)
	}
}

// begin takes a retry from the budget; false means none is left (the
// answer is relayed as it is). A retry taken is given back with end once
// the retried request is over.
func (b *retryBudget) begin() bool {
	if b == nil {
		return false
	}
	limit := max(b.min, b.active.Load()*b.percent/100)
	if b.retries.Add(1) > limit {
		b.retries.Add(-1)
		return false
	}
	return true
}

func (b *retryBudget) end(n int) {
	if b != nil && n > 0 {
		b.retries.Add(-int64(n))
	}
}

// sleepBackoff waits before the n-th retry (n >= 1), never past deadline
// (zero: none).
func sleepBackoff(n int, deadline time.Time) {
	ceil := retryBackoffMax
	if n < 5 {
		ceil = min(retryBackoffBase<<(n-1), retryBackoffMax)
	}
	d := rand.N(ceil) + time.Millisecond
	if !deadline.IsZero() {
		d = min(d, time.Until(deadline))
	}
	if d > 0 {
		time.Sleep(d)
	}
}

package sidecar

import (
	"errors"
	"fmt"
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

// RetryBudget bounds an upstream's retries in flight (upstream
// Config.retry_budget, named after Envoy's retry_budget): at most Percent
// of its requests in flight, and always at least MinRetries. The zero value
// means the defaults, 20% and 3 (so a configuration may not ask for both
// 0).
type RetryBudget struct {
	Percent    float64 `json:"budget_percent"`
	MinRetries int     `json:"min_retry_concurrency"`
}

// Retry budget defaults (Envoy's).
const (
	defaultRetryPercent = 20
	defaultMinRetries   = 3
)

// retryBudgetValue reads Config.retry_budget: {"budget_percent": 0..100,
// "min_retry_concurrency": n}; absent fields keep the defaults.
func retryBudgetValue(m map[string]any) (RetryBudget, error) {
	rb := RetryBudget{Percent: defaultRetryPercent, MinRetries: defaultMinRetries}
	v, ok := m["retry_budget"]
	if !ok || v == nil {
		return rb, nil
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return RetryBudget{}, fmt.Errorf("want an object, got %v", v)
	}
	for key, raw := range obj {
		switch key {
		case "budget_percent":
			f, ok := raw.(float64)
			if !ok || f < 0 || f > 100 {
				return RetryBudget{}, fmt.Errorf("budget_percent: want a number from 0 to 100, got %v", raw)
			}
			rb.Percent = f
		case "min_retry_concurrency":
			n, err := intValue(raw)
			if err != nil || n < 0 {
				return RetryBudget{}, fmt.Errorf("min_retry_concurrency: want 0 or more, got %v", raw)
			}
			rb.MinRetries = n
		default:
			return RetryBudget{}, fmt.Errorf("unknown field %q (want budget_percent, min_retry_concurrency)", key)
		}
	}
	if rb == (RetryBudget{}) {
		return RetryBudget{}, fmt.Errorf("budget_percent and min_retry_concurrency both 0 would refuse every retry: remove the routes' retry policies instead")
	}
	return rb, nil
}

// retryBudget enforces one upstream's RetryBudget, so that retries cannot
// multiply the load on an upstream that is failing. nil allows no retry.
// Safe for concurrent use; every method is a few atomic operations, and
// set applies a new budget live.
type retryBudget struct {
	permille atomic.Int64 // of active requests
	min      atomic.Int64 // retries always allowed
	active   atomic.Int64
	retries  atomic.Int64
}

func newRetryBudget(rb RetryBudget) *retryBudget {
	b := &retryBudget{}
	b.set(rb)
	return b
}

func (b *retryBudget) set(rb RetryBudget) {
	if rb == (RetryBudget{}) {
		rb = RetryBudget{Percent: defaultRetryPercent, MinRetries: defaultMinRetries}
	}
	b.permille.Store(int64(rb.Percent * 10))
	b.min.Store(int64(rb.MinRetries))
}

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
	limit := max(b.min.Load(), b.active.Load()*b.permille.Load()/1000)
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

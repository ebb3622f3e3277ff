// Package backoff is the retry delay every Outrider loop uses (Consul
// watches, identity sources, start-up lookups): exponential with full
// jitter on the upper half, and a context-aware sleep.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Delay returns the wait before attempt n (1-based) after n consecutive
// failures: lo doubled n-1 times, capped at hi, then drawn uniformly from
// its upper half so that many clients do not retry in step.
func Delay(lo, hi time.Duration, n int) time.Duration {
	d := lo
	for i := 1; i < n && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	half := d / 2
	return half + rand.N(half+1)
}

// Sleep waits for d or until ctx is done; it reports whether d elapsed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

package sidecar

import (
	"strings"
	"testing"
)

func TestRetryBudgetValue(t *testing.T) {
	for _, tc := range []struct {
		cfg  map[string]any
		want RetryBudget
		err  string
	}{
		{nil, RetryBudget{Percent: 20, MinRetries: 3}, ""},
		{map[string]any{"retry_budget": map[string]any{"budget_percent": 50.0}}, RetryBudget{Percent: 50, MinRetries: 3}, ""},
		{map[string]any{"retry_budget": map[string]any{"min_retry_concurrency": 0.0, "budget_percent": 10.0}}, RetryBudget{Percent: 10}, ""},
		{map[string]any{"retry_budget": map[string]any{"min_retry_concurrency": 0.0, "budget_percent": 0.0}}, RetryBudget{}, "both 0"},
		{map[string]any{"retry_budget": map[string]any{"budget_percent": 120.0}}, RetryBudget{}, "budget_percent"},
		{map[string]any{"retry_budget": map[string]any{"min_retry_concurrency": -1.0}}, RetryBudget{}, "min_retry_concurrency"},
		{map[string]any{"retry_budget": map[string]any{"percent": 10.0}}, RetryBudget{}, `unknown field "percent"`},
		{map[string]any{"retry_budget": "20%"}, RetryBudget{}, "want an object"},
	} {
		got, err := retryBudgetValue(tc.cfg)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%v: error %v, want one naming %s", tc.cfg, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%v: %+v, %v; want %+v", tc.cfg, got, err, tc.want)
		}
	}
}

// The budget allows max(min, percent of active requests) retries at once,
// and a new budget applies to the next retry.
func TestRetryBudgetLimits(t *testing.T) {
	b := newRetryBudget(RetryBudget{Percent: 50, MinRetries: 1})
	for range 10 {
		b.start()
	}
	taken := 0
	for b.begin() {
		taken++
	}
	if taken != 5 {
		t.Fatalf("%d retries with 10 requests in flight at 50%%, want 5", taken)
	}
	b.end(taken)
	b.set(RetryBudget{Percent: 0, MinRetries: 2}) // nothing but the minimum
	taken = 0
	for b.begin() {
		taken++
	}
	if taken != 2 {
		t.Fatalf("%d retries with a 0%% budget and a minimum of 2, want 2", taken)
	}
	var none *retryBudget
	if none.begin() {
		t.Fatal("a nil budget allowed a retry")
	}
}

package health

import (
	"testing"
)

// TestStep: the transitions of Envoy's active health checking.
func TestStep(t *testing.T) {
	cfg := Config{HealthyThreshold: 2, UnhealthyThreshold: 3}
	S, F, E, T := Success, Failure, Error, Timeout
	tests := []struct {
		name    string
		results []Result
		want    []State // the state after each result
	}{
		{"first pass is healthy at once", []Result{S}, []State{Healthy}},
		{"first error is unhealthy at once", []Result{E}, []State{Unhealthy}},
		{"first timeout is unhealthy at once", []Result{T}, []State{Unhealthy}},
		{"an answer takes a healthy endpoint out at once", []Result{S, F}, []State{Healthy, Unhealthy}},
		{"errors need the unhealthy threshold", []Result{S, E, T, E}, []State{Healthy, Healthy, Healthy, Unhealthy}},
		{"a pass resets the failures", []Result{S, E, E, S, E, E, E}, []State{Healthy, Healthy, Healthy, Healthy, Healthy, Healthy, Unhealthy}},
		{"coming back needs the healthy threshold", []Result{F, S, S}, []State{Unhealthy, Unhealthy, Healthy}},
		{"a failure resets the successes", []Result{F, S, E, S, S}, []State{Unhealthy, Unhealthy, Unhealthy, Unhealthy, Healthy}},
		{"counts restart after a change", []Result{S, E, E, E, S, S, E, E}, []State{Healthy, Healthy, Healthy, Unhealthy, Unhealthy, Healthy, Healthy, Healthy}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var st Status
			for i, r := range tt.results {
				from := st.State
				changed := st.step(r, &cfg)
				if st.State != tt.want[i] {
					t.Fatalf("after result %d (%s): %s, want %s", i, r, st.State, tt.want[i])
				}
				if changed != (from != st.State) {
					t.Fatalf("after result %d: changed %v from %s to %s", i, changed, from, st.State)
				}
			}
		})
	}
}

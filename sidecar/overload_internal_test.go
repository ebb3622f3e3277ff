package sidecar

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/outrider-mesh/outrider/sidecar/overload"
)

// The net/http path (HTTP/2, gateways, ingress) admits through admit:
// shed requests never reach the handler; admitted ones while shedding
// close their HTTP/1.1 connection.
func TestAdmitSheds(t *testing.T) {
	var memory atomic.Int64
	ov := overload.New(overload.Budget{MaxMemory: 100, ShedAt: 0.5, RefuseAt: 0.9}, overload.WithMemoryReader(memory.Load))
	var reached int
	h := admit(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached++ }), ov, slog.New(slog.DiscardHandler))
	serve := func(major int) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", "/x", nil)
		r.ProtoMajor = major
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	if w := serve(1); w.Code != 200 || reached != 1 || w.Header().Get("Connection") != "" {
		t.Fatalf("normal: %d reached=%d %v", w.Code, reached, w.Header())
	}
	memory.Store(60)
	ov.Sample()
	for _, major := range []int{1, 2} {
		w := serve(major)
		if w.Code != 503 || w.Header().Get(headerError) != errOverloaded || reached != 1 {
			t.Errorf("HTTP/%d shedding: %d %v reached=%d", major, w.Code, w.Header(), reached)
		}
		if got, want := w.Header().Get("Connection"), map[int]string{1: "close", 2: ""}[major]; got != want {
			t.Errorf("HTTP/%d Connection %q, want %q", major, got, want)
		}
	}
	if st := ov.Status(); st.Requests != 0 {
		t.Errorf("requests counted after the handler returned: %+v", st)
	}
	if flagFor(errOverloaded) != "OM" {
		t.Error("flag")
	}
}

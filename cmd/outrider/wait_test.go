package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// -live asks /live, so a liveness probe passes while the sidecar is not
// ready; without it, /ready decides.
func TestWaitLive(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/live" {
			io.WriteString(w, "live\n")
			return
		}
		http.Error(w, "no SVID yet", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	if code := waitCmd(context.Background(), []string{"-admin-addr", addr, "-timeout", "0", "-quiet", "-live"}, io.Discard, io.Discard); code != exitOK {
		t.Errorf("wait -live: exit %d, want 0", code)
	}
	if code := waitCmd(context.Background(), []string{"-admin-addr", addr, "-timeout", "0", "-quiet"}, io.Discard, io.Discard); code != exitFail {
		t.Errorf("wait (ready): exit %d, want 1", code)
	}
}

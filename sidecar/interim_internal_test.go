package sidecar

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"testing"
)

// limitInterim lets max interim responses through the request's trace,
// fails the next with errTooManyInterim and marks the request's record; a
// request without a trace hook is left alone.
func TestLimitInterim(t *testing.T) {
	relayed := 0
	trace := &httptrace.ClientTrace{Got1xxResponse: func(int, textproto.MIMEHeader) error { relayed++; return nil }}
	rec := &h2Record{}
	ctx := httptrace.WithClientTrace(context.WithValue(context.Background(), h2RecordKey{}, rec), trace)
	r, _ := http.NewRequestWithContext(ctx, "GET", "http://web/", nil)
	limitInterim(r, 2)
	for i := range 2 {
		if err := trace.Got1xxResponse(103, nil); err != nil {
			t.Fatalf("interim %d: %v", i+1, err)
		}
	}
	if err := trace.Got1xxResponse(103, nil); !errors.Is(err, errTooManyInterim) || relayed != 2 || !rec.tooManyInterim.Load() {
		t.Errorf("third: %v, %d relayed, record marked %v; want errTooManyInterim after 2, marked", err, relayed, rec.tooManyInterim.Load())
	}
	bare, _ := http.NewRequest("GET", "http://web/", nil)
	limitInterim(bare, 2) // no trace: nothing to do, no panic
}

// BenchmarkLimitInterim is what the bound adds to each request on the
// net/http path (no interim response arrives).
func BenchmarkLimitInterim(b *testing.B) {
	trace := &httptrace.ClientTrace{Got1xxResponse: func(int, textproto.MIMEHeader) error { return nil }}
	r, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", "http://web/", nil)
	relay := trace.Got1xxResponse
	b.ReportAllocs()
	for b.Loop() {
		trace.Got1xxResponse = relay
		limitInterim(r, 10)
	}
}

package tracing

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestShutdownStopsGoroutines: after Shutdown nothing New started is left
// running, for both OTLP exporters against live receivers and for a dead
// collector. Not parallel: goleak compares against the goroutines running
// when the test starts (parallel tests run after the sequential ones).
func TestShutdownStopsGoroutines(t *testing.T) {
	grpcRcv, grpcAddr := startGRPCReceiver(t)
	httpSrv := httptest.NewServer(&otlpHTTPReceiver{})
	defer httpSrv.Close()
	dead := closedPort(t)

	tests := []struct {
		name string
		cfg  Config
	}{
		{"grpc", Config{Endpoint: grpcAddr, Insecure: true}},
		{"http", Config{Endpoint: httpSrv.URL, Protocol: ProtocolHTTP}},
		{"grpc dead", Config{Endpoint: "http://" + dead, ExportTimeout: 200 * time.Millisecond}},
		{"http dead", Config{Endpoint: "http://" + dead, Protocol: ProtocolHTTP, ExportTimeout: 200 * time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := goleak.IgnoreCurrent()
			cfg := tt.cfg
			cfg.Enabled = true
			tr, err := New(context.Background(), cfg, "svc")
			if err != nil {
				t.Fatal(err)
			}
			endSpans(tr, 20)
			if err := tr.ForceFlush(context.Background()); err != nil {
				t.Fatal(err)
			}
			endSpans(tr, 20)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := tr.Shutdown(ctx); err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
			if s := tr.Stats(); s.Started != 40 || s.Exported+s.Dropped != 40 {
				t.Errorf("Stats %+v", s)
			}
			// The HTTP exporter's shared transport keeps idle keep-alive
			// connections to the live receiver; they are the receiver's to
			// close, not ours.
			httpSrv.CloseClientConnections()
			goleak.VerifyNone(t, before)
		})
	}
	grpcRcv.mu.Lock()
	defer grpcRcv.mu.Unlock()
	if len(grpcRcv.rs) == 0 {
		t.Error("the gRPC receiver got nothing")
	}
}

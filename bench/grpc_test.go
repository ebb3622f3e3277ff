// Package bench holds the Go benchmarks that need a whole mesh; the
// sidecar-pair benchmark against nginx and HAProxy is pair.sh.
package bench

import (
	"context"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/outrider-mesh/outrider/internal/testutil/consultest"
)

type grpcServer struct {
	testpb.UnimplementedTestServiceServer
}

func (grpcServer) UnaryCall(_ context.Context, in *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	return &testpb.SimpleResponse{Payload: &testpb.Payload{Body: make([]byte, in.GetResponseSize())}}, nil
}

func (grpcServer) FullDuplexCall(s grpc.BidiStreamingServer[testpb.StreamingOutputCallRequest, testpb.StreamingOutputCallResponse]) error {
	for {
		m, err := s.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := s.Send(&testpb.StreamingOutputCallResponse{Payload: m.GetPayload()}); err != nil {
			return err
		}
	}
}

// BenchmarkGRPC compares gRPC calls made directly to the server with the
// same calls through an Outrider pair (h2c -> outbound sidecar -> HTTP/2
// over mTLS -> inbound sidecar -> h2c), in one run. The sidecars run in
// this process, so ns/op is the figure to compare (as a ratio), not CPU.
//
//	go test -run x -bench BenchmarkGRPC -benchmem ./bench/
func BenchmarkGRPC(b *testing.B) {
	a := consultest.Start(b)
	if _, _, err := a.Client.ConfigEntries().Set(&api.ServiceConfigEntry{Kind: api.ServiceDefaults, Name: "inventory", Protocol: "grpc"}, nil); err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := grpc.NewServer()
	testpb.RegisterTestServiceServer(srv, grpcServer{})
	go srv.Serve(ln)
	b.Cleanup(srv.Stop)
	ports := consultest.FreePorts(b, 4)
	registerWith(b, a, "inventory", ln.Addr().(*net.TCPAddr).Port, ports[0], nil, nil)
	registerWith(b, a, "client", ports[1], ports[2], []api.Upstream{{DestinationName: "inventory", LocalBindPort: ports[3]}}, nil)
	runSidecar(b, a, "inventory")
	runSidecar(b, a, "client")

	targets := map[string]string{"direct": ln.Addr().String(), "mesh": "127.0.0.1:" + strconv.Itoa(ports[3])}
	clients := map[string]testpb.TestServiceClient{}
	for name, addr := range targets {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { cc.Close() })
		clients[name] = testpb.NewTestServiceClient(cc)
	}
	// Wait until the mesh carries calls (the instance must pass its check).
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := clients["mesh"].UnaryCall(ctx, &testpb.SimpleRequest{})
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("mesh never carried a call: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}

	ctx := context.Background()
	for _, path := range []string{"direct", "mesh"} {
		c := clients[path]
		b.Run("unary/"+path, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := c.UnaryCall(ctx, &testpb.SimpleRequest{ResponseSize: 64}); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
		b.Run("stream/"+path, func(b *testing.B) {
			b.ReportAllocs()
			st, err := c.FullDuplexCall(ctx)
			if err != nil {
				b.Fatal(err)
			}
			msg := &testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: make([]byte, 64)}}
			for range b.N {
				if err := st.Send(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := st.Recv(); err != nil {
					b.Fatal(err)
				}
			}
			st.CloseSend()
		})
	}
}

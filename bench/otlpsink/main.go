// Command otlpsink is the pair benchmark's trace collector: it accepts OTLP
// trace exports over gRPC and HTTP/protobuf, answers success and discards
// them without decoding, so that what the tracing pairs measure is the
// sidecars' cost and not a collector's competing for the same cores (Jaeger
// all-in-one remains available with COLLECTOR=jaeger). On SIGINT or SIGTERM
// it prints the requests and bytes received.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"

	"google.golang.org/grpc"
)

var requests, bytes atomic.Int64

func main() {
	grpcAddr := flag.String("grpc", "127.0.0.1:4317", "OTLP/gRPC listen address")
	httpAddr := flag.String("http", "127.0.0.1:4318", "OTLP/HTTP listen address (POST /v1/traces)")
	flag.Parse()

	gl, err := net.Listen("tcp", *grpcAddr)
	if err != nil {
		log.Fatal(err)
	}
	hl, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		log.Fatal(err)
	}
	gs := grpc.NewServer(grpc.ForceServerCodec(rawCodec{}))
	gs.RegisterService(&grpc.ServiceDesc{
		ServiceName: "opentelemetry.proto.collector.trace.v1.TraceService",
		HandlerType: (*any)(nil),
		Methods:     []grpc.MethodDesc{{MethodName: "Export", Handler: export}},
	}, struct{}{})
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		requests.Add(1)
		bytes.Add(n)
		w.Header().Set("Content-Type", "application/x-protobuf")
	})}
	go func() { _ = gs.Serve(gl) }()
	go func() {
		if err := hs.Serve(hl); !errors.Is(err, http.ErrServerClosed) {
			log.Fatal(err)
		}
	}()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	gs.Stop()
	_ = hs.Close()
	fmt.Printf("otlpsink: %d export requests, %d bytes\n", requests.Load(), bytes.Load())
}

// export is TraceService/Export: the request is counted, the response is an
// empty ExportTraceServiceResponse (zero bytes on the wire).
func export(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
	var n rawLen
	if err := dec(&n); err != nil {
		return nil, err
	}
	requests.Add(1)
	bytes.Add(int64(n))
	return []byte(nil), nil
}

// rawCodec does not decode: Unmarshal records the message's size.
type rawCodec struct{}

type rawLen int

func (rawCodec) Marshal(v any) ([]byte, error) {
	b, _ := v.([]byte)
	return b, nil
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	if p, ok := v.(*rawLen); ok {
		*p = rawLen(len(data))
	}
	return nil
}

func (rawCodec) Name() string { return "proto" }

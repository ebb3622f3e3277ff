// Command demoapp is the tiny service of the demo mesh, in three roles:
//
//   - HTTP (the default): answers "<name> <version>\n" (the version only
//     with -version);
//   - gRPC (-grpc): serves grpc.health.v1.Health, every answer carrying the
//     instance name in the x-instance header;
//   - frontend (-upstream, -grpc-upstream): for every request calls the HTTP
//     upstream URL and the gRPC upstream's Health/Check (through the local
//     Outrider upstream listeners) and answers
//     "<name> -> <HTTP answer> | <gRPC instance> <status>".
//
// It passes the trace context on, as an instrumented application would, so
// that the calls join the trace of the request that caused them.
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
	"os/signal"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
)

var traceHeaders = []string{"Traceparent", "Tracestate", "Baggage", "X-Request-Id"}

func main() {
	name := flag.String("name", "app", "instance name to answer with")
	version := flag.String("version", "", "version to answer with (HTTP role)")
	listen := flag.String("listen", "127.0.0.1:8080", "address to serve on")
	serveGRPC := flag.Bool("grpc", false, "serve grpc.health.v1 instead of HTTP")
	upstream := flag.String("upstream", "", "URL to call for every request (through the sidecar)")
	grpcUpstream := flag.String("grpc-upstream", "", "host:port of a gRPC upstream to health-check for every request (through the sidecar)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if *serveGRPC {
		if err := serveHealth(ctx, *name, *listen); err != nil {
			log.Fatal(err)
		}
		return
	}

	var hc healthpb.HealthClient
	if *grpcUpstream != "" {
		cc, err := grpc.NewClient(*grpcUpstream, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			log.Fatal(err)
		}
		defer cc.Close()
		hc = healthpb.NewHealthClient(cc)
	}
	client := &http.Client{Timeout: 5 * time.Second}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if *upstream == "" {
			fmt.Fprintln(w, strings.TrimSpace(*name+" "+*version))
			return
		}
		status, answer := callHTTP(r, client, *upstream)
		if hc != nil {
			answer += " | " + callGRPC(r, hc)
		}
		w.WriteHeader(status)
		fmt.Fprintf(w, "%s -> %s\n", *name, answer)
	})
	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Shutdown(context.Background())
	}()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}

// callHTTP calls url with r's trace headers and returns the status to
// answer with and the upstream's answer.
func callHTTP(r *http.Request, client *http.Client, url string) (int, string) {
	out, err := http.NewRequestWithContext(r.Context(), "GET", url, nil)
	if err != nil {
		return http.StatusInternalServerError, err.Error()
	}
	for _, h := range traceHeaders {
		if v := r.Header.Get(h); v != "" {
			out.Header.Set(h, v)
		}
	}
	resp, err := client.Do(out)
	if err != nil {
		return http.StatusBadGateway, fmt.Sprintf("upstream failed: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode, strings.TrimSpace(string(body))
}

// callGRPC health-checks the gRPC upstream with r's trace headers as
// metadata and returns "<instance> <status>", or the error.
func callGRPC(r *http.Request, hc healthpb.HealthClient) string {
	md := metadata.MD{}
	for _, h := range traceHeaders {
		if v := r.Header.Get(h); v != "" {
			md.Set(strings.ToLower(h), v)
		}
	}
	ctx, cancel := context.WithTimeout(metadata.NewOutgoingContext(r.Context(), md), 5*time.Second)
	defer cancel()
	var header metadata.MD
	resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Header(&header))
	if err != nil {
		return "inventory: " + err.Error()
	}
	instance := "?"
	if v := header.Get("x-instance"); len(v) > 0 {
		instance = v[0]
	}
	return instance + " " + resp.GetStatus().String()
}

// serveHealth serves grpc.health.v1 on listen until ctx ends.
func serveHealth(ctx context.Context, name, listen string) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	srv := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		grpc.SetHeader(ctx, metadata.Pairs("x-instance", name))
		return h(ctx, req)
	}))
	healthpb.RegisterHealthServer(srv, health.NewServer()) // SERVING for ""
	go func() {
		<-ctx.Done()
		srv.GracefulStop()
	}()
	return srv.Serve(ln)
}

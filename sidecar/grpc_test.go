package sidecar_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/outrider-mesh/outrider/internal/testutil"
	"github.com/outrider-mesh/outrider/internal/testutil/consultest"
	"github.com/outrider-mesh/outrider/sidecar"
)

// grpcApp implements grpc.testing.TestService; every answer names the
// instance. A call with metadata x-sleep waits that long (or until
// cancelled) first.
type grpcApp struct {
	testpb.UnimplementedTestServiceServer
	name      string
	cancelled chan struct{}
	// unavailable makes UnaryCall fail with UNAVAILABLE, counted in calls.
	unavailable atomic.Bool
	calls       atomic.Int64
}

func (g *grpcApp) sleep(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("x-sleep"); len(v) > 0 {
		d, _ := time.ParseDuration(v[0])
		select {
		case <-time.After(d):
		case <-ctx.Done():
			select {
			case g.cancelled <- struct{}{}:
			default:
			}
			return ctx.Err()
		}
	}
	return nil
}

func (g *grpcApp) UnaryCall(ctx context.Context, in *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	g.calls.Add(1)
	if g.unavailable.Load() {
		return nil, status.Error(codes.Unavailable, g.name+" unavailable")
	}
	if err := g.sleep(ctx); err != nil {
		return nil, err
	}
	if s := in.GetResponseStatus(); s != nil {
		return nil, status.Error(codes.Code(s.GetCode()), s.GetMessage())
	}
	return &testpb.SimpleResponse{Username: g.name, Payload: &testpb.Payload{Body: make([]byte, in.GetResponseSize())}}, nil
}

func (g *grpcApp) StreamingOutputCall(in *testpb.StreamingOutputCallRequest, s grpc.ServerStreamingServer[testpb.StreamingOutputCallResponse]) error {
	for _, p := range in.GetResponseParameters() {
		if err := s.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: make([]byte, p.GetSize())}}); err != nil {
			return err
		}
	}
	return nil
}

func (g *grpcApp) StreamingInputCall(s grpc.ClientStreamingServer[testpb.StreamingInputCallRequest, testpb.StreamingInputCallResponse]) error {
	total := 0
	for {
		m, err := s.Recv()
		if err == io.EOF {
			return s.SendAndClose(&testpb.StreamingInputCallResponse{AggregatedPayloadSize: int32(total)})
		}
		if err != nil {
			return err
		}
		total += len(m.GetPayload().GetBody())
	}
}

func (g *grpcApp) FullDuplexCall(s grpc.BidiStreamingServer[testpb.StreamingOutputCallRequest, testpb.StreamingOutputCallResponse]) error {
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

func startGRPCApp(t *testing.T, name string) (*grpcApp, int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	app := &grpcApp{name: name, cancelled: make(chan struct{}, 1)}
	srv := grpc.NewServer()
	testpb.RegisterTestServiceServer(srv, app)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return app, ln.Addr().(*net.TCPAddr).Port
}

func TestMeshGRPC(t *testing.T) {
	t.Parallel()
	a := consultest.Start(t)
	setProtocol(t, a, "inventory", "grpc")
	ports := consultest.FreePorts(t, 6)
	var apps []*grpcApp
	for i := range 2 {
		app, port := startGRPCApp(t, fmt.Sprintf("inventory-%d", i+1))
		apps = append(apps, app)
		register(t, a, service{name: "inventory", id: app.name, appPort: port, publicPort: ports[i]})
	}
	register(t, a, service{name: "client", id: "client-1", appPort: ports[2], publicPort: ports[3],
		upstreams: []api.Upstream{
			{DestinationName: "inventory", LocalBindPort: ports[4]},
			{DestinationName: "ghost", LocalBindPort: ports[5], Config: map[string]any{"protocol": "grpc"}},
		}})
	var all []*runningSidecar
	for _, app := range apps {
		all = append(all, startSidecar(t, a, sidecar.Options{SidecarFor: app.name}))
	}
	client := startSidecar(t, a, sidecar.Options{SidecarFor: "client-1"})
	for _, sc := range append(all, client) {
		sc.waitReady(t)
	}
	waitRoutable(t, a, "inventory", 2)
	eventually(t, 15*time.Second, func() error {
		for _, u := range client.Dump().Upstreams {
			if u.DestinationName == "inventory" && u.Snapshot != nil && len(u.Snapshot.Endpoints) == 2 && u.Protocol == sidecar.GRPC {
				return nil
			}
		}
		return fmt.Errorf("client sidecar does not see 2 grpc endpoints yet")
	})

	dial := func(port int) testpb.TestServiceClient {
		cc, err := grpc.NewClient(addr(port), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return testpb.NewTestServiceClient(cc)
	}
	inv := dial(ports[4])
	ctx := context.Background()

	t.Run("unary calls balanced per request over one connection", func(t *testing.T) {
		seen := map[string]int{}
		for range 40 {
			r, err := inv.UnaryCall(ctx, &testpb.SimpleRequest{ResponseSize: 1000})
			if err != nil {
				t.Fatal(err)
			}
			if len(r.GetPayload().GetBody()) != 1000 {
				t.Fatalf("payload %d bytes", len(r.GetPayload().GetBody()))
			}
			seen[r.GetUsername()]++
		}
		if len(seen) != 2 {
			t.Fatalf("instances that answered: %v", seen)
		}
	})

	t.Run("status and message preserved", func(t *testing.T) {
		_, err := inv.UnaryCall(ctx, &testpb.SimpleRequest{ResponseStatus: &testpb.EchoStatus{Code: int32(codes.NotFound), Message: "no such item"}})
		if s := status.Convert(err); s.Code() != codes.NotFound || s.Message() != "no such item" {
			t.Fatalf("status %v, want NotFound \"no such item\"", s)
		}
	})

	t.Run("server streaming", func(t *testing.T) {
		var params []*testpb.ResponseParameters
		for i := range 5 {
			params = append(params, &testpb.ResponseParameters{Size: int32(100 * (i + 1))})
		}
		st, err := inv.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{ResponseParameters: params})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 5 {
			m, err := st.Recv()
			if err != nil || len(m.GetPayload().GetBody()) != 100*(i+1) {
				t.Fatalf("message %d: %v %v", i, m, err)
			}
		}
		if _, err := st.Recv(); err != io.EOF {
			t.Fatalf("end of stream: %v", err)
		}
	})

	t.Run("client streaming", func(t *testing.T) {
		st, err := inv.StreamingInputCall(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for range 4 {
			if err := st.Send(&testpb.StreamingInputCallRequest{Payload: &testpb.Payload{Body: make([]byte, 250<<10)}}); err != nil {
				t.Fatal(err)
			}
		}
		r, err := st.CloseAndRecv()
		if err != nil || r.GetAggregatedPayloadSize() != 4*250<<10 {
			t.Fatalf("aggregate %v, %v", r, err)
		}
	})

	t.Run("bidirectional streaming", func(t *testing.T) {
		st, err := inv.FullDuplexCall(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 10 {
			msg := []byte(fmt.Sprintf("ping %d", i))
			if err := st.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: msg}}); err != nil {
				t.Fatal(err)
			}
			r, err := st.Recv()
			if err != nil || string(r.GetPayload().GetBody()) != string(msg) {
				t.Fatalf("pong %d: %v %v", i, r, err)
			}
		}
		st.CloseSend()
		if _, err := st.Recv(); err != io.EOF {
			t.Fatalf("end: %v", err)
		}
	})

	t.Run("deadline propagated and enforced", func(t *testing.T) {
		cctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(ctx, "x-sleep", "5s"), 300*time.Millisecond)
		defer cancel()
		_, err := inv.UnaryCall(cctx, &testpb.SimpleRequest{})
		if status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("status %v, want DeadlineExceeded", err)
		}
		// The application's handler saw its context end (the deadline
		// reached it), well before its 5 s sleep.
		select {
		case <-apps[0].cancelled:
		case <-apps[1].cancelled:
		case <-time.After(4 * time.Second):
			t.Fatal("the application never saw the call cancelled")
		}
	})

	t.Run("an unreachable instance is replaced per call, body intact", func(t *testing.T) {
		dead := testutil.DeadPort(t)
		err := a.Client.Agent().ServiceRegister(&api.AgentServiceRegistration{
			Name: "inventory", ID: "inventory-dead", Port: 1, Address: "127.0.0.1",
			Connect: &api.AgentServiceConnect{SidecarService: &api.AgentServiceRegistration{
				Port: dead, Address: "127.0.0.1",
				Checks: api.AgentServiceChecks{{CheckID: "inventory-dead-ttl", Name: "always passing", TTL: "1h", Status: "passing"}},
			}},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer a.Client.Agent().ServiceDeregister("inventory-dead-sidecar-proxy")
		eventually(t, 15*time.Second, func() error {
			for _, u := range client.Dump().Upstreams {
				if u.DestinationName == "inventory" && u.Snapshot != nil && len(u.Snapshot.Endpoints) == 3 {
					return nil
				}
			}
			return fmt.Errorf("client does not see the unreachable instance yet")
		})
		for i := range 30 {
			st, err := inv.StreamingInputCall(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := st.Send(&testpb.StreamingInputCallRequest{Payload: &testpb.Payload{Body: make([]byte, 1000)}}); err != nil {
				t.Fatal(err)
			}
			r, err := st.CloseAndRecv()
			if err != nil || r.GetAggregatedPayloadSize() != 1000 {
				t.Fatalf("call %d: %v, %v", i, r, err)
			}
		}
	})

	t.Run("a deny intention is PERMISSION_DENIED on the open connection", func(t *testing.T) {
		setIntention(t, a, "inventory", "client", api.IntentionActionDeny)
		eventually(t, 10*time.Second, func() error {
			_, err := inv.UnaryCall(ctx, &testpb.SimpleRequest{})
			if status.Code(err) != codes.PermissionDenied {
				return fmt.Errorf("status %v, want PermissionDenied", err)
			}
			return nil
		})
		setIntention(t, a, "inventory", "client", api.IntentionActionAllow)
		eventually(t, 10*time.Second, func() error {
			_, err := inv.UnaryCall(ctx, &testpb.SimpleRequest{})
			return err
		})
	})

	t.Run("no healthy instance is UNAVAILABLE with a message", func(t *testing.T) {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := dial(ports[5]).UnaryCall(cctx, &testpb.SimpleRequest{})
		s := status.Convert(err)
		if s.Code() != codes.Unavailable || !strings.Contains(s.Message(), "no healthy upstream") {
			t.Fatalf("status %v, want Unavailable naming no healthy upstream", s)
		}
	})

	// Last: the router changes how UNAVAILABLE answers are handled.
	t.Run("UNAVAILABLE retried by the route's policy, request message replayed", func(t *testing.T) {
		_, _, err := a.Client.ConfigEntries().Set(&api.ServiceRouterConfigEntry{Kind: api.ServiceRouter, Name: "inventory",
			Routes: []api.ServiceRoute{{
				Match:       &api.ServiceRouteMatch{HTTP: &api.ServiceRouteHTTPMatch{PathPrefix: "/grpc.testing.TestService/"}},
				Destination: &api.ServiceRouteDestination{NumRetries: 2, RetryOn: []string{"unavailable"}},
			}}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, 15*time.Second, func() error {
			for _, u := range client.Dump().Upstreams {
				if u.DestinationName == "inventory" && len(u.Routes) == 2 {
					return nil
				}
			}
			return fmt.Errorf("the client does not see the router's route yet")
		})
		apps[0].unavailable.Store(true)
		defer apps[0].unavailable.Store(false)
		before := apps[0].calls.Load()
		payload := &testpb.Payload{Body: bytes.Repeat([]byte("x"), 2048)}
		for i := range 20 {
			r, err := inv.UnaryCall(ctx, &testpb.SimpleRequest{Payload: payload, ResponseSize: 10})
			if err != nil || r.GetUsername() != "inventory-2" {
				t.Fatalf("call %d: %v from %q, want an answer from inventory-2 (inventory-1 unavailable, retried)", i, err, r.GetUsername())
			}
		}
		if apps[0].calls.Load() == before {
			t.Error("inventory-1 got none of the calls: the retry path was not exercised")
		}
	})
}

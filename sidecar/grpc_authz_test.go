package sidecar_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/outrider-mesh/outrider/internal/testutil/consultest"
	"github.com/outrider-mesh/outrider/sidecar"
)

// TestMeshGRPCL7Intentions: L7 permissions on a grpc service match the
// method's path and metadata on the HTTP/2 path; a denied call gets
// PERMISSION_DENIED (INVALID_ARGUMENT for a header sent twice) and never
// reaches the application.
func TestMeshGRPCL7Intentions(t *testing.T) {
	t.Parallel()
	a := consultest.Start(t)
	setProtocol(t, a, "inventory", "grpc")
	ports := consultest.FreePorts(t, 4)
	app, appPort := startGRPCApp(t, "inventory-1")
	register(t, a, service{name: "inventory", id: app.name, appPort: appPort, publicPort: ports[0]})
	register(t, a, service{name: "client", id: "client-1", appPort: ports[1], publicPort: ports[3],
		upstreams: []api.Upstream{{DestinationName: "inventory", LocalBindPort: ports[2]}}})
	inv := startSidecar(t, a, sidecar.Options{SidecarFor: app.name})
	client := startSidecar(t, a, sidecar.Options{SidecarFor: "client-1"})
	inv.waitReady(t)
	client.waitReady(t)
	waitRoutable(t, a, "inventory", 1)
	_, _, err := a.Client.ConfigEntries().Set(&api.ServiceIntentionsConfigEntry{
		Kind: api.ServiceIntentions, Name: "inventory",
		Sources: []*api.SourceIntention{{Name: "client", Permissions: []*api.IntentionPermission{
			{Action: api.IntentionActionDeny, HTTP: &api.IntentionHTTPPermission{PathExact: "/grpc.testing.TestService/StreamingOutputCall"}},
			{Action: api.IntentionActionDeny, HTTP: &api.IntentionHTTPPermission{
				Header: []api.IntentionHTTPHeaderPermission{{Name: "x-tenant", Exact: "blocked"}}}},
			{Action: api.IntentionActionAllow, HTTP: &api.IntentionHTTPPermission{PathPrefix: "/grpc.testing.TestService/"}},
		}}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient(addr(ports[2]), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	c := testpb.NewTestServiceClient(cc)
	ctx := context.Background()
	streamCode := func(ctx context.Context) codes.Code {
		s, err := c.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{})
		if err == nil {
			_, err = s.Recv()
		}
		return status.Code(err)
	}
	eventually(t, 20*time.Second, func() error {
		if code := streamCode(ctx); code != codes.PermissionDenied {
			return fmt.Errorf("StreamingOutputCall: %v, want PermissionDenied", code)
		}
		return nil
	})
	if _, err := c.UnaryCall(ctx, &testpb.SimpleRequest{}); err != nil {
		t.Errorf("UnaryCall allowed by permission 3: %v", err)
	}
	tenant := func(v ...string) context.Context {
		md := metadata.MD{}
		for _, s := range v {
			md.Append("x-tenant", s)
		}
		return metadata.NewOutgoingContext(ctx, md)
	}
	if _, err := c.UnaryCall(tenant("blocked"), &testpb.SimpleRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("x-tenant: blocked: %v, want PermissionDenied", err)
	}
	if _, err := c.UnaryCall(tenant("ok", "blocked"), &testpb.SimpleRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("x-tenant twice: %v, want InvalidArgument", err)
	}
	if _, err := c.UnaryCall(tenant("acme"), &testpb.SimpleRequest{}); err != nil {
		t.Errorf("x-tenant: acme: %v", err)
	}
}

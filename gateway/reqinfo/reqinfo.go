// Package reqinfo carries what the sidecar knows about a request's sender
// into the gateway filters (package gateway and its feature packages),
// which see only an *http.Request: the mTLS peer's SPIFFE ID, the TCP
// peer's address, and the claims of a JWT the policy layer verified.
//
// The sidecar attaches one Info per request before the gateway chain runs;
// filters read it and never change it.
package reqinfo

import (
	"context"
	"net/netip"

	"github.com/outrider-mesh/outrider/policy/jwtauth"
)

// Info is what the sidecar learned about a request before it was parsed
// as HTTP. It is immutable once attached.
type Info struct {
	// Peer is the mTLS peer's SPIFFE ID ("" at an ingress listener, whose
	// clients are outside the mesh).
	Peer string
	// Remote is the TCP peer's address (the client, or the last proxy in
	// front of it).
	Remote netip.Addr
	// Route names the gateway route that matched ("" when none did); set
	// by package gateway.
	Route string
	// Claims are the claims of the bearer token the policy layer verified
	// for this request, nil when none was verified.
	Claims *jwtauth.Claims
}

type key struct{}

// With returns ctx carrying info.
func With(ctx context.Context, info *Info) context.Context {
	return context.WithValue(ctx, key{}, info)
}

// From returns the Info attached to ctx, or an empty one (never nil) when
// none was: a request the sidecar did not describe has no peer, no remote
// address and no claims, which every filter must treat as unknown.
func From(ctx context.Context) *Info {
	if i, ok := ctx.Value(key{}).(*Info); ok && i != nil {
		return i
	}
	return &empty
}

var empty Info

package mtls

import (
	"context"
	"time"
)

// Identity is a Source that keeps itself current: Consul's Connect CA
// (consulca), the SPIFFE Workload API (spiffesource) or files
// (filesource). A sidecar runs it, waits for Ready, reads it on every
// handshake, and shows its Status on the admin port.
//
// A failed refresh (Consul down, the SPIRE agent restarting, a half-written
// file) keeps the values already held and is reported in Status; the held
// SVID is used until it expires.
type Identity interface {
	Source
	// Run keeps the identity current until ctx is done. It retries failures
	// itself (with backoff) and returns only when ctx is done (ctx.Err()),
	// or at once for a configuration error that no retry can fix.
	Run(ctx context.Context) error
	// Ready is closed once an SVID and the bundle of its trust domain have
	// been loaded; it stays closed (expiry is checked separately).
	Ready() <-chan struct{}
	// Status describes the identity for /certs and /config_dump.
	Status() IdentityStatus
}

// IdentityStatus is what an Identity shows on the admin port. Times are
// zero while nothing is loaded.
type IdentityStatus struct {
	// Source names where the identity comes from: "consul",
	// "spiffe-workload-api" or "files".
	Source string `json:"source"`
	// Endpoint is where the source reads from: the Consul agent, the
	// Workload API socket, or the certificate file.
	Endpoint string `json:"endpoint,omitempty"`
	// SPIFFEID, Serial (hex), NotBefore and NotAfter describe the current
	// SVID's leaf certificate.
	SPIFFEID  string    `json:"spiffe_id,omitempty"`
	Serial    string    `json:"serial,omitempty"`
	NotBefore time.Time `json:"not_before,omitzero"`
	NotAfter  time.Time `json:"not_after,omitzero"`
	// TrustDomain is the SVID's trust domain; TrustDomains lists every
	// trust domain a bundle is held for (federation), sorted.
	TrustDomain  string   `json:"trust_domain,omitempty"`
	TrustDomains []string `json:"trust_domains,omitempty"`
	// Updated is when the SVID or a bundle last changed; Rotations counts
	// SVID changes after the first.
	Updated   time.Time `json:"updated,omitzero"`
	Rotations int64     `json:"rotations"`
	// LastError is the latest failure to refresh, cleared by the next
	// success; LastErrorAt is when it happened.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// Details holds what only this source has (Consul watch states).
	Details any `json:"details,omitempty"`
}

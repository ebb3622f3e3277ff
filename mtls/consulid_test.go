package mtls

import (
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

const testTD = "11111111-2222-3333-4444-555555555555.consul"

func TestParseServiceID(t *testing.T) {
	t.Parallel()
	td := spiffeid.RequireTrustDomainFromString(testTD)
	tests := []struct {
		name    string
		id      string
		want    ServiceID
		wantErr string // substring; "" means success
	}{
		{
			name: "community edition",
			id:   "spiffe://" + testTD + "/ns/default/dc/dc1/svc/web",
			want: ServiceID{TrustDomain: td, Namespace: "default", Datacenter: "dc1", Service: "web"},
		},
		{
			name: "admin partition",
			id:   "spiffe://" + testTD + "/ap/finance/ns/billing/dc/east-1/svc/ledger",
			want: ServiceID{TrustDomain: td, Partition: "finance", Namespace: "billing", Datacenter: "east-1", Service: "ledger"},
		},
		{
			name: "explicit default partition is reported as empty",
			id:   "spiffe://" + testTD + "/ap/default/ns/default/dc/dc1/svc/web",
			want: ServiceID{TrustDomain: td, Namespace: "default", Datacenter: "dc1", Service: "web"},
		},
		{
			name:    "brief example",
			id:      "spiffe://x/foo",
			wantErr: "mtls: spiffe://x/foo is not a Consul service identity: want /ns/<ns>/dc/<dc>/svc/<svc>",
		},
		{
			name:    "trust domain only",
			id:      "spiffe://" + testTD,
			wantErr: "is not a Consul service identity: want /ns/<ns>/dc/<dc>/svc/<svc>",
		},
		{
			name:    "agent identity",
			id:      "spiffe://" + testTD + "/agent/client/dc/dc1/id/0d3e6b2f",
			wantErr: "is not a Consul service identity",
		},
		{
			name:    "mesh gateway identity",
			id:      "spiffe://" + testTD + "/gateway/mesh/dc/dc1",
			wantErr: "is not a Consul service identity",
		},
		{
			name:    "missing service value",
			id:      "spiffe://" + testTD + "/ns/default/dc/dc1/svc",
			wantErr: "is not a Consul service identity",
		},
		{
			name:    "trailing segment",
			id:      "spiffe://" + testTD + "/ns/default/dc/dc1/svc/web/extra",
			wantErr: "is not a Consul service identity",
		},
		{
			name:    "segments out of order",
			id:      "spiffe://" + testTD + "/dc/dc1/ns/default/svc/web",
			wantErr: "is not a Consul service identity",
		},
		{
			name:    "partition layout missing namespace",
			id:      "spiffe://" + testTD + "/ap/finance/dc/dc1/svc/web",
			wantErr: "want /ap/<partition>/ns/<ns>/dc/<dc>/svc/<svc>",
		},
		{
			name:    "partition after namespace",
			id:      "spiffe://" + testTD + "/ns/default/ap/finance/dc/dc1/svc/web",
			wantErr: "is not a Consul service identity",
		},
		{
			name:    "duplicated ap segment",
			id:      "spiffe://" + testTD + "/ap/a/ap/b/ns/default/dc/dc1/svc/web",
			wantErr: "is not a Consul service identity",
		},
		{
			name:    "SPIRE workload",
			id:      "spiffe://example.org/ns/default/sa/web",
			wantErr: "is not a Consul service identity",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			id := spiffeid.RequireFromString(tt.id)
			got, err := ParseServiceID(id)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("ParseServiceID(%s) = %+v, want error containing %q", tt.id, got, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "mtls: ") {
					t.Fatalf("ParseServiceID(%s) error = %q, want prefix \"mtls: \" and %q", tt.id, err, tt.wantErr)
				}
				if got != (ServiceID{}) {
					t.Fatalf("ParseServiceID(%s) returned %+v with an error, want zero value", tt.id, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseServiceID(%s): %v", tt.id, err)
			}
			if got != tt.want {
				t.Fatalf("ParseServiceID(%s) = %+v, want %+v", tt.id, got, tt.want)
			}
		})
	}
}

func TestParseServiceIDZero(t *testing.T) {
	t.Parallel()
	_, err := ParseServiceID(spiffeid.ID{})
	if err == nil || !strings.HasPrefix(err.Error(), "mtls: ") {
		t.Fatalf("ParseServiceID(zero) error = %v, want an mtls: error", err)
	}
}

func TestServiceIDID(t *testing.T) {
	t.Parallel()
	td := spiffeid.RequireTrustDomainFromString(testTD)
	tests := []struct {
		name    string
		in      ServiceID
		want    string
		wantErr string
	}{
		{
			name: "community edition",
			in:   ServiceID{TrustDomain: td, Namespace: "default", Datacenter: "dc1", Service: "web"},
			want: "spiffe://" + testTD + "/ns/default/dc/dc1/svc/web",
		},
		{
			name: "default partition omitted",
			in:   ServiceID{TrustDomain: td, Partition: "default", Namespace: "default", Datacenter: "dc1", Service: "web"},
			want: "spiffe://" + testTD + "/ns/default/dc/dc1/svc/web",
		},
		{
			name: "admin partition",
			in:   ServiceID{TrustDomain: td, Partition: "finance", Namespace: "billing", Datacenter: "dc2", Service: "ledger"},
			want: "spiffe://" + testTD + "/ap/finance/ns/billing/dc/dc2/svc/ledger",
		},
		{
			name:    "zero trust domain",
			in:      ServiceID{Namespace: "default", Datacenter: "dc1", Service: "web"},
			wantErr: "has no trust domain",
		},
		{
			name:    "empty namespace",
			in:      ServiceID{TrustDomain: td, Datacenter: "dc1", Service: "web"},
			wantErr: "has no namespace",
		},
		{
			name:    "empty datacenter",
			in:      ServiceID{TrustDomain: td, Namespace: "default", Service: "web"},
			wantErr: "has no datacenter",
		},
		{
			name:    "empty service",
			in:      ServiceID{TrustDomain: td, Namespace: "default", Datacenter: "dc1"},
			wantErr: "has no service",
		},
		{
			name:    "slash in service",
			in:      ServiceID{TrustDomain: td, Namespace: "default", Datacenter: "dc1", Service: "web/admin"},
			wantErr: `svc="web/admin"`,
		},
		{
			name:    "dot-dot partition",
			in:      ServiceID{TrustDomain: td, Partition: "..", Namespace: "default", Datacenter: "dc1", Service: "web"},
			wantErr: `ap=".."`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := tt.in.ID()
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("%+v.ID() = %s, want error containing %q", tt.in, got, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "mtls: ") {
					t.Fatalf("%+v.ID() error = %q, want prefix \"mtls: \" and %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("%+v.ID(): %v", tt.in, err)
			}
			if got.String() != tt.want {
				t.Fatalf("%+v.ID() = %s, want %s", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseServiceIDDoesNotAllocate(t *testing.T) {
	id := spiffeid.RequireFromString("spiffe://" + testTD + "/ap/finance/ns/billing/dc/dc1/svc/ledger")
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := ParseServiceID(id); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("ParseServiceID allocated %v times per call, want 0", allocs)
	}
}

func FuzzParseServiceID(f *testing.F) {
	for _, seed := range []string{
		"spiffe://" + testTD + "/ns/default/dc/dc1/svc/web",
		"spiffe://" + testTD + "/ap/finance/ns/billing/dc/dc1/svc/ledger",
		"spiffe://" + testTD + "/ap/default/ns/default/dc/dc1/svc/web",
		"spiffe://x/foo",
		"spiffe://x/ns/a/dc/b/svc/c/d",
		"spiffe://x/ap/ns/dc/svc",
		"spiffe://x/ns/ns/dc/dc/svc/svc",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := spiffeid.FromString(s)
		if err != nil {
			return
		}
		sid, err := ParseServiceID(id)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "mtls: ") {
				t.Fatalf("ParseServiceID(%s) error %q lacks the mtls: prefix", id, err)
			}
			return
		}
		if sid.Namespace == "" || sid.Datacenter == "" || sid.Service == "" || sid.Partition == "default" {
			t.Fatalf("ParseServiceID(%s) = %+v: empty field or non-canonical partition", id, sid)
		}
		if sid.TrustDomain != id.TrustDomain() {
			t.Fatalf("ParseServiceID(%s) trust domain %s, want %s", id, sid.TrustDomain, id.TrustDomain())
		}
		back, err := sid.ID()
		if err != nil {
			t.Fatalf("ParseServiceID(%s) = %+v, but ID() fails: %v", id, sid, err)
		}
		// The only spelling Consul accepts but does not produce is an explicit
		// default partition, which ID() drops.
		wantBack := id.String()
		if strings.HasPrefix(id.Path(), "/ap/default/") {
			wantBack = id.TrustDomain().IDString() + strings.TrimPrefix(id.Path(), "/ap/default")
		}
		if back.String() != wantBack {
			t.Fatalf("round trip: %s -> %+v -> %s, want %s", id, sid, back, wantBack)
		}
		again, err := ParseServiceID(back)
		if err != nil || again != sid {
			t.Fatalf("round trip: %s -> %+v -> %s -> %+v, %v", id, sid, back, again, err)
		}
	})
}

package mtls

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// defaultPartition is the name Consul gives the admin partition that every
// Community Edition service lives in. Consul leaves it out of SPIFFE IDs.
const defaultPartition = "default"

// The path layouts of a Consul Connect service identity, as quoted in errors.
const (
	layoutService          = "/ns/<ns>/dc/<dc>/svc/<svc>"
	layoutPartitionService = "/ap/<partition>/ns/<ns>/dc/<dc>/svc/<svc>"
)

// ServiceID is the identity Consul Connect issues to a service instance,
// decoded from the URI SAN of its leaf certificate:
//
//	spiffe://<trust-domain>/ns/<namespace>/dc/<datacenter>/svc/<service>
//	spiffe://<trust-domain>/ap/<partition>/ns/<namespace>/dc/<datacenter>/svc/<service>
//
// The second form is used by Consul Enterprise for services outside the
// default admin partition. ServiceID is a comparable value: two identities of
// the same service compare equal with ==.
type ServiceID struct {
	// TrustDomain is the Connect CA's trust domain, for example
	// "11111111-2222-3333-4444-555555555555.consul".
	TrustDomain spiffeid.TrustDomain
	// Partition is the admin partition. "" means the default partition;
	// ParseServiceID always reports the default partition as "".
	Partition string
	// Namespace is the Consul namespace; "default" on Community Edition.
	// It is always present in the ID, so it must not be empty.
	Namespace string
	// Datacenter is the datacenter the certificate was issued in.
	Datacenter string
	// Service is the logical service name (not the instance or proxy ID).
	Service string
}

// ID builds the SPIFFE ID that Consul would put in the service's certificate.
// The /ap/ segment is omitted when Partition is "" or "default", as Consul
// does. It returns an error, prefixed "mtls: ", when the trust domain is zero
// or any other field (except Partition) is empty or is not a valid SPIFFE path
// segment.
func (s ServiceID) ID() (spiffeid.ID, error) {
	if s.TrustDomain.IsZero() {
		return spiffeid.ID{}, fmt.Errorf("mtls: service identity %q has no trust domain", s.Service)
	}
	for _, f := range [...]struct{ name, value string }{
		{"namespace", s.Namespace},
		{"datacenter", s.Datacenter},
		{"service", s.Service},
	} {
		if f.value == "" {
			return spiffeid.ID{}, fmt.Errorf("mtls: service identity %q in %s has no %s", s.Service, s.TrustDomain, f.name)
		}
	}
	var (
		id  spiffeid.ID
		err error
	)
	if s.Partition == "" || s.Partition == defaultPartition {
		id, err = spiffeid.FromSegments(s.TrustDomain, "ns", s.Namespace, "dc", s.Datacenter, "svc", s.Service)
	} else {
		id, err = spiffeid.FromSegments(s.TrustDomain, "ap", s.Partition, "ns", s.Namespace, "dc", s.Datacenter, "svc", s.Service)
	}
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("mtls: service identity ap=%q ns=%q dc=%q svc=%q: %w",
			s.Partition, s.Namespace, s.Datacenter, s.Service, err)
	}
	return id, nil
}

// ParseServiceID decodes a Consul Connect service identity. It accepts exactly
// the two layouts documented on ServiceID, with every value non-empty; any
// other SPIFFE ID (a Consul agent or mesh-gateway identity, a SPIRE workload,
// extra or missing segments) is an error prefixed "mtls: " that names the ID
// and the layout wanted. An explicit "/ap/default" is accepted, as Consul
// accepts it, and reported as Partition "".
//
// ParseServiceID does not check the trust domain; callers compare
// ServiceID.TrustDomain with the one they trust. It does not allocate unless
// it returns an error, so it is safe on the per-connection path.
func ParseServiceID(id spiffeid.ID) (ServiceID, error) {
	if id.IsZero() {
		return ServiceID{}, errors.New("mtls: empty SPIFFE ID is not a Consul service identity")
	}
	// id.Path() has been validated by spiffeid: it is "" or a sequence of
	// "/<segment>" with non-empty segments, none of them "." or "..".
	path := id.Path()
	s := ServiceID{TrustDomain: id.TrustDomain()}
	want := layoutService
	ok := true
	if strings.HasPrefix(path, "/ap/") {
		want = layoutPartitionService
		s.Partition, path, ok = cutPair(path, "/ap/")
	}
	if ok {
		s.Namespace, path, ok = cutPair(path, "/ns/")
	}
	if ok {
		s.Datacenter, path, ok = cutPair(path, "/dc/")
	}
	if ok {
		s.Service, path, ok = cutPair(path, "/svc/")
	}
	if !ok || path != "" {
		return ServiceID{}, fmt.Errorf("mtls: %s is not a Consul service identity: want %s", id, want)
	}
	if s.Partition == defaultPartition {
		s.Partition = ""
	}
	return s, nil
}

// cutPair consumes "<prefix><value>" from the front of path, where prefix is
// "/<key>/" and value is one non-empty segment. It reports false when path
// does not start that way. (A validated spiffeid path has no empty segments;
// the check keeps ParseServiceID's contract from depending on that.)
func cutPair(path, prefix string) (value, rest string, ok bool) {
	path, ok = strings.CutPrefix(path, prefix)
	if !ok {
		return "", "", false
	}
	value, rest = path, ""
	if i := strings.IndexByte(path, '/'); i >= 0 {
		value, rest = path[:i], path[i:]
	}
	return value, rest, value != ""
}

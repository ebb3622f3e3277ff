package balance

import (
	"errors"

	"github.com/outrider-mesh/outrider/discovery"
)

// ErrNoEndpoint means the upstream has no healthy endpoint to pick.
var ErrNoEndpoint = errors.New("balance: no healthy endpoint")

// Picker picks an endpoint. Implementations are safe for concurrent use,
// never block, and return ErrNoEndpoint when there is nothing to pick.
//
// Picker is the per-snapshot API of the L4 path; it keeps no per-endpoint
// state, so LeastRequest through it degenerates to sampling at random. The
// L7 path uses Balancer.
type Picker interface {
	Pick() (discovery.Endpoint, error)
}

// New returns a picker over snap's endpoints. A nil or empty snapshot gives
// a picker that always returns ErrNoEndpoint. Hash-based policies pick at
// random (there is no request to hash).
func New(p Policy, snap *discovery.Snapshot) Picker {
	if snap == nil || len(snap.Endpoints) == 0 {
		return empty{}
	}
	eps := make([]*Endpoint, len(snap.Endpoints))
	for i, de := range snap.Endpoints {
		eps[i] = &Endpoint{Endpoint: de, live: new(endpointState)}
	}
	return snapshotPicker{build(Config{Policy: p}.normalize(RoundRobin), eps)}
}

type empty struct{}

func (empty) Pick() (discovery.Endpoint, error) { return discovery.Endpoint{}, ErrNoEndpoint }

type snapshotPicker struct{ p picker }

func (s snapshotPicker) Pick() (discovery.Endpoint, error) {
	return s.p.pick(0, false, skip{}).Endpoint, nil
}

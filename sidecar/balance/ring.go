package balance

import (
	"cmp"
	"math"
	"math/bits"
	"math/rand/v2"
	"slices"
	"strconv"
)

// ring is a Ketama consistent hash ring, as Envoy's ring_hash balancer
// builds it: endpoint i owns the points xxh64("<address>_<j>") for j in
// 0..n_i-1, n_i proportional to its weight, and a hash belongs to the
// first point at or after it (wrapping around).
type ring struct {
	eps    []*Endpoint
	hashes []uint64 // sorted points
	owners []uint32 // owners[k] is the endpoint index of hashes[k]
	// index[b] is the first point whose top bits are >= b: a hash's point
	// is found by a short scan from index[hash>>shift] (one or two points
	// per bucket) instead of a binary search with unpredictable branches.
	index []uint32
	shift uint
}

// newRing builds the ring. Envoy gives endpoint i scale*w_i/W points,
// where scale makes the lightest endpoint's share a whole number of points
// and the total at least minSize; the points per unit of weight,
// ceil(minSize*w_min/W)/w_min, then change with every endpoint added or
// removed, and every endpoint's count with them, so that removing one of N
// endpoints moves nearly 2/N of the keys instead of 1/N (17% for one of
// ten). newRing rounds the
// points per unit of weight up to a power of two, which stays the same
// across most changes of the endpoint set: removing an endpoint then moves
// only its own keys. The ring has minSize to 2*minSize points (unless the
// weights are so unequal that the lightest endpoint needs more), at most
// maxSize and MaxRingEntries; every endpoint gets at least one point.
func newRing(eps []*Endpoint, minSize, maxSize int) *ring {
	w := weightsOf(eps)
	total, lightest := 0, w[0]
	for _, x := range w {
		total += x
		lightest = min(lightest, x)
	}
	perWeight := math.Ceil(float64(minSize)*float64(lightest)/float64(total)) / float64(lightest)
	perWeight = math.Exp2(math.Ceil(math.Log2(perWeight)))
	if limit := float64(min(maxSize, MaxRingEntries)); perWeight*float64(total) > limit {
		perWeight = limit / float64(total)
	}

	type point struct {
		hash  uint64
		owner uint32
	}
	points := make([]point, 0, int(perWeight*float64(total))+len(eps))
	key := make([]byte, 0, 64)
	for i, e := range eps {
		key = append(append(key[:0], e.Address...), '_')
		base := len(key)
		n := max(int(math.Round(perWeight*float64(w[i]))), 1)
		for j := range n {
			key = strconv.AppendUint(key[:base], uint64(j), 10)
			points = append(points, point{xxh64(key, 0), uint32(i)})
		}
	}
	slices.SortFunc(points, func(a, b point) int {
		return cmp.Or(cmp.Compare(a.hash, b.hash), cmp.Compare(a.owner, b.owner))
	})
	r := &ring{eps: eps, hashes: make([]uint64, len(points)), owners: make([]uint32, len(points))}
	for k, p := range points {
		r.hashes[k], r.owners[k] = p.hash, p.owner
	}
	r.buildIndex()
	return r
}

func (r *ring) buildIndex() {
	width := max(bits.Len(uint(len(r.hashes)))-1, 0) // 1 to 2 points per bucket
	r.shift = uint(64 - width)
	r.index = make([]uint32, 1<<width+1)
	k := 0
	for b := range r.index {
		for k < len(r.hashes) && r.hashes[k]>>r.shift < uint64(b) {
			k++
		}
		r.index[b] = uint32(k)
	}
}

// search returns the index of the first point at or after hash, wrapping
// to 0 past the last.
func (r *ring) search(hash uint64) int {
	b := hash >> r.shift
	k, end := int(r.index[b]), int(r.index[b+1])
	for k < end && r.hashes[k] < hash {
		k++
	}
	if k == len(r.hashes) {
		k = 0
	}
	return k
}

func (r *ring) pick(hash uint64, hashed bool, s skip) *Endpoint {
	if !hashed {
		return r.pick(rand.Uint64(), true, s)
	}
	k := r.search(hash)
	e := r.eps[r.owners[k]]
	if s.clear(e) {
		return e
	}
	return r.walk(k, e, s)
}

// walk returns e, the endpoint of point k, unless avoided, else the
// endpoint of the first point after k not avoided, or nil.
func (r *ring) walk(k int, e *Endpoint, s skip) *Endpoint {
	a := avoider{skip: s}
	if !a.avoids(e) {
		return e
	}
	if !a.anyLeft(r.eps) {
		return nil
	}
	// Walk on to the next point of an endpoint not avoided, as Envoy's
	// ring over the healthy hosts would: the retry order of a hash is the
	// same on every sidecar, and the keys of an ejected endpoint go to
	// their next endpoint on the ring, and only while it is ejected.
	for st := 1; st < len(r.hashes); st++ {
		if c := r.eps[r.owners[(k+st)%len(r.hashes)]]; !a.avoids(c) {
			return c
		}
	}
	return nil
}

// maglev is a Maglev lookup table (Eisenbud et al., NSDI 2016) built as
// Envoy's maglev balancer builds it: endpoint i fills the table along its
// permutation offset_i + j*skip_i (mod the prime table size), with
// offset_i = xxh64(address) mod M and skip_i = xxh64(address, seed 1) mod
// (M-1) + 1, taking turns in proportion to weight.
type maglev struct {
	eps   []*Endpoint
	table []uint32 // endpoint indexes
}

// maglevRehashes is how many alternative hashes Pick tries for a tried or
// ejected endpoint before scanning the table.
const maglevRehashes = 8

func newMaglev(eps []*Endpoint, size uint64) *maglev {
	const free = ^uint32(0)
	w := weightsOf(eps)
	maxW := 0
	for _, x := range w {
		maxW = max(maxW, x)
	}
	type entry struct {
		next, skip uint64 // next slot of the permutation, and its step
		target     int
	}
	entries := make([]entry, len(eps))
	key := make([]byte, 0, 64)
	for i, e := range eps {
		key = append(key[:0], e.Address...)
		entries[i] = entry{next: xxh64(key, 0) % size, skip: xxh64(key, 1)%(size-1) + 1}
	}
	table := make([]uint32, size)
	for i := range table {
		table[i] = free
	}
	filled := uint64(0)
	// An endpoint of weight w takes a turn in the rounds where
	// round*w >= its target, which then grows by the largest weight: the
	// heaviest endpoint takes every turn, one of a third of its weight
	// every third.
	for round := 1; filled < size; round++ {
		for i := range entries {
			if filled == size {
				break
			}
			en := &entries[i]
			if round*w[i] < en.target {
				continue
			}
			en.target += maxW
			for table[en.next] != free {
				en.next = step(en.next, en.skip, size)
			}
			table[en.next] = uint32(i)
			en.next = step(en.next, en.skip, size)
			filled++
		}
	}
	return &maglev{eps: eps, table: table}
}

// step returns (next + skip) mod size, for next and skip below size.
func step(next, skip, size uint64) uint64 {
	next += skip
	if next >= size {
		next -= size
	}
	return next
}

func (m *maglev) pick(hash uint64, hashed bool, s skip) *Endpoint {
	if !hashed {
		return m.pick(rand.Uint64(), true, s)
	}
	e := m.eps[m.table[hash%uint64(len(m.table))]]
	if s.clear(e) {
		return e
	}
	return m.retry(hash, e, s)
}

// retry returns e, hash's endpoint, unless avoided, else the endpoint of
// the first rehash of hash, then of the first table entry after hash's,
// not avoided, or nil.
func (m *maglev) retry(hash uint64, e *Endpoint, s skip) *Endpoint {
	size := uint64(len(m.table))
	a := avoider{skip: s}
	if !a.avoids(e) {
		return e
	}
	if !a.anyLeft(m.eps) {
		return nil
	}
	// Envoy's retry: the hash of attempt n is hash ^ (2^64 - n).
	for n := uint64(1); n <= maglevRehashes; n++ {
		if c := m.eps[m.table[(hash^(^uint64(0)-n+1))%size]]; !a.avoids(c) {
			return c
		}
	}
	start := hash % size
	for st := uint64(1); st < size; st++ {
		if c := m.eps[m.table[(start+st)%size]]; !a.avoids(c) {
			return c
		}
	}
	return nil
}

package cache

import (
	"container/list"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outrider-mesh/outrider/internal/confval"
)

// maxVariants bounds the responses kept for one primary key (one URI with
// different Vary'd request headers); a new one replaces the oldest.
const maxVariants = 8

// entryOverhead is what an entry costs besides its key, headers and body,
// counted against the store's bound.
const entryOverhead = 256

// Store holds the responses of every route of one listener: a
// byte-bounded LRU shared by the routes' Cache values. It is safe for
// concurrent use; lookups hold its one mutex only to find the entry and
// move it to the front, and serve it after releasing it (entries are
// immutable).
type Store struct {
	max int64

	mu     sync.Mutex
	groups map[string][]*entry // primary key -> variants, oldest first
	lru    list.List           // of *entry, most recent at the front
	used   int64

	bytes     prometheus.Gauge
	objects   prometheus.Gauge
	evictions prometheus.Counter
}

// StoreOption configures NewStore.
type StoreOption func(*Store)

// WithStoreMetrics reports the store's size and evictions to m under the
// label store=name (the listener's name). A nil m is no metrics.
func WithStoreMetrics(m *Metrics, name string) StoreOption {
	return func(s *Store) {
		if m == nil {
			return
		}
		s.bytes = m.storedBytes.WithLabelValues(name)
		s.objects = m.storedObjects.WithLabelValues(name)
		s.evictions = m.evictions.WithLabelValues(name)
	}
}

// NewStore returns an empty store that keeps at most maxBytes of
// responses (keys, header fields and bodies, plus a small fixed overhead
// per response), evicting the least recently used first. A maxBytes of 0
// or less stores nothing.
func NewStore(maxBytes confval.ByteSize, opts ...StoreOption) *Store {
	s := &Store{max: int64(maxBytes), groups: map[string][]*entry{}}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Len is the number of responses stored.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lru.Len()
}

// Size is the number of bytes counted against the bound.
func (s *Store) Size() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.used
}

// entry is one stored response. It is immutable once stored, except elem
// which the store owns under mu.
type entry struct {
	key      string
	vary     []string // selecting header names (canonical)
	varyVals []string // their normalized values in the request that filled it

	status  int
	header  http.Header // cloned, slices clipped: safe to share read-only
	body    []byte
	etag    string
	lastMod string
	cc      directives

	responseTime time.Time     // when the response (or the 304 that refreshed it) arrived
	initialAge   time.Duration // corrected_initial_age, RFC 9111 §4.2.3
	lifetime     time.Duration // freshness lifetime, §4.2.1

	pass      bool // a "fetch without coalescing" marker, no response
	passUntil time.Time

	size int64
	elem *list.Element
}

// age is the entry's current_age at now (RFC 9111 §4.2.3).
func (e *entry) age(now time.Time) time.Duration {
	return e.initialAge + max(0, now.Sub(e.responseTime))
}

// matches reports whether e was selected by request headers like h
// (RFC 9111 §4.1).
func (e *entry) matches(h http.Header) bool {
	for i, name := range e.vary {
		if varyValue(h, name) != e.varyVals[i] {
			return false
		}
	}
	return true
}

func (e *entry) sameVariant(o *entry) bool {
	return slices.Equal(e.vary, o.vary) && slices.Equal(e.varyVals, o.varyVals)
}

// lookup returns the newest stored response for key that request headers
// h select, or pass when key carries a live pass marker.
func (s *Store) lookup(key string, h http.Header, now time.Time) (e *entry, pass bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	vs := s.groups[key]
	for i := len(vs) - 1; i >= 0; i-- {
		v := vs[i]
		if v.pass {
			if now.Before(v.passUntil) {
				return nil, true
			}
			s.removeLocked(v)
			continue
		}
		if v.matches(h) {
			s.lru.MoveToFront(v.elem)
			return v, false
		}
	}
	return nil, false
}

// put stores e, replacing the response for the same variant and any pass
// marker, and evicts least recently used entries past the bound. It
// reports whether e was stored (it is not when larger than the store).
func (s *Store) put(e *entry) bool {
	e.size = int64(len(e.key)+len(e.body)) + headerSize(e.header) + entryOverhead
	for _, v := range e.varyVals {
		e.size += int64(len(v))
	}
	if e.size > s.max {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	vs := s.groups[e.key]
	for i := len(vs) - 1; i >= 0; i-- {
		if vs[i].pass || e.pass || vs[i].sameVariant(e) {
			s.removeLocked(vs[i])
		}
	}
	if vs = s.groups[e.key]; len(vs) >= maxVariants {
		s.removeLocked(vs[0])
		s.count(s.evictions)
	}
	s.groups[e.key] = append(s.groups[e.key], e)
	e.elem = s.lru.PushFront(e)
	s.used += e.size
	for s.used > s.max {
		s.removeLocked(s.lru.Back().Value.(*entry))
		s.count(s.evictions)
	}
	s.gauges()
	return true
}

// invalidate removes every response stored for key.
func (s *Store) invalidate(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range slices.Clone(s.groups[key]) {
		s.removeLocked(v)
	}
	s.gauges()
}

// replace swaps old (if still stored) for e, as a revalidation does.
func (s *Store) replace(old, e *entry) bool {
	s.mu.Lock()
	if old.elem != nil && slices.Contains(s.groups[old.key], old) {
		s.removeLocked(old)
	}
	s.mu.Unlock()
	return s.put(e)
}

func (s *Store) removeLocked(e *entry) {
	vs := s.groups[e.key]
	if i := slices.Index(vs, e); i >= 0 {
		vs = slices.Delete(vs, i, i+1)
	}
	if len(vs) == 0 {
		delete(s.groups, e.key)
	} else {
		s.groups[e.key] = vs
	}
	if e.elem != nil {
		s.lru.Remove(e.elem)
		e.elem = nil
		s.used -= e.size
	}
}

func (s *Store) count(c prometheus.Counter) {
	if c != nil {
		c.Inc()
	}
}

func (s *Store) gauges() {
	if s.bytes != nil {
		s.bytes.Set(float64(s.used))
		s.objects.Set(float64(s.lru.Len()))
	}
}

func headerSize(h http.Header) int64 {
	var n int64
	for k, vs := range h {
		for _, v := range vs {
			n += int64(len(k) + len(v) + 4)
		}
	}
	return n
}

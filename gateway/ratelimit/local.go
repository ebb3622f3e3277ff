package ratelimit

import (
	"math"
	"sync"
	"sync/atomic"
)

// gcra is the arithmetic of the generic cell rate algorithm, a token
// bucket kept as one number: the theoretical arrival time (TAT) of the
// next request, in nanoseconds. A request at now is admitted when
// max(TAT, now) + interval - now <= tolerance; admitting moves TAT on by
// interval. A bucket whose TAT is not after now is full, exactly as if
// it had never been used, which is what lets the table forget it.
type gcra struct {
	interval  int64 // period / requests
	tolerance int64 // burst * interval
}

// verdict is one limit's answer.
type verdict struct {
	ok bool
	// wait is how long until the request would be admitted (when !ok).
	wait int64
	// remaining is how many more requests would be admitted now (when ok).
	remaining int64
	// full is how long until the bucket is full again (when ok).
	full int64
	// overflow: the key found the table full and used the shared
	// overflow bucket.
	overflow bool
}

func (g gcra) judge(tat, now int64) (newTAT int64, v verdict) {
	if tat < now {
		tat = now
	}
	newTAT = tat + g.interval
	diff := newTAT - now
	if diff > g.tolerance {
		return 0, verdict{wait: diff - g.tolerance}
	}
	return newTAT, verdict{ok: true, remaining: (g.tolerance - diff) / g.interval, full: diff}
}

type bucket struct{ tat atomic.Int64 }

func (b *bucket) take(g gcra, now int64) verdict {
	for {
		tat := b.tat.Load()
		next, v := g.judge(tat, now)
		if !v.ok || b.tat.CompareAndSwap(tat, next) {
			return v
		}
	}
}

const maxShards = 64

// table holds one limit's buckets, keyed by a 64-bit hash of the key,
// in lock shards. Takes run under a shard's read lock, so that a sweep
// (write lock) never drops a bucket a take is about to move.
type table struct {
	g        gcra
	shards   []shard
	perShard int
	// overflow is shared by new keys that find their shard full of
	// buckets still limiting (verdict.overflow).
	overflow bucket
}

type shard struct {
	mu sync.RWMutex
	m  map[uint64]*bucket
	// nextSweep is when the earliest bucket left by the last sweep becomes
	// full; a full shard is not swept again before then.
	nextSweep int64
	_         [24]byte // pad to 64 bytes: shards on separate cache lines
}

func newTable(g gcra, maxKeys int) *table {
	n := maxShards
	for n > 1 && n > maxKeys {
		n /= 2
	}
	t := &table{g: g, shards: make([]shard, n), perShard: maxKeys / n} // n <= maxKeys, so at least 1
	for i := range t.shards {
		t.shards[i].m = make(map[uint64]*bucket)
	}
	return t
}

// take decides for the key whose hash is h at now (nanoseconds).
func (t *table) take(h uint64, now int64) verdict {
	s := &t.shards[h&uint64(len(t.shards)-1)]
	s.mu.RLock()
	if b, ok := s.m[h]; ok {
		v := b.take(t.g, now)
		s.mu.RUnlock()
		return v
	}
	s.mu.RUnlock()

	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.m[h]
	if !ok {
		if len(s.m) >= t.perShard && now >= s.nextSweep {
			s.sweep(now)
		}
		if len(s.m) >= t.perShard {
			v := t.overflow.take(t.g, now)
			v.overflow = true
			return v
		}
		b = new(bucket)
		s.m[h] = b
	}
	return b.take(t.g, now)
}

// sweep forgets every full bucket (s.mu held for writing).
func (s *shard) sweep(now int64) {
	next := int64(math.MaxInt64)
	for k, b := range s.m {
		tat := b.tat.Load()
		if tat <= now {
			delete(s.m, k)
		} else if tat < next {
			next = tat
		}
	}
	s.nextSweep = next
}

// len counts the keys held (for tests).
func (t *table) len() int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}

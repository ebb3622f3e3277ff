// Package lograte keeps a repeated log line to one a second, for events
// that come in floods (requests shed under overload, dry-run denials).
package lograte

import (
	"sync/atomic"
	"time"
)

// Limiter lets one line through per second and counts the ones it held
// back. The zero value is ready; safe for concurrent use.
type Limiter struct {
	last       atomic.Int64 // unix nanoseconds of the last line let through
	suppressed atomic.Int64
}

// Allow reports whether to log now, and how many lines were held back
// since the last one.
func (l *Limiter) Allow() (suppressed int64, ok bool) {
	now := time.Now().UnixNano()
	last := l.last.Load()
	if now-last < int64(time.Second) || !l.last.CompareAndSwap(last, now) {
		l.suppressed.Add(1)
		return 0, false
	}
	return l.suppressed.Swap(0), true
}

package consul

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/outrider-mesh/outrider/internal/backoff"
)

// Fetch performs one (possibly blocking) query. The Watch fills opts with
// the context, WaitIndex or WaitHash, and WaitTime; the fetch passes them to
// the consul/api call and returns its result and metadata. A fetch that
// cannot make sense of an answer (a body that does not parse, or parses to
// something Consul never sends) returns an error: the watch then keeps the
// last good value.
type Fetch[T any] func(opts *api.QueryOptions) (T, *api.QueryMeta, error)

// Status describes a watch's health for logs and /config_dump.
type Status struct {
	// Name identifies the watch, e.g. "health/connect/api".
	Name string `json:"name"`
	// LastSuccess is when Consul last answered; zero before the first answer.
	LastSuccess time.Time `json:"last_success,omitzero"`
	// Index is the blocking index of the last answer.
	Index uint64 `json:"index"`
	// Failures counts consecutive failed queries; non-zero means the
	// published value may be stale.
	Failures int `json:"failures"`
	// LastError is the most recent query error, kept until the next success.
	LastError string `json:"last_error,omitempty"`
	// RetryAfter is the delay Consul asked for in its last failed answer
	// (a 429 or 503 with Retry-After), as honored; zero when it asked none.
	RetryAfter time.Duration `json:"retry_after,omitempty"`
	// Warning describes what was odd about the last answer although it was
	// used: an index that went backwards (the watch restarted its blocking
	// loop) or no usable index or hash (the watch cannot block and polls at
	// its rate limit). Cleared by the next ordinary answer.
	Warning string `json:"warning,omitempty"`
	// IndexResets counts the answers whose index went backwards.
	IndexResets int `json:"index_resets,omitempty"`
}

// Stale reports whether the last query failed, i.e. the published value is
// the last known good one rather than Consul's current answer.
func (s Status) Stale() bool { return s.Failures > 0 }

// Watch runs a blocking-query loop and publishes each new answer.
//
// Consul's rules for blocking queries ("Blocking Queries: Implementation
// Details" in its API docs) are followed:
//   - the next query waits on the index (or content hash) of the previous
//     answer; an index that goes backwards resets to 0, restarting the loop;
//   - an index of 0 (or none) is never waited on, since such a query does
//     not block: the watch waits on 1 instead. An answer without a usable
//     index or hash is published (nothing tells that it did not change) and
//     reported in Status.Warning;
//   - the loop is rate limited with a token bucket (default: a burst of 2,
//     then one query a second), so a query that returns at once, however
//     often, degrades into polling instead of a busy loop, while isolated
//     changes are delivered without delay. Consul's docs suggest polling "say
//     every 15 seconds" under churn; a second is chosen because endpoint
//     changes during a rolling deploy must reach the data plane quickly, and
//     one query a second per watch is light for the local agent. WithRateLimit
//     changes it.
//
// Every query is bounded by its wait time plus Consul's jitter (wait/16)
// and a grace period, so an agent that accepts the request and never
// answers is reported as a failure rather than leaving the watch silently
// stale. On errors the loop backs off exponentially with jitter, waits at
// least as long as a Retry-After asks (see NewClient), and keeps the last
// published value: consumers keep serving it.
type Watch[T any] struct {
	name    string
	fetch   Fetch[T]
	publish func(T)
	cfg     watchConfig
	status  atomic.Pointer[Status]
}

type watchConfig struct {
	logger     *slog.Logger
	waitTime   time.Duration
	minBackoff time.Duration
	maxBackoff time.Duration
	rateEvery  time.Duration
	rateBurst  int
	queryGrace time.Duration
	hash       bool
	addr       string
	// now and sleep are the clock; tests replace them.
	now   func() time.Time
	sleep func(context.Context, time.Duration) bool
}

// Option configures a Watch.
type Option func(*watchConfig)

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option { return func(c *watchConfig) { c.logger = l } }

// WithWaitTime sets the blocking query's maximum wait (default 5m, Consul's).
func WithWaitTime(d time.Duration) Option { return func(c *watchConfig) { c.waitTime = d } }

// WithBackoff sets the retry backoff bounds (default 250ms to 30s).
func WithBackoff(lo, hi time.Duration) Option {
	return func(c *watchConfig) { c.minBackoff, c.maxBackoff = lo, hi }
}

// WithRateLimit sets the watch's query rate limit: a token bucket holding
// burst queries, refilled with one every every (default: 2 and 1s). A
// non-positive every disables the limit (for tests only: a Consul that
// answers at once would then be queried in a busy loop).
func WithRateLimit(every time.Duration, burst int) Option {
	return func(c *watchConfig) { c.rateEvery, c.rateBurst = every, max(burst, 1) }
}

// WithAddress names the Consul address in error logs.
func WithAddress(addr string) Option { return func(c *watchConfig) { c.addr = addr } }

// HashBased makes the watch block on the content hash instead of the index,
// as the agent's local endpoints (/v1/agent/service/:id) require.
func HashBased() Option { return func(c *watchConfig) { c.hash = true } }

// maxRetryAfter caps a Retry-After delay: a watch never waits longer than
// one blocking query of Consul's default wait would last.
const maxRetryAfter = 5 * time.Minute

// NewWatch returns a watch that calls publish, on the watch's goroutine,
// with the first answer and with every answer whose index or hash changed.
// publish must not block for long.
func NewWatch[T any](name string, fetch Fetch[T], publish func(T), opts ...Option) *Watch[T] {
	cfg := watchConfig{
		logger:     slog.New(slog.DiscardHandler),
		waitTime:   5 * time.Minute,
		minBackoff: 250 * time.Millisecond,
		maxBackoff: 30 * time.Second,
		rateEvery:  time.Second,
		rateBurst:  2,
		queryGrace: 10 * time.Second,
		now:        time.Now,
		sleep:      backoff.Sleep,
	}
	for _, o := range opts {
		o(&cfg)
	}
	w := &Watch[T]{name: name, fetch: fetch, publish: publish, cfg: cfg}
	w.status.Store(&Status{Name: name})
	return w
}

// Status returns the watch's current status. Safe for concurrent use.
func (w *Watch[T]) Status() Status { return *w.status.Load() }

// queryTimeout bounds one query: Consul answers a blocking query after at
// most wait + wait/16 (its jitter); the grace covers a slow network.
func (c *watchConfig) queryTimeout() time.Duration {
	return c.waitTime + c.waitTime/16 + c.queryGrace
}

// Run queries until ctx is done and then returns ctx's error. It never
// returns early: errors are retried with backoff and reported in the log and
// in Status.
func (w *Watch[T]) Run(ctx context.Context) error {
	var (
		index     uint64
		hash      string
		published bool
		failures  int
		resets    int
		warning   string
	)
	lim := tokenBucket{every: w.cfg.rateEvery, burst: float64(w.cfg.rateBurst), tokens: float64(w.cfg.rateBurst)}
	for {
		if d := lim.take(w.cfg.now()); d > 0 && !w.cfg.sleep(ctx, d) {
			return ctx.Err()
		}
		val, meta, hint, err := w.query(ctx, index, hash)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err == nil && meta == nil {
			err = errors.New("no query metadata in answer")
		}
		if err != nil {
			failures++
			delay := Backoff(w.cfg.minBackoff, w.cfg.maxBackoff, failures)
			retryAfter := parseRetryAfter(hint, w.cfg.now())
			delay = max(delay, retryAfter)
			st := w.Status()
			st.Failures, st.LastError, st.RetryAfter = failures, err.Error(), retryAfter
			w.status.Store(&st)
			w.cfg.logger.Warn("consul query failed; keeping last known good value",
				"watch", w.name, "consul", w.cfg.addr, "attempt", failures,
				"retry_in", delay.Round(time.Millisecond), "error", err)
			if !w.cfg.sleep(ctx, delay) {
				return ctx.Err()
			}
			continue
		}
		if failures > 0 {
			w.cfg.logger.Info("consul query recovered", "watch", w.name, "after_failures", failures)
		}
		failures = 0
		changed := !published
		prevWarning := warning
		warning = ""
		if w.cfg.hash {
			if meta.LastContentHash == "" {
				// Nothing to block on and nothing to compare: publish it.
				warning = "the answer has no X-Consul-ContentHash: cannot block; polling at the rate limit"
				changed = true
			}
			changed = changed || meta.LastContentHash != hash
			hash = meta.LastContentHash
		} else {
			next := nextIndex(index, meta.LastIndex)
			switch {
			case meta.LastIndex == 0:
				warning = "the answer has no X-Consul-Index (or 0): cannot block; polling at the rate limit"
				changed = true
			case meta.LastIndex < index:
				resets++
				warning = fmt.Sprintf("X-Consul-Index went backwards (%d after %d): blocking index reset", meta.LastIndex, index)
			}
			changed = changed || next != index
			index = next
		}
		if warning != "" && warning != prevWarning {
			w.cfg.logger.Warn("consul answer used with a caveat", "watch", w.name, "consul", w.cfg.addr, "warning", warning)
		}
		w.status.Store(&Status{Name: w.name, LastSuccess: w.cfg.now(), Index: index, Warning: warning, IndexResets: resets})
		if changed {
			w.publish(val)
			published = true
		}
	}
}

// query runs one fetch under the query timeout. hint is the Retry-After
// of a failed answer, when the client carries the hook NewClient installs.
func (w *Watch[T]) query(ctx context.Context, index uint64, hash string) (val T, meta *api.QueryMeta, hint string, err error) {
	qctx, cancel := context.WithTimeout(ctx, w.cfg.queryTimeout())
	defer cancel()
	sink := new(retryAfterSink)
	qctx = context.WithValue(qctx, retryAfterKey{}, sink)
	opts := (&api.QueryOptions{WaitTime: w.cfg.waitTime}).WithContext(qctx)
	if w.cfg.hash {
		opts.WaitHash = hash
	} else {
		opts.WaitIndex = index
	}
	val, meta, err = w.fetch(opts)
	if err != nil && ctx.Err() == nil && qctx.Err() == context.DeadlineExceeded {
		err = fmt.Errorf("consul: no answer within %s (blocking wait %s): %w", w.cfg.queryTimeout(), w.cfg.waitTime, err)
	}
	if p := sink.v.Load(); p != nil {
		hint = *p
	}
	return val, meta, hint, err
}

// nextIndex applies Consul's blocking-query index rules: an index that goes
// backwards resets to 0 (the next query returns at once with a fresh index),
// and 0 is never waited on, since a query with index 0 does not block: 1 is
// always safe to wait on.
func nextIndex(prev, got uint64) uint64 {
	switch {
	case got == 0:
		return 1
	case got < prev:
		return 0
	}
	return got
}

// Backoff is the delay before retry n after n consecutive failures (see
// internal/backoff.Delay).
func Backoff(lo, hi time.Duration, n int) time.Duration { return backoff.Delay(lo, hi, n) }

// tokenBucket is the watch loop's rate limit; it is used by one goroutine.
type tokenBucket struct {
	every  time.Duration
	burst  float64
	tokens float64
	last   time.Time
}

// take spends a token at now and returns how long to wait before the query
// it pays for may be sent (0 when a token was available).
func (b *tokenBucket) take(now time.Time) time.Duration {
	if b.every <= 0 {
		return 0
	}
	if !b.last.IsZero() {
		b.tokens = min(b.burst, b.tokens+float64(now.Sub(b.last))/float64(b.every))
	}
	b.last = now
	b.tokens--
	if b.tokens >= 0 {
		return 0
	}
	return time.Duration(-b.tokens * float64(b.every))
}

// parseRetryAfter reads a Retry-After value (delay-seconds or an
// HTTP-date), capped at maxRetryAfter; anything else is 0.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseUint(v, 10, 32); err == nil {
		return min(time.Duration(s)*time.Second, maxRetryAfter)
	}
	if t, err := http.ParseTime(v); err == nil {
		return min(max(t.Sub(now), 0), maxRetryAfter)
	}
	return 0
}

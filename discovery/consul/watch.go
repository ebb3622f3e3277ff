package consul

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/outrider-mesh/outrider/internal/backoff"
)

// Fetch performs one (possibly blocking) query. The Watch fills opts with
// the context, WaitIndex or WaitHash, and WaitTime; the fetch passes them to
// the consul/api call and returns its result and metadata.
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
}

// Stale reports whether the last query failed, i.e. the published value is
// the last known good one rather than Consul's current answer.
func (s Status) Stale() bool { return s.Failures > 0 }

// Watch runs a blocking-query loop and publishes each new answer.
//
// Consul's rules for blocking queries are followed: the next query waits on
// the index (or content hash) of the previous answer, an index that goes
// backwards resets to 0, an index of 0 is treated as 1 so the loop cannot
// spin. On errors the loop backs off exponentially with jitter and keeps the
// last published value: consumers keep serving it.
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
	hash       bool
	addr       string
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

// WithAddress names the Consul address in error logs.
func WithAddress(addr string) Option { return func(c *watchConfig) { c.addr = addr } }

// HashBased makes the watch block on the content hash instead of the index,
// as the agent's local endpoints (/v1/agent/service/:id) require.
func HashBased() Option { return func(c *watchConfig) { c.hash = true } }

// NewWatch returns a watch that calls publish, on the watch's goroutine,
// with the first answer and with every answer whose index or hash changed.
// publish must not block for long.
func NewWatch[T any](name string, fetch Fetch[T], publish func(T), opts ...Option) *Watch[T] {
	cfg := watchConfig{
		logger:     slog.New(slog.DiscardHandler),
		waitTime:   5 * time.Minute,
		minBackoff: 250 * time.Millisecond,
		maxBackoff: 30 * time.Second,
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

// Run queries until ctx is done and then returns ctx's error. It never
// returns early: errors are retried with backoff and reported in the log and
// in Status.
func (w *Watch[T]) Run(ctx context.Context) error {
	var (
		index     uint64
		hash      string
		published bool
		failures  int
	)
	for {
		opts := (&api.QueryOptions{WaitTime: w.cfg.waitTime}).WithContext(ctx)
		if w.cfg.hash {
			opts.WaitHash = hash
		} else {
			opts.WaitIndex = index
		}
		val, meta, err := w.fetch(opts)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil || meta == nil {
			if err == nil {
				err = errors.New("no query metadata in answer")
			}
			failures++
			delay := Backoff(w.cfg.minBackoff, w.cfg.maxBackoff, failures)
			st := w.Status()
			st.Failures, st.LastError = failures, err.Error()
			w.status.Store(&st)
			w.cfg.logger.Warn("consul query failed; keeping last known good value",
				"watch", w.name, "consul", w.cfg.addr, "attempt", failures,
				"retry_in", delay.Round(time.Millisecond), "error", err)
			if !backoff.Sleep(ctx, delay) {
				return ctx.Err()
			}
			continue
		}
		if failures > 0 {
			w.cfg.logger.Info("consul query recovered", "watch", w.name, "after_failures", failures)
		}
		failures = 0
		changed := !published
		if w.cfg.hash {
			changed = changed || meta.LastContentHash != hash
			hash = meta.LastContentHash
		} else {
			next := nextIndex(index, meta.LastIndex)
			changed = changed || next != index
			index = next
		}
		w.status.Store(&Status{Name: w.name, LastSuccess: time.Now(), Index: index})
		if changed {
			w.publish(val)
			published = true
		}
	}
}

// nextIndex applies Consul's blocking-query index rules: an index that goes
// backwards resets to 0 (the next query returns at once with a fresh index),
// and 0 is never waited on, since a query with index 0 does not block.
func nextIndex(prev, got uint64) uint64 {
	switch {
	case got < prev:
		return 0
	case got == 0:
		return 1
	}
	return got
}

// Backoff is the delay before retry n after n consecutive failures (see
// internal/backoff.Delay).
func Backoff(lo, hi time.Duration, n int) time.Duration { return backoff.Delay(lo, hi, n) }

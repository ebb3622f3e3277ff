package tracing

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Batching parameters of the export goroutine.
const (
	defaultBatchSize     = 512
	defaultBatchInterval = time.Second
	defaultLogEvery      = 30 * time.Second
)

// Stats counts spans through the export pipeline; see Tracing.Stats.
type Stats struct {
	Started      int64 // sampled spans ended (handed to the exporter queue)
	Exported     int64 // spans the collector accepted
	Dropped      int64 // spans lost: queue full, export failed, or still queued when Shutdown gave up
	ExportErrors int64 // failed export calls (batches)
}

// counters back Stats; every field is updated atomically.
type counters struct {
	started, exported, dropped, exportErrors atomic.Int64
	queueFull                                atomic.Int64 // part of dropped, for the log
}

func (c *counters) snapshot() Stats {
	return Stats{
		Started:      c.started.Load(),
		Exported:     c.exported.Load(),
		Dropped:      c.dropped.Load(),
		ExportErrors: c.exportErrors.Load(),
	}
}

// processor is between ended spans and the exporter, in the role of the
// SDK's BatchSpanProcessor (which neither exposes its drop count nor lets
// the export loop be cancelled from Shutdown).
//
// Batch mode (the default): onEnd, called on the goroutine ending the span,
// does a non-blocking send of the sampled span to a buffered channel of
// Config.MaxQueueSize and counts it as dropped when the channel is full.
// When batchSize spans are waiting it also kicks (non-blocking) the one
// export goroutine, run, which otherwise wakes every interval, on ForceFlush
// and on Shutdown, and then exports what is queued in batches of batchSize.
// run does not receive span by span: a goroutine woken for every span costs
// the ending goroutine a wake-up each time and, on a busy process, is
// starved until the queue overflows. Each export is bounded by timeout and
// by ctx, which Shutdown cancels when its own context ends. Nothing the
// exporter does can block OnEnd.
//
// Sync mode (WithSyncExport, for tests): onEnd exports the span itself,
// serialised by syncMu, and no goroutine runs.
type processor struct {
	exp       spanExporter
	timeout   time.Duration
	batchSize int
	interval  time.Duration
	sync      bool

	queue  chan *spanData
	kick   chan struct{}      // capacity 1: batchSize spans are queued
	flushc chan chan struct{} // ForceFlush requests; run closes the channel when done
	stopc  chan struct{}      // closed by Shutdown
	done   chan struct{}      // closed when run (or, in sync mode, Shutdown) is finished

	ctx    context.Context // parent of every export; cancelled when Shutdown gives up
	cancel context.CancelFunc

	stopOnce sync.Once
	stopped  atomic.Bool
	syncMu   sync.Mutex

	stats     counters
	logErr    *limitedLogger // export failures
	logDrop   *limitedLogger // queue overflow
	endpoint  string         // for log lines
	lastDrops int64          // queueFull already logged; run's goroutine only
}

func newProcessor(exp spanExporter, o *options, queueSize int, timeout time.Duration, endpoint string) *processor {
	ctx, cancel := context.WithCancel(context.Background())
	p := &processor{
		exp:       exp,
		timeout:   timeout,
		batchSize: o.batchSize,
		interval:  o.batchInterval,
		sync:      o.syncExport,
		kick:      make(chan struct{}, 1),
		flushc:    make(chan chan struct{}),
		stopc:     make(chan struct{}),
		done:      make(chan struct{}),
		ctx:       ctx,
		cancel:    cancel,
		logErr:    &limitedLogger{log: o.logger, every: o.logEvery},
		logDrop:   &limitedLogger{log: o.logger, every: o.logEvery},
		endpoint:  endpoint,
	}
	if p.batchSize > queueSize {
		p.batchSize = queueSize
	}
	if !p.sync {
		p.queue = make(chan *spanData, queueSize)
		go p.run()
	}
	return p
}

// onEnd queues a sampled span for export. It never blocks in batch mode; in
// sync mode it exports before returning.
func (p *processor) onEnd(s *spanData) {
	p.stats.started.Add(1)
	if p.stopped.Load() {
		p.stats.dropped.Add(1)
		s.release()
		return
	}
	if p.sync {
		p.syncMu.Lock()
		p.export([]*spanData{s})
		p.syncMu.Unlock()
		return
	}
	select {
	case p.queue <- s:
		if len(p.queue) >= p.batchSize {
			select {
			case p.kick <- struct{}{}:
			default: // already kicked
			}
		}
	default:
		p.stats.dropped.Add(1)
		p.stats.queueFull.Add(1)
		s.release()
	}
}

// ForceFlush exports every span queued before the call. It waits for the
// export goroutine until ctx ends; the export itself is bounded by the
// export timeout, not by ctx.
func (p *processor) ForceFlush(ctx context.Context) error {
	if p.sync {
		return nil
	}
	req := make(chan struct{})
	select {
	case p.flushc <- req:
	case <-p.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-req:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Shutdown exports what is queued, shuts the exporter down and stops the
// export goroutine. It returns when that is done, or when ctx ends: then the
// export in flight is cancelled, the spans still queued are dropped, and the
// goroutine exits as soon as the exporter returns from the cancelled call.
// Later calls wait the same way and return nil once the goroutine is gone.
func (p *processor) Shutdown(ctx context.Context) error {
	p.stopOnce.Do(func() {
		p.stopped.Store(true)
		if p.sync {
			p.syncMu.Lock()
			defer p.syncMu.Unlock()
			p.logIf("tracing: exporter shutdown failed", p.exp.shutdown(ctx))
			close(p.done)
			return
		}
		close(p.stopc)
	})
	select {
	case <-p.done:
		p.cancel()
		return nil
	case <-ctx.Done():
		p.cancel()
		return ctx.Err()
	}
}

// run is the export goroutine (batch mode), started by newProcessor and
// stopped by Shutdown.
func (p *processor) run() {
	defer close(p.done)
	tick := time.NewTicker(p.interval)
	defer tick.Stop()
	batch := make([]*spanData, 0, p.batchSize)
	for {
		select {
		case <-p.kick:
			batch = p.drain(batch)
		case <-tick.C:
			batch = p.drain(batch)
			p.logQueueFull()
		case req := <-p.flushc:
			batch = p.drain(batch)
			close(req)
		case <-p.stopc:
			p.drain(batch)
			p.logQueueFull()
			ctx, cancel := context.WithTimeout(p.ctx, p.timeout)
			p.logIf("tracing: exporter shutdown failed", p.exp.shutdown(ctx))
			cancel()
			return
		}
	}
}

// drain exports the spans queued now, in batches of batchSize, and returns
// the emptied batch.
func (p *processor) drain(batch []*spanData) []*spanData {
	for n := len(p.queue); n > 0; n-- {
		batch = append(batch, <-p.queue)
		if len(batch) >= p.batchSize {
			batch = p.export(batch)
		}
	}
	if len(batch) > 0 {
		batch = p.export(batch)
	}
	return batch
}

// export sends batch under the export timeout, counts the outcome, returns
// the spans' data to its pool and returns batch emptied for reuse (the
// exporter must not retain the batch or its spans, as with the SDK's batch
// processor). A panicking exporter counts as a failed export.
func (p *processor) export(batch []*spanData) []*spanData {
	n := int64(len(batch))
	err := func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("exporter panicked: %v", r)
			}
		}()
		ctx, cancel := context.WithTimeout(p.ctx, p.timeout)
		defer cancel()
		return p.exp.exportSpans(ctx, batch)
	}()
	if err != nil {
		p.stats.exportErrors.Add(1)
		p.stats.dropped.Add(n)
		p.logErr.warn("tracing: span export failed, spans dropped",
			"endpoint", p.endpoint, "spans", n, "err", err)
	} else {
		p.stats.exported.Add(n)
	}
	for _, s := range batch {
		s.release()
	}
	clear(batch)
	return batch[:0]
}

// logQueueFull logs the spans dropped on a full queue since the last log.
// Called on run's goroutine only.
func (p *processor) logQueueFull() {
	n := p.stats.queueFull.Load()
	if n == p.lastDrops {
		return
	}
	if p.logDrop.warn("tracing: span queue full, spans dropped",
		"endpoint", p.endpoint, "spans", n-p.lastDrops, "queue_size", cap(p.queue)) {
		p.lastDrops = n
	}
}

func (p *processor) logIf(msg string, err error) {
	if err != nil {
		p.logErr.warn(msg, "endpoint", p.endpoint, "err", err)
	}
}

// limitedLogger logs at most one line per every; the lines it suppresses are
// counted into the next one. Safe for concurrent use.
type limitedLogger struct {
	log   *slog.Logger
	every time.Duration

	mu         sync.Mutex
	next       time.Time
	suppressed int
}

// warn logs msg at Warn level unless a line was logged less than every ago;
// it reports whether it logged.
func (l *limitedLogger) warn(msg string, args ...any) bool {
	now := time.Now()
	l.mu.Lock()
	if now.Before(l.next) {
		l.suppressed++
		l.mu.Unlock()
		return false
	}
	l.next = now.Add(l.every)
	n := l.suppressed
	l.suppressed = 0
	l.mu.Unlock()
	if n > 0 {
		args = append(args, "suppressed", n)
	}
	l.log.Warn(msg, args...)
	return true
}

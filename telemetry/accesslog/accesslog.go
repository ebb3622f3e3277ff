package accesslog

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Entry is one request (L7) or one connection (L4). Log reads it before
// returning and keeps nothing of it. FORMAT.md names the field each one
// is written as.
type Entry struct {
	// Start is when the request (or connection) arrived.
	Start time.Time
	// Duration is from Start to the end of the response (or connection).
	Duration time.Duration
	// UpstreamDuration is from the first upstream attempt to the response
	// head; negative when there was none (omitted from the line).
	UpstreamDuration time.Duration
	// Direction is "inbound" or "outbound".
	Direction string
	// Upstream is the destination service (outbound) or "local_app".
	Upstream string
	// TraceID and SpanID are hex, "" when the request is not traced.
	TraceID, SpanID string
	// Peer is the peer's SPIFFE ID ("" when not mTLS).
	Peer string
	// Downstream is the client's address, ip:port.
	Downstream string
	// Method, Authority and Path are the request's ("" at L4).
	Method, Authority, Path string
	// Protocol is "HTTP/1.1", "HTTP/1.0", "HTTP/2" or "TCP".
	Protocol string
	// Status is the status sent downstream; 0 when none was (and at L4).
	Status int
	// Flags are Envoy-style response flags, comma-joined: UH no healthy
	// upstream, UF connect failure, UT timeout, UC upstream reset, DC
	// downstream reset, DI denied, BR bad request. "" for none.
	Flags string
	// RxBytes and TxBytes are the body bytes (L4: all bytes) received from
	// and sent to the downstream.
	RxBytes, TxBytes int64
	// Endpoint is the address of the upstream endpoint of the last attempt.
	Endpoint string
	// Rule is the policy rule that allowed or denied the request.
	Rule string
	// RequestID is the request's X-Request-Id.
	RequestID string
	// Attempts is the number of upstream attempts.
	Attempts int
}

// Config configures a Logger. The zero Config is a disabled logger.
type Config struct {
	// Enabled turns the access log on.
	Enabled bool
	// Path is where lines go: "" or "-" for the stdout writer given to
	// New; otherwise a file, opened for appending (created with mode 0644)
	// and opened again by Reopen.
	Path string
	// Format is "json" (the default when empty) or "text".
	Format string
	// SampleRate is the fraction of successful entries written, in [0, 1];
	// 0 means the default, 1 (see ErrorsOnly). Entries with Status >= 500
	// or Flags are always written.
	SampleRate float64
	// ErrorsOnly writes only the entries that sampling always keeps
	// (Status >= 500 or Flags set), whatever SampleRate says.
	ErrorsOnly bool
	// QueueSize is how many encoded lines may wait for the writer before
	// Log drops (default 4096).
	QueueSize int
}

const (
	formatJSON = iota
	formatText
)

// defaultQueueSize bounds the memory of lines in flight: with lines of
// about 500 bytes, 2 MiB.
const defaultQueueSize = 4096

// maxPooledBuffer: a larger buffer (a line with a huge path) is not kept.
const maxPooledBuffer = 64 << 10

// ErrClosed is returned by Reopen after Close.
var ErrClosed = errors.New("accesslog: logger closed")

// Logger writes access log lines. Its methods are safe for concurrent use,
// and all of them accept a nil *Logger (disabled).
type Logger struct {
	enabled    bool
	format     int
	sampleRate float64 // < 1: sample successful entries
	path       string  // "" when writing to the stdout writer

	queue chan *[]byte
	ctl   chan chan error // Reopen requests to the writer goroutine
	quit  chan struct{}   // closed by Close
	done  chan struct{}   // closed when the writer goroutine has returned

	closeOnce sync.Once
	closeErr  error
	closed    atomic.Bool

	dropped     atomic.Int64
	writeErrors atomic.Int64
	pool        sync.Pool // *[]byte

	// Owned by the writer goroutine.
	out  io.Writer
	file *os.File // nil when writing to stdout
	bw   *bufio.Writer
}

// New returns a Logger for cfg. stdout is where lines go when cfg.Path is
// "" or "-" (nil: os.Stdout). A disabled cfg returns a disabled Logger that
// starts nothing; otherwise New opens the file and starts the writer
// goroutine, which Close stops. Errors name the Config field at fault.
func New(cfg Config, stdout io.Writer) (*Logger, error) {
	l := &Logger{format: formatJSON, sampleRate: 1}
	switch cfg.Format {
	case "", "json":
	case "text":
		l.format = formatText
	default:
		return nil, fmt.Errorf("accesslog: Format: want \"json\" or \"text\", got %q", cfg.Format)
	}
	switch r := cfg.SampleRate; {
	case math.IsNaN(r) || r < 0 || r > 1:
		return nil, fmt.Errorf("accesslog: SampleRate: want a fraction between 0 and 1, got %v", r)
	case r > 0:
		l.sampleRate = r
	}
	if cfg.ErrorsOnly {
		l.sampleRate = 0
	}
	if cfg.QueueSize < 0 {
		return nil, fmt.Errorf("accesslog: QueueSize: want a positive size, got %d", cfg.QueueSize)
	}
	if !cfg.Enabled {
		return l, nil
	}
	l.out = stdout
	if l.out == nil {
		l.out = os.Stdout
	}
	if cfg.Path != "" && cfg.Path != "-" {
		l.path = cfg.Path
		f, err := openFile(cfg.Path)
		if err != nil {
			return nil, fmt.Errorf("accesslog: Path: %w", err)
		}
		l.file, l.out = f, f
	}
	l.enabled = true
	l.queue = make(chan *[]byte, cmpOr(cfg.QueueSize, defaultQueueSize))
	l.ctl = make(chan chan error)
	l.quit = make(chan struct{})
	l.done = make(chan struct{})
	l.pool.New = func() any {
		b := make([]byte, 0, 1024)
		return &b
	}
	l.bw = bufio.NewWriterSize(l.out, 64<<10)
	go l.run()
	return l, nil
}

func cmpOr(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

func openFile(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
}

// Enabled reports whether Log writes anything. It is false for a nil or
// disabled Logger and stays true after Close.
func (l *Logger) Enabled() bool { return l != nil && l.enabled }

// Log writes e, unless sampling skips it. It encodes e before returning
// (so the caller may reuse e at once) and never blocks: when the queue is
// full the line is dropped and counted in Dropped. After Close, Log does
// nothing.
func (l *Logger) Log(e *Entry) {
	if l == nil || !l.enabled || l.closed.Load() {
		return
	}
	if l.sampleRate < 1 && e.Status < 500 && e.Flags == "" && rand.Float64() >= l.sampleRate {
		return
	}
	bp := l.pool.Get().(*[]byte)
	if l.format == formatText {
		*bp = appendText((*bp)[:0], e)
	} else {
		*bp = appendJSON((*bp)[:0], e)
	}
	select {
	case l.queue <- bp:
	default:
		l.dropped.Add(1)
		l.put(bp)
	}
}

func (l *Logger) put(bp *[]byte) {
	if cap(*bp) <= maxPooledBuffer {
		l.pool.Put(bp)
	}
}

// Dropped returns how many lines Log dropped because the queue was full.
func (l *Logger) Dropped() int64 {
	if l == nil {
		return 0
	}
	return l.dropped.Load()
}

// WriteErrors returns how many writes to the output failed; the lines
// buffered at the time are lost.
func (l *Logger) WriteErrors() int64 {
	if l == nil {
		return 0
	}
	return l.writeErrors.Load()
}

// Reopen flushes, closes the file and opens Path again, for log rotation.
// If the new file cannot be opened, the Logger keeps writing to the old
// one and Reopen returns the error. It is a no-op for stdout and for a
// disabled Logger, and returns ErrClosed after Close. It waits for the
// writer goroutine to finish the lines queued before it.
func (l *Logger) Reopen() error {
	if !l.Enabled() || l.path == "" {
		return nil
	}
	reply := make(chan error, 1)
	select {
	case l.ctl <- reply:
		return <-reply
	case <-l.done:
		return ErrClosed
	}
}

// Close writes the lines queued, flushes, closes the file (not stdout) and
// stops the writer goroutine, waiting for it. Idempotent: later calls
// return the first call's result. Safe on a nil or disabled Logger.
func (l *Logger) Close() error {
	if !l.Enabled() {
		return nil
	}
	l.closeOnce.Do(func() {
		l.closed.Store(true)
		close(l.quit)
		<-l.done
		if l.file != nil {
			l.closeErr = l.file.Close()
		}
	})
	return l.closeErr
}

// run is the writer goroutine: it owns out, file and bw.
func (l *Logger) run() {
	defer close(l.done)
	for {
		select {
		case bp := <-l.queue:
			l.write(bp)
			if len(l.queue) == 0 {
				l.flush()
			}
		case reply := <-l.ctl:
			l.drain()
			reply <- l.reopen()
		case <-l.quit:
			l.drain()
			return
		}
	}
}

// drain writes what is queued now and flushes.
func (l *Logger) drain() {
	for {
		select {
		case bp := <-l.queue:
			l.write(bp)
		default:
			l.flush()
			return
		}
	}
}

func (l *Logger) write(bp *[]byte) {
	if _, err := l.bw.Write(*bp); err != nil {
		l.failed()
	}
	l.put(bp)
}

func (l *Logger) flush() {
	if err := l.bw.Flush(); err != nil {
		l.failed()
	}
}

// failed counts a write error and drops what is buffered: bufio.Writer's
// errors are sticky, and a full disk must not silence the log forever.
func (l *Logger) failed() {
	l.writeErrors.Add(1)
	l.bw.Reset(l.out)
}

func (l *Logger) reopen() error {
	f, err := openFile(l.path)
	if err != nil {
		return fmt.Errorf("accesslog: reopen: %w", err)
	}
	old := l.file
	l.file, l.out = f, f
	l.bw.Reset(f)
	if err := old.Close(); err != nil {
		return fmt.Errorf("accesslog: reopen: closing the old file: %w", err)
	}
	return nil
}

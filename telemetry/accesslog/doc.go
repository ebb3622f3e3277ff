// Package accesslog writes one structured line per proxied HTTP request
// (L7) or per TCP connection (L4): JSON by default, or a one-line text
// format close to Envoy's default. FORMAT.md documents both.
//
// # Cost and ownership
//
// Log encodes the entry on the caller's goroutine into a pooled buffer
// with hand-written encoders (no reflection, no allocation in steady
// state) and hands the buffer to a bounded queue. One writer goroutine
// owned by the Logger drains the queue into a buffered writer, flushing
// whenever the queue runs empty, so a busy sidecar writes in large chunks
// and an idle one writes each line promptly. Log never blocks: when the
// queue is full the line is dropped and counted (Dropped). Close drains
// the queue, flushes, closes the file and waits for the writer.
//
// Because the entry is encoded before Log returns, the caller may reuse
// the Entry and any buffers its strings alias as soon as Log returns.
//
// # Sampling
//
// Config.SampleRate keeps that fraction of successful requests; an entry
// whose Status is 500 or more or that carries response flags is always
// kept.
//
// # Log rotation
//
// With a file Path, Reopen closes the file and opens Path again: after
// logrotate renames the file, the next lines go to a new file at Path.
//
// A nil *Logger is valid and disabled: Log is a no-op and Enabled reports
// false, so callers hold a *Logger without checking it.
package accesslog

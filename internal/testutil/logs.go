package testutil

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

// Logs collects the records of a logger as JSON lines, for tests that
// check what was logged. Safe for concurrent loggers.
type Logs struct{ buf Buffer }

// Logger returns a debug-level JSON logger writing into l.
func (l *Logs) Logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(&l.buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// Records returns the records whose message is msg, decoded.
func (l *Logs) Records(t testing.TB, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.Lines(l.buf.String()) {
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if r["msg"] == msg {
			out = append(out, r)
		}
	}
	return out
}

// String returns every record logged so far.
func (l *Logs) String() string { return l.buf.String() }

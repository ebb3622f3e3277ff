package accesslog

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
	"unsafe"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// line mirrors FORMAT.md for decoding with encoding/json.
type line struct {
	StartTime          string   `json:"start_time"`
	DurationMS         float64  `json:"duration_ms"`
	UpstreamDurationMS *float64 `json:"upstream_duration_ms"`
	Direction          string   `json:"direction"`
	Upstream           string   `json:"upstream"`
	Protocol           string   `json:"protocol"`
	Method             string   `json:"method"`
	Authority          string   `json:"authority"`
	Path               string   `json:"path"`
	Status             int      `json:"status"`
	Flags              string   `json:"flags"`
	RxBytes            int64    `json:"rx_bytes"`
	TxBytes            int64    `json:"tx_bytes"`
	Attempts           int      `json:"attempts"`
	Downstream         string   `json:"downstream"`
	Peer               string   `json:"peer"`
	Endpoint           string   `json:"endpoint"`
	Rule               string   `json:"rule"`
	RequestID          string   `json:"request_id"`
	TraceID            string   `json:"trace_id"`
	SpanID             string   `json:"span_id"`
}

// syncBuffer is a bytes.Buffer safe for the writer goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func lines(s string) []string {
	s = strings.TrimSuffix(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func newLogger(t *testing.T, cfg Config, w io.Writer) *Logger {
	t.Helper()
	cfg.Enabled = true
	l, err := New(cfg, w)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func sample() *Entry {
	return &Entry{
		Start:            time.Date(2025, 3, 4, 5, 6, 7, 891_234_567, time.FixedZone("X", 3600)),
		Duration:         12345678 * time.Nanosecond,
		UpstreamDuration: 2500 * time.Microsecond,
		Direction:        "inbound",
		Upstream:         "local_app",
		TraceID:          "4bf92f3577b34da6a3ce929d0e0e4736",
		SpanID:           "00f067aa0ba902b7",
		Peer:             "spiffe://dc1.consul/ns/default/dc/dc1/svc/web",
		Downstream:       "10.0.0.7:51234",
		Method:           "POST",
		Authority:        "api.internal:8080",
		Path:             `/v1/items?q="a b"&x=\1`,
		Protocol:         "HTTP/1.1",
		Status:           201,
		RxBytes:          42,
		TxBytes:          1 << 40,
		Endpoint:         "10.0.1.2:20000",
		Rule:             "intention web->api (id 1a2b)",
		RequestID:        "b3c1e0f2-1111-2222-3333-444455556666",
		Attempts:         2,
	}
}

func TestJSONDecodesToSameValues(t *testing.T) {
	t.Parallel()
	e := sample()
	e.Authority = "quote\" backslash\\ nl\n cr\r tab\t nul\x00 bell\x07 esc\x1b del\x7f"
	e.Path = "/caf\xc3\xa9/\xff\xfe/\u2028\u2029/😀/<script>&"
	e.Flags = "UT,UC"
	e.Status = 504

	out := appendJSON(nil, e)
	if !bytes.HasSuffix(out, []byte("}\n")) || bytes.Count(out, []byte("\n")) != 1 {
		t.Fatalf("not one line: %q", out)
	}
	if !json.Valid(out) {
		t.Fatalf("invalid JSON: %s", out)
	}
	var got line
	dec := json.NewDecoder(bytes.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("decode %s: %v", out, err)
	}
	up := 2.5
	want := line{
		StartTime: "2025-03-04T04:06:07.891234Z", DurationMS: 12.345, UpstreamDurationMS: &up,
		Direction: e.Direction, Upstream: e.Upstream, Protocol: e.Protocol,
		Method: e.Method, Authority: e.Authority, Path: validUTF8(e.Path),
		Status: 504, Flags: "UT,UC", RxBytes: 42, TxBytes: 1 << 40, Attempts: 2,
		Downstream: e.Downstream, Peer: e.Peer, Endpoint: e.Endpoint, Rule: e.Rule,
		RequestID: e.RequestID, TraceID: e.TraceID, SpanID: e.SpanID,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("decoded\n%+v\nwant\n%+v", got, want)
	}
	ts, err := time.Parse(time.RFC3339Nano, got.StartTime)
	if err != nil || !ts.Equal(e.Start.Truncate(time.Microsecond)) {
		t.Errorf("start_time %q (%v) is not %v", got.StartTime, err, e.Start)
	}
}

func TestJSONOmitsEmptyFields(t *testing.T) {
	t.Parallel()
	e := &Entry{Start: time.Unix(0, 0), Duration: time.Second, UpstreamDuration: -1,
		Direction: "outbound", Upstream: "db", Protocol: "TCP", RxBytes: 1, TxBytes: 2}
	out := string(appendJSON(nil, e))
	want := `{"start_time":"1970-01-01T00:00:00.000000Z","duration_ms":1000,"direction":"outbound","upstream":"db","protocol":"TCP","status":0,"rx_bytes":1,"tx_bytes":2,"attempts":0}` + "\n"
	if out != want {
		t.Errorf("got  %s\nwant %s", out, want)
	}
}

// validUTF8 is what a JSON decoder yields for s after appendJSONString:
// each invalid byte becomes U+FFFD.
func validUTF8(s string) string { return string([]rune(s)) }

func TestJSONStringEscaping(t *testing.T) {
	t.Parallel()
	var all strings.Builder
	for c := range 0x80 {
		all.WriteByte(byte(c))
	}
	cases := []string{
		"", "plain", `"`, `\`, `\"`, "\x00", "\x1f", "\u007f", all.String(),
		"\xff", "a\xffb", "\xc3", "\xc3\x28", "\xe2\x82", "\xed\xa0\x80", // truncated, surrogate
		"\xf4\x90\x80\x80", // above U+10FFFF
		"\u2028\u2029", "日本語", "😀", "\ufffd", "<>&",
	}
	for _, s := range cases {
		enc := appendJSONString(nil, s)
		var got string
		if err := json.Unmarshal(enc, &got); err != nil {
			t.Errorf("%q: %s does not decode: %v", s, enc, err)
			continue
		}
		if got != validUTF8(s) {
			t.Errorf("%q: decoded %q, want %q", s, got, validUTF8(s))
		}
		// encoding/json's own encoding decodes to the same string.
		std, _ := json.Marshal(s)
		var stdGot string
		json.Unmarshal(std, &stdGot)
		if stdGot != got {
			t.Errorf("%q: encoding/json round trip %q, ours %q", s, stdGot, got)
		}
		if bytes.ContainsAny(enc, "\n\r") || !utf8.Valid(enc) {
			t.Errorf("%q: encoding %q has a raw newline or invalid UTF-8", s, enc)
		}
	}
}

func FuzzJSONString(f *testing.F) {
	for _, s := range []string{"", "a\"b", "\x00\xff", "\u2028", "😀\xc3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		enc := appendJSONString(nil, s)
		var got string
		if err := json.Unmarshal(enc, &got); err != nil {
			t.Fatalf("%q: %s does not decode: %v", s, enc, err)
		}
		if got != validUTF8(s) {
			t.Fatalf("%q: decoded %q, want %q", s, got, validUTF8(s))
		}
		if bytes.ContainsAny(enc, "\n\r") {
			t.Fatalf("raw newline in %q", enc)
		}
		txt := appendText(nil, &Entry{Path: s, Authority: s, Flags: s, Upstream: s})
		if bytes.Count(txt, []byte("\n")) != 1 || !utf8.Valid(txt) {
			t.Fatalf("text line %q is not one valid UTF-8 line", txt)
		}
	})
}

func TestAppendTime(t *testing.T) {
	t.Parallel()
	for _, ts := range []time.Time{
		time.Unix(0, 0), time.Unix(0, 999_999_999), time.Date(9999, 12, 31, 23, 59, 59, 1000, time.UTC),
		time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2025, 7, 1, 0, 0, 0, 123_456_789, time.FixedZone("", -7*3600)),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC), {},
	} {
		for digits, layout := range map[int]string{3: "2006-01-02T15:04:05.000Z07:00", 6: "2006-01-02T15:04:05.000000Z07:00"} {
			if got, want := string(appendTime(nil, ts, digits)), ts.UTC().Format(layout); got != want {
				t.Errorf("appendTime(%v, %d) = %s, want %s", ts, digits, got, want)
			}
		}
	}
}

func TestTextFormat(t *testing.T) {
	t.Parallel()
	e := sample()
	got := string(appendText(nil, e))
	want := `[2025-03-04T04:06:07.891Z] "POST /v1/items?q=\"a\u0020b\"&x=\\1 HTTP/1.1" 201 - 42 1099511627776 12 2 ` +
		`"10.0.0.7:51234" "spiffe://dc1.consul/ns/default/dc/dc1/svc/web" "b3c1e0f2-1111-2222-3333-444455556666" ` +
		`"api.internal:8080" "10.0.1.2:20000" inbound "local_app" "intention web->api (id 1a2b)" ` +
		`4bf92f3577b34da6a3ce929d0e0e4736 00f067aa0ba902b7 2` + "\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}

	l4 := &Entry{Start: time.Unix(0, 0), Duration: 3 * time.Second, UpstreamDuration: -1, Direction: "outbound",
		Upstream: "db", Protocol: "TCP", Flags: "UF", Downstream: "127.0.0.1:4000"}
	got = string(appendText(nil, l4))
	want = `[1970-01-01T00:00:00.000Z] "- - TCP" 0 UF 0 0 3000 - "127.0.0.1:4000" "-" "-" "-" "-" outbound "db" "-" - - 0` + "\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestLoggerWritesFormats(t *testing.T) {
	t.Parallel()
	for _, format := range []string{"", "json", "text"} {
		var buf syncBuffer
		l := newLogger(t, Config{Format: format}, &buf)
		l.Log(sample())
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		out := buf.String()
		if isJSON := json.Valid([]byte(out)); isJSON != (format != "text") {
			t.Errorf("format %q: output %q", format, out)
		}
	}
}

func TestSamplingKeepsErrors(t *testing.T) {
	t.Parallel()
	for _, cfg := range []Config{{SampleRate: 1e-9}, {ErrorsOnly: true}, {ErrorsOnly: true, SampleRate: 1}} {
		var buf syncBuffer
		l := newLogger(t, cfg, &buf)
		for i := range 300 {
			e := sample()
			switch i % 3 {
			case 0: // success: sampled out
			case 1:
				e.Status = 500 + i%100
			case 2:
				e.Status, e.Flags = 0, "UH"
			}
			l.Log(e)
		}
		l.Close()
		got := lines(buf.String())
		if len(got) != 200 {
			t.Errorf("%+v: %d lines, want the 200 errors", cfg, len(got))
		}
		for _, s := range got {
			var ln line
			json.Unmarshal([]byte(s), &ln)
			if ln.Status < 500 && ln.Flags == "" {
				t.Errorf("%+v: successful entry written: %s", cfg, s)
			}
		}
	}

	// A rate between 0 and 1 keeps about that fraction of successes.
	var buf syncBuffer
	l := newLogger(t, Config{SampleRate: 0.25}, &buf)
	const n = 4000
	for range n {
		l.Log(sample())
	}
	l.Close()
	if got := len(lines(buf.String())); got < n/4-250 || got > n/4+250 {
		t.Errorf("rate 0.25 kept %d of %d", got, n)
	}
}

// blockingWriter blocks every Write until release is closed.
type blockingWriter struct {
	entered chan struct{}
	release chan struct{}
	once    sync.Once
	syncBuffer
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	w.once.Do(func() { close(w.entered) })
	<-w.release
	return w.syncBuffer.Write(p)
}

func TestFullQueueDropsWithoutBlocking(t *testing.T) {
	t.Parallel()
	w := &blockingWriter{entered: make(chan struct{}), release: make(chan struct{})}
	l := newLogger(t, Config{QueueSize: 4}, w)
	l.Log(sample())
	<-w.entered // the writer goroutine is stuck in Write with one line

	const n = 1000
	start := time.Now()
	for range n {
		l.Log(sample())
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Log blocked: %d calls took %v", n, d)
	}
	if got := l.Dropped(); got != n-4 {
		t.Errorf("Dropped = %d, want %d (all but the queue's 4)", got, n-4)
	}
	close(w.release)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if got := len(lines(w.String())); got != 5 {
		t.Errorf("%d lines written, want 5 (the one being written and the 4 queued)", got)
	}
}

func TestCloseFlushesAndIsIdempotent(t *testing.T) {
	t.Parallel()
	var buf syncBuffer
	l := newLogger(t, Config{}, &buf)
	const n = 2000 // below the default queue size: nothing dropped
	for range n {
		l.Log(sample())
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if got := len(lines(buf.String())); got != n || l.Dropped() != 0 {
		t.Errorf("after Close: %d lines, %d dropped; want %d, 0", got, l.Dropped(), n)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	l.Log(sample()) // after Close: no-op, no panic
	if err := l.Reopen(); err != nil {
		t.Errorf("Reopen of a stdout logger: %v", err)
	}
	if got := len(lines(buf.String())); got != n {
		t.Errorf("Log after Close wrote: %d lines", got)
	}
}

func TestConcurrentLog(t *testing.T) {
	t.Parallel()
	var buf syncBuffer
	l := newLogger(t, Config{QueueSize: 64}, &buf)
	var wg sync.WaitGroup
	const goroutines, per = 8, 500
	for g := range goroutines {
		wg.Go(func() {
			e := sample()
			for i := range per {
				e.RequestID = fmt.Sprintf("g%d-%d", g, i)
				l.Log(e)
			}
		})
	}
	wg.Wait()
	l.Close()
	got := lines(buf.String())
	if int64(len(got))+l.Dropped() != goroutines*per {
		t.Errorf("%d written + %d dropped != %d", len(got), l.Dropped(), goroutines*per)
	}
	for _, s := range got {
		if !json.Valid([]byte(s)) {
			t.Fatalf("interleaved or broken line: %q", s)
		}
	}
}

// TestEntryReusedAfterLog: Log encodes before returning, so the caller may
// overwrite the entry and the buffers its strings view.
func TestEntryReusedAfterLog(t *testing.T) {
	t.Parallel()
	w := &blockingWriter{entered: make(chan struct{}), release: make(chan struct{})}
	l := newLogger(t, Config{}, w)
	l.Log(sample())
	<-w.entered // later lines wait in the queue

	raw := []byte("/original")
	e := sample()
	e.Path = unsafe.String(&raw[0], len(raw)) // as the HTTP/1.1 codec passes it
	l.Log(e)
	copy(raw, "/CLOBBERED")
	*e = Entry{Path: "/reused"}
	close(w.release)
	l.Close()
	got := lines(w.String())
	if len(got) != 2 || !strings.Contains(got[1], `"path":"/original"`) {
		t.Errorf("second line does not hold the entry as it was at Log: %q", got)
	}
}

func TestReopenAfterRename(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	l := newLogger(t, Config{Path: path}, nil)
	e := sample()
	e.RequestID = "before"
	l.Log(e)
	l.Log(e)
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	e.RequestID = "after"
	l.Log(e)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	count := func(p string) map[string]int {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		ids := map[string]int{}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var ln line
			if err := json.Unmarshal(sc.Bytes(), &ln); err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			ids[ln.RequestID]++
		}
		return ids
	}
	if got := count(path + ".1"); fmt.Sprint(got) != "map[before:2]" {
		t.Errorf("rotated file: %v", got)
	}
	if got := count(path); fmt.Sprint(got) != "map[after:1]" {
		t.Errorf("new file: %v", got)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o644&^umask(t) {
		t.Errorf("new file mode %v (%v)", fi.Mode(), err)
	}
	if err := l.Reopen(); err != ErrClosed {
		t.Errorf("Reopen after Close = %v, want ErrClosed", err)
	}
}

// umask returns the process umask as observed on a fresh file.
func umask(t *testing.T) os.FileMode {
	p := filepath.Join(t.TempDir(), "probe")
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o777)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	fi, _ := os.Stat(p)
	return 0o777 &^ fi.Mode().Perm()
}

func TestReopenFailureKeepsOldFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sub := filepath.Join(dir, "logs")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(sub, "access.log")
	l := newLogger(t, Config{Path: path}, nil)
	if err := os.Rename(sub, filepath.Join(dir, "moved")); err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); err == nil {
		t.Fatal("Reopen into a missing directory succeeded")
	}
	l.Log(sample())
	l.Close()
	data, _ := os.ReadFile(filepath.Join(dir, "moved", "access.log"))
	if len(lines(string(data))) != 1 {
		t.Errorf("after a failed Reopen the line went missing: %q", data)
	}
}

func TestNewErrorsNameTheField(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		cfg   Config
		field string
	}{
		{Config{Enabled: true, Format: "xml"}, "Format"},
		{Config{Enabled: true, SampleRate: 1.5}, "SampleRate"},
		{Config{Enabled: true, SampleRate: -0.1}, "SampleRate"},
		{Config{Enabled: true, QueueSize: -1}, "QueueSize"},
		{Config{Enabled: true, Path: filepath.Join(t.TempDir(), "missing", "access.log")}, "Path"},
		{Config{Enabled: false, Format: "xml"}, "Format"}, // validated even when off
	} {
		l, err := New(c.cfg, io.Discard)
		if err == nil {
			l.Close()
			t.Errorf("%+v: no error", c.cfg)
			continue
		}
		if !strings.Contains(err.Error(), c.field) {
			t.Errorf("%+v: error %q does not name %s", c.cfg, err, c.field)
		}
	}
}

func TestDisabledAndNil(t *testing.T) {
	t.Parallel()
	var buf syncBuffer
	l, err := New(Config{Path: "/nonexistent/dir/never-opened.log"}, &buf)
	if err != nil {
		t.Fatal(err)
	}
	if l.Enabled() {
		t.Error("a disabled config gives an enabled Logger")
	}
	l.Log(sample())
	if buf.String() != "" {
		t.Error("a disabled Logger wrote")
	}
	if l.Close() != nil || l.Reopen() != nil {
		t.Error("disabled Close/Reopen failed")
	}

	var nl *Logger
	if nl.Enabled() || nl.Dropped() != 0 || nl.WriteErrors() != 0 || nl.Close() != nil || nl.Reopen() != nil {
		t.Error("nil Logger is not a quiet disabled logger")
	}
	nl.Log(sample())
}

// failingWriter fails its first writes, then works.
type failingWriter struct {
	mu    sync.Mutex
	fails int
	syncBuffer
}

func (w *failingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	if w.fails > 0 {
		w.fails--
		w.mu.Unlock()
		return 0, io.ErrShortWrite
	}
	w.mu.Unlock()
	return w.syncBuffer.Write(p)
}

func TestWriteErrorDoesNotSilenceTheLog(t *testing.T) {
	t.Parallel()
	w := &failingWriter{fails: 1}
	l := newLogger(t, Config{}, w)
	l.Log(sample())
	deadline := time.Now().Add(5 * time.Second)
	for l.WriteErrors() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	l.Log(sample())
	l.Close()
	if l.WriteErrors() != 1 || len(lines(w.String())) != 1 {
		t.Errorf("write errors %d, lines %d; want 1 and 1", l.WriteErrors(), len(lines(w.String())))
	}
}

func TestLogDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	l := newLogger(t, Config{}, io.Discard)
	e := sample()
	for range 100 {
		l.Log(e)
	}
	// AllocsPerRun runs on one P: let the writer goroutine keep up, as it
	// does in steady state, or every line would take a fresh buffer.
	if a := testing.AllocsPerRun(1000, func() {
		l.Log(e)
		for len(l.queue) > 0 {
			runtime.Gosched()
		}
	}); a != 0 {
		t.Errorf("Log allocates %v times per call", a)
	}
}

func BenchmarkLogJSON(b *testing.B) { benchmarkLog(b, "json") }
func BenchmarkLogText(b *testing.B) { benchmarkLog(b, "text") }

func benchmarkLog(b *testing.B, format string) {
	l, err := New(Config{Enabled: true, Format: format}, io.Discard)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	e := sample()
	b.ReportAllocs()
	for b.Loop() {
		l.Log(e)
	}
	b.ReportMetric(float64(l.Dropped())/float64(b.N), "dropped/op")
}

// BenchmarkLogFile writes to a real file, so the writer goroutine's
// syscalls are part of the cost.
func BenchmarkLogFile(b *testing.B) {
	l, err := New(Config{Enabled: true, Path: filepath.Join(b.TempDir(), "access.log")}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	e := sample()
	b.ReportAllocs()
	for b.Loop() {
		l.Log(e)
	}
	b.ReportMetric(float64(l.Dropped())/float64(b.N), "dropped/op")
}

func BenchmarkEncodeJSON(b *testing.B) {
	e := sample()
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = appendJSON(buf[:0], e)
	}
	b.SetBytes(int64(len(buf)))
}

// Package jaegertest starts a real Jaeger v1.76.0 all-in-one (the pinned
// binary `make tools-jaeger` builds into .tools/bin) with in-memory storage
// on free loopback ports for one test, and reads traces back through its
// query API.
package jaegertest

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outrider-mesh/outrider/internal/testutil"
	"github.com/outrider-mesh/outrider/internal/testutil/consultest"
)

// Jaeger is a running all-in-one.
type Jaeger struct {
	// OTLPGRPC and OTLPHTTP are host:port of the OTLP receivers; Query is
	// the query API's base URL.
	OTLPGRPC, OTLPHTTP, Query string
}

// Start runs Jaeger until the test ends; its log is printed if the test
// failed.
func Start(t testing.TB) *Jaeger {
	t.Helper()
	// As in consultest: a port picked free may be taken before Jaeger
	// binds it; such a start is retried on fresh ports.
	for attempt := 1; ; attempt++ {
		j, log, ready := start(t)
		if ready {
			return j
		}
		if !strings.Contains(log.String(), "address already in use") || attempt == 3 {
			t.Fatalf("jaegertest: jaeger exited during start-up:\n%s", log.String())
		}
		t.Logf("jaegertest: a port was taken before jaeger bound it; retrying on new ports")
	}
}

// start starts one Jaeger and reports whether it became ready.
func start(t testing.TB) (*Jaeger, *testutil.Buffer, bool) {
	t.Helper()
	bin := consultest.Binary(t, "jaeger")
	p := consultest.FreePorts(t, 4)
	j := &Jaeger{
		OTLPGRPC: "127.0.0.1:" + strconv.Itoa(p[0]),
		OTLPHTTP: "127.0.0.1:" + strconv.Itoa(p[1]),
		Query:    "http://127.0.0.1:" + strconv.Itoa(p[2]),
	}
	cfg := Config(j.OTLPGRPC, j.OTLPHTTP, "127.0.0.1:"+strconv.Itoa(p[2]), "127.0.0.1:"+strconv.Itoa(p[3]))
	path := filepath.Join(t.TempDir(), "jaeger.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	log := &testutil.Buffer{}
	cmd := exec.Command(bin, "--config", path)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("jaegertest: start: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("jaeger log:\n%s", log.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(j.Query + "/api/services")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return j, log, true
			}
		}
		select {
		case <-done:
			return j, log, false
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("jaegertest: jaeger not ready after 30s:\n%s", log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

//go:embed local.yaml
var localConfig string

// Config returns Jaeger's configuration (local.yaml) for the given
// host:port addresses.
func Config(otlpGRPC, otlpHTTP, queryHTTP, queryGRPC string) string {
	return strings.NewReplacer("@OTLP_GRPC@", otlpGRPC, "@OTLP_HTTP@", otlpHTTP,
		"@QUERY_HTTP@", queryHTTP, "@QUERY_GRPC@", queryGRPC).Replace(localConfig)
}

// Trace is one trace as the query API returns it.
type Trace struct {
	TraceID   string             `json:"traceID"`
	Spans     []Span             `json:"spans"`
	Processes map[string]Process `json:"processes"`
}

// Span is one span of a Trace.
type Span struct {
	TraceID       string      `json:"traceID"`
	SpanID        string      `json:"spanID"`
	OperationName string      `json:"operationName"`
	References    []Reference `json:"references"`
	ProcessID     string      `json:"processID"`
	Tags          []KeyValue  `json:"tags"`
}

// Reference links a span to its parent.
type Reference struct {
	RefType string `json:"refType"`
	TraceID string `json:"traceID"`
	SpanID  string `json:"spanID"`
}

// KeyValue is a span tag.
type KeyValue struct {
	Key   string `json:"key"`
	Value any    `json:"value"`
}

// Process names the service that reported a span.
type Process struct {
	ServiceName string `json:"serviceName"`
}

// Service returns the service name of span s in trace tr.
func (tr Trace) Service(s Span) string { return tr.Processes[s.ProcessID].ServiceName }

// Tag returns the value of tag key on s.
func (s Span) Tag(key string) (any, bool) {
	for _, kv := range s.Tags {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return nil, false
}

// Parent returns the span ID s is a child of ("" for a root).
func (s Span) Parent() string {
	for _, r := range s.References {
		if r.RefType == "CHILD_OF" {
			return r.SpanID
		}
	}
	return ""
}

// Get returns the trace with id (hex), or an error if Jaeger does not
// have it (yet).
func (j *Jaeger) Get(id string) (Trace, error) {
	resp, err := http.Get(j.Query + "/api/traces/" + id)
	if err != nil {
		return Trace{}, err
	}
	defer resp.Body.Close()
	var body struct {
		Data []Trace `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return Trace{}, fmt.Errorf("jaegertest: /api/traces/%s: %d: %w", id, resp.StatusCode, err)
	}
	if len(body.Data) == 0 {
		return Trace{}, fmt.Errorf("jaegertest: trace %s not found (status %d)", id, resp.StatusCode)
	}
	return body.Data[0], nil
}

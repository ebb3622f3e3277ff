package filter

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/outrider-mesh/outrider/gateway/clientip"
	"github.com/outrider-mesh/outrider/gateway/reqinfo"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recorder is a next handler that records what reached it: how many
// requests, and how much of each body it could read.
type recorder struct {
	hits atomic.Int64

	mu      sync.Mutex
	bodyN   int64
	bodyErr error
	chunked bool

	// respond writes the answer; default 200 "ok". It runs after the body
	// was read (unless early).
	respond func(w http.ResponseWriter, r *http.Request)
	// early writes and flushes the head before reading the body.
	early bool
}

func (rc *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rc.hits.Add(1)
	if rc.early {
		w.WriteHeader(http.StatusAccepted)
		http.NewResponseController(w).Flush()
	}
	var n int64
	var err error
	if r.Body != nil {
		n, err = io.Copy(io.Discard, r.Body)
	}
	rc.mu.Lock()
	rc.bodyN, rc.bodyErr = n, err
	rc.chunked = len(r.TransferEncoding) > 0 && r.TransferEncoding[0] == "chunked"
	rc.mu.Unlock()
	if err != nil {
		// What a reverse proxy does when the body fails mid-request.
		http.Error(w, "upstream request failed", http.StatusBadGateway)
		return
	}
	if rc.respond != nil {
		rc.respond(w, r)
		return
	}
	_, _ = io.WriteString(w, "ok")
}

func (rc *recorder) wasChunked() bool {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.chunked
}

func (rc *recorder) body() (int64, error) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.bodyN, rc.bodyErr
}

// built is a Filter under test with its metrics.
type built struct {
	f   *Filter
	m   *Metrics
	h   http.Handler
	rec *recorder
}

func build(t testing.TB, cfg Config, opts ...Option) *built {
	t.Helper()
	m := NewMetrics(prometheus.NewRegistry())
	f, err := New(cfg, append([]Option{WithMetrics(m, "r")}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	return &built{f: f, m: m, h: f.Wrap(rec), rec: rec}
}

func (b *built) refused(why reason) float64 {
	return testutil.ToFloat64(b.m.refused.WithLabelValues("r", why.String()))
}

// request builds a request from remote (an address, "" for none) with
// header lines "Name: value".
func request(method, target, remote string, body io.Reader, lines ...string) *http.Request {
	r := httptest.NewRequest(method, target, body)
	for _, l := range lines {
		k, v, _ := strings.Cut(l, ":")
		r.Header.Add(k, strings.TrimSpace(v))
	}
	if remote != "" {
		r = r.WithContext(reqinfo.With(r.Context(), &reqinfo.Info{Remote: netip.MustParseAddr(remote)}))
	}
	return r
}

func serve(h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func resolver(t testing.TB, trusted ...string) clientip.Resolver {
	t.Helper()
	r, err := clientip.New(trusted)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

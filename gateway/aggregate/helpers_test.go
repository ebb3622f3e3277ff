package aggregate

import (
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// mesh is a set of real backends behind reverse proxies, as the sidecar's
// per-upstream handlers would be.
type mesh struct {
	t         *testing.T
	mu        sync.Mutex
	upstreams map[string]http.Handler
	transport *http.Transport
}

func newMesh(t *testing.T) *mesh {
	m := &mesh{t: t, upstreams: map[string]http.Handler{}, transport: &http.Transport{}}
	t.Cleanup(m.transport.CloseIdleConnections)
	return m
}

// backend starts a real HTTP server running h and registers a reverse
// proxy to it as upstream name.
func (m *mesh) backend(name string, h http.HandlerFunc) *httptest.Server {
	srv := httptest.NewServer(h)
	m.t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = m.transport
	rp.ErrorLog = discardLog
	m.handler(name, rp)
	return srv
}

// handler registers h itself as upstream name.
func (m *mesh) handler(name string, h http.Handler) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.upstreams[name] = h
}

func (m *mesh) resolve(name string) (http.Handler, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	h, ok := m.upstreams[name]
	return h, ok
}

// front starts the aggregator, in front of a "next" handler answering
// "next", on a real server.
func (m *mesh) front(cfg Config, opts ...Option) *httptest.Server {
	m.t.Helper()
	a, err := New(cfg, append([]Option{WithResolver(m.resolve)}, opts...)...)
	if err != nil {
		m.t.Fatal(err)
	}
	srv := httptest.NewServer(a.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Next", "1")
		io.WriteString(w, "next "+r.Method+" "+r.URL.RequestURI())
	})))
	m.t.Cleanup(srv.Close)
	m.t.Cleanup(srv.Client().CloseIdleConnections)
	return srv
}

type answer struct {
	status int
	header http.Header
	body   string
}

func do(t *testing.T, srv *httptest.Server, method, target string, hdr http.Header) answer {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+target, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	c := srv.Client()
	c.Timeout = 10e9 // a hang fails the test rather than blocking it
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{res.StatusCode, res.Header, string(b)}
}

func get(t *testing.T, srv *httptest.Server, target string) answer {
	t.Helper()
	return do(t, srv, http.MethodGet, target, nil)
}

// decode reads a merged answer.
func decode(t *testing.T, a answer) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal([]byte(a.body), &v); err != nil {
		t.Fatalf("answer %d %q is not a JSON object: %v", a.status, a.body, err)
	}
	return v
}

// partStatus returns _parts[name].status and .error of a partial answer.
func partStatus(t *testing.T, v map[string]any, name string) (int, string) {
	t.Helper()
	parts, ok := v["_parts"].(map[string]any)
	if !ok {
		t.Fatalf("no _parts in %v", v)
	}
	p, ok := parts[name].(map[string]any)
	if !ok {
		t.Fatalf("no _parts.%s in %v", name, v)
	}
	msg, _ := p["error"].(string)
	return int(p["status"].(float64)), msg
}

func jsonHandler(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, body)
	}
}

func one(name, upstream, path string) Part {
	return Part{Name: name, Upstream: upstream, Path: path}
}

var discardLog = log.New(io.Discard, "", 0)

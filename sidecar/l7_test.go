package sidecar_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/hashicorp/consul/api"

	"github.com/outrider-mesh/outrider/internal/testutil"
	"github.com/outrider-mesh/outrider/internal/testutil/consultest"
	"github.com/outrider-mesh/outrider/sidecar"
)

// httpApp is one instance of an HTTP service: it says which instance
// answered and what it received, and has endpoints for the edge cases.
type httpApp struct {
	name     string
	srv      *http.Server
	ln       net.Listener
	mu       sync.Mutex
	requests int
	// failing makes every answer a 503 (outlier detection tests).
	failing atomic.Bool
	// unhealthy makes /healthz answer 503; probes counts its requests,
	// which are not counted in requests (active health check tests).
	unhealthy atomic.Bool
	probes    atomic.Int32
}

// seen is what the application reports about a request.
type seen struct {
	Instance string      `json:"instance"`
	Method   string      `json:"method"`
	Path     string      `json:"path"`
	Proto    string      `json:"proto"`
	Header   http.Header `json:"header"`
	BodyLen  int64       `json:"body_len"`
	BodySHA  string      `json:"body_sha"`
	Trailer  http.Header `json:"trailer"`
}

func startHTTPApp(t *testing.T, name string) *httpApp {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := &httpApp{name: name, ln: ln}
	mux := http.NewServeMux()
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, _ := io.Copy(h, r.Body)
		w.Header().Set("Content-Type", "application/json")
		if cc := r.URL.Query().Get("cc"); cc != "" {
			w.Header().Set("Cache-Control", cc) // for the cache tests
		}
		json.NewEncoder(w).Encode(seen{Instance: name, Method: r.Method, Path: r.URL.RequestURI(), Proto: r.Proto,
			Header: r.Header, BodyLen: n, BodySHA: hex.EncodeToString(h.Sum(nil)), Trailer: r.Trailer})
	})
	mux.HandleFunc("/sleep", func(w http.ResponseWriter, r *http.Request) {
		d, _ := time.ParseDuration(r.URL.Query().Get("d"))
		select {
		case <-time.After(d):
		case <-r.Context().Done():
		}
		io.WriteString(w, "slept")
	})
	mux.HandleFunc("/drip", func(w http.ResponseWriter, r *http.Request) {
		// n chunks, the head first, then one chunk every "every".
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		every, _ := time.ParseDuration(r.URL.Query().Get("every"))
		rc := http.NewResponseController(w)
		w.WriteHeader(200)
		rc.Flush()
		for i := range n {
			select {
			case <-time.After(every):
			case <-r.Context().Done():
				return
			}
			fmt.Fprintf(w, "chunk %d\n", i)
			rc.Flush()
		}
	})
	mux.HandleFunc("/hints", func(w http.ResponseWriter, r *http.Request) {
		// n interim 103 Early Hints, then the body is read (which sends
		// the 100 Continue a request with Expect: 100-continue waits
		// for) and 200 "ok <body length>".
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		for range n {
			w.Header().Set("Link", "</a.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
		}
		w.Header().Del("Link")
		got, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "ok %d", got)
	})
	mux.HandleFunc("/reset", func(w http.ResponseWriter, r *http.Request) {
		c, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			c.Close()
		}
	})
	mux.HandleFunc("/trailers", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Checksum")
		io.WriteString(w, "body with a trailer")
		w.Header().Set("X-Checksum", "abc123")
	})
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		for i := range 3 {
			fmt.Fprintf(w, "event %d\n", i)
			rc.Flush()
			time.Sleep(50 * time.Millisecond)
		}
	})
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, append([]byte(name+":"), msg...)); err != nil {
				return
			}
		}
	})
	a.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			a.probes.Add(1)
			if a.unhealthy.Load() {
				http.Error(w, name+" unhealthy", http.StatusServiceUnavailable)
			}
			return
		}
		a.mu.Lock()
		a.requests++
		a.mu.Unlock()
		if a.failing.Load() {
			http.Error(w, name+" failing", http.StatusServiceUnavailable)
			return
		}
		mux.ServeHTTP(w, r)
	})}
	go a.srv.Serve(ln)
	t.Cleanup(func() { a.srv.Close() })
	return a
}

func (a *httpApp) port() int { return a.ln.Addr().(*net.TCPAddr).Port }

func (a *httpApp) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.requests
}

func setProtocol(t *testing.T, a *consultest.Agent, service, protocol string) {
	t.Helper()
	_, _, err := a.Client.ConfigEntries().Set(&api.ServiceConfigEntry{Kind: api.ServiceDefaults, Name: service, Protocol: protocol}, nil)
	if err != nil {
		t.Fatalf("service-defaults %s: %v", service, err)
	}
}

// l7Mesh is three instances of an http service "web", each with its
// Outrider sidecar, and a "client" sidecar with web as an upstream.
type l7Mesh struct {
	agent    *consultest.Agent
	apps     []*httpApp
	sidecars []*runningSidecar
	client   *runningSidecar
	upstream string // client's local listener for web
	empty    string // client's local listener for "nobody" (no instances)
}

func startL7Mesh(t *testing.T, instances int) *l7Mesh {
	t.Helper()
	return startL7MeshMeta(t, make([]map[string]string, instances))
}

// startL7MeshMeta is startL7Mesh with one instance per entry of metas,
// registered with that service metadata.
func startL7MeshMeta(t *testing.T, metas []map[string]string) *l7Mesh {
	t.Helper()
	instances := len(metas)
	a := consultest.Start(t)
	setProtocol(t, a, "web", "http")
	m := &l7Mesh{agent: a}
	ports := consultest.FreePorts(t, instances+4)
	for i := range instances {
		app := startHTTPApp(t, fmt.Sprintf("web-%d", i+1))
		m.apps = append(m.apps, app)
		id := fmt.Sprintf("web-%d", i+1)
		registerWith(t, a, service{name: "web", id: id, appPort: app.port(), publicPort: ports[i], meta: metas[i]},
			map[string]any{"local_request_timeout_ms": 1000})
	}
	register(t, a, service{name: "client", id: "client-1", appPort: ports[instances], publicPort: ports[instances+1],
		upstreams: []api.Upstream{
			{DestinationName: "web", LocalBindPort: ports[instances+2]},
			{DestinationName: "nobody", LocalBindPort: ports[instances+3], Config: map[string]any{"protocol": "http"}},
		}})
	m.upstream, m.empty = addr(ports[instances+2]), addr(ports[instances+3])
	for i := range instances {
		sc := startSidecar(t, a, sidecar.Options{SidecarFor: fmt.Sprintf("web-%d", i+1)})
		m.sidecars = append(m.sidecars, sc)
	}
	m.client = startSidecar(t, a, sidecar.Options{SidecarFor: "client-1"})
	for _, sc := range append(m.sidecars, m.client) {
		sc.waitReady(t)
	}
	waitRoutable(t, a, "web", instances)
	eventually(t, 15*time.Second, func() error {
		d := m.client.Dump()
		for _, u := range d.Upstreams {
			if u.DestinationName == "web" && u.Snapshot != nil && len(u.Snapshot.Endpoints) == instances && u.Protocol == sidecar.HTTP {
				return nil
			}
		}
		return fmt.Errorf("client sidecar does not see %d http endpoints of web yet", instances)
	})
	return m
}

// registerWith is register with Proxy.Config set on the sidecar.
func registerWith(t *testing.T, a *consultest.Agent, s service, proxyConfig map[string]any) {
	t.Helper()
	err := a.Client.Agent().ServiceRegister(&api.AgentServiceRegistration{
		Name: s.name, ID: s.id, Port: s.appPort, Address: "127.0.0.1", Meta: s.meta,
		Connect: &api.AgentServiceConnect{SidecarService: &api.AgentServiceRegistration{
			Port: s.publicPort, Address: "127.0.0.1",
			Checks: api.AgentServiceChecks{{
				Name: "sidecar listening", TCP: "127.0.0.1:" + strconv.Itoa(s.publicPort),
				Interval: "1s", Timeout: "1s",
			}},
			Proxy: &api.AgentServiceConnectProxyConfig{Upstreams: s.upstreams, Config: proxyConfig},
		}},
	})
	if err != nil {
		t.Fatalf("register %s: %v", s.id, err)
	}
}

// oneConnClient sends every request over a single keep-alive connection.
func oneConnClient() *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1, DisableCompression: true,
			ExpectContinueTimeout: 5 * time.Second,
		},
	}
}

func getSeen(t *testing.T, c *http.Client, req *http.Request) (seen, *http.Response) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("%s %s: %d %s", req.Method, req.URL, resp.StatusCode, body)
	}
	var s seen
	if err := json.Unmarshal(body, &s); err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	return s, resp
}

func TestMeshHTTP1(t *testing.T) {
	t.Parallel()
	m := startL7Mesh(t, 3)
	base := "http://" + m.upstream
	c := oneConnClient()

	t.Run("headers set and hop-by-hop removed", func(t *testing.T) {
		req, _ := http.NewRequest("GET", base+"/echo?x=1", nil)
		req.Header.Set("Connection", "X-Private")
		req.Header.Set("X-Private", "must not pass")
		req.Header.Set("X-Kept", "kept")
		s, _ := getSeen(t, c, req)
		if s.Path != "/echo?x=1" || s.Method != "GET" || s.Header.Get("X-Kept") != "kept" {
			t.Fatalf("request seen as %+v", s)
		}
		if s.Header.Get("X-Private") != "" {
			t.Fatal("a field named in Connection was forwarded")
		}
		if s.Header.Get("X-Forwarded-For") != "127.0.0.1" || s.Header.Get("X-Forwarded-Proto") != "https" {
			t.Fatalf("X-Forwarded-For %q, X-Forwarded-Proto %q", s.Header.Get("X-Forwarded-For"), s.Header.Get("X-Forwarded-Proto"))
		}
		if len(s.Header.Get("X-Request-Id")) != 36 {
			t.Fatalf("X-Request-Id %q, want a generated UUID", s.Header.Get("X-Request-Id"))
		}
		// The peer identity header: a client's own is replaced by the
		// mesh peer's SPIFFE ID, over HTTP/1.1 and HTTP/2 (h2c).
		var h2c http.Protocols
		h2c.SetUnencryptedHTTP2(true)
		for name, cl := range map[string]*http.Client{"HTTP/1.1": c, "HTTP/2": {Transport: &http.Transport{Protocols: &h2c}, Timeout: 10 * time.Second}} {
			req, _ := http.NewRequest("GET", base+"/echo", nil)
			req.Header.Set("X-Forwarded-Client-Cert", "URI=spiffe://evil.example/admin")
			s, _ := getSeen(t, cl, req)
			if got := s.Header.Values("X-Forwarded-Client-Cert"); len(got) != 1 || !strings.HasPrefix(got[0], "URI=spiffe://") ||
				!strings.HasSuffix(got[0], "/ns/default/dc/dc1/svc/client") {
				t.Fatalf("%s: X-Forwarded-Client-Cert %q, want the client sidecar's SPIFFE ID only", name, got)
			}
		}
		req, _ = http.NewRequest("GET", base+"/echo", nil)
		req.Header.Set("X-Request-Id", "caller-chosen")
		if s, _ := getSeen(t, c, req); s.Header.Get("X-Request-Id") != "caller-chosen" {
			t.Fatalf("X-Request-Id %q, want the caller's", s.Header.Get("X-Request-Id"))
		}
	})

	t.Run("per-request balancing over one client connection", func(t *testing.T) {
		counts := map[string]int{}
		for range 60 {
			req, _ := http.NewRequest("GET", base+"/echo", nil)
			s, _ := getSeen(t, c, req)
			counts[s.Instance]++
		}
		if len(counts) != 3 {
			t.Fatalf("instances that answered: %v, want all 3", counts)
		}
	})

	t.Run("bodies streamed both ways", func(t *testing.T) {
		payload := make([]byte, 3<<20)
		rand.Read(payload)
		sum := sha256.Sum256(payload)
		for _, chunked := range []bool{false, true} {
			var body io.Reader = bytes.NewReader(payload)
			if chunked {
				body = io.MultiReader(body) // unknown length: sent chunked
			}
			req, _ := http.NewRequest("POST", base+"/echo", body)
			if chunked {
				req.Trailer = http.Header{"X-Sum": nil}
			}
			s, _ := getSeen(t, c, req)
			if s.BodyLen != int64(len(payload)) || s.BodySHA != hex.EncodeToString(sum[:]) {
				t.Fatalf("chunked=%v: app got %d bytes sha %s", chunked, s.BodyLen, s.BodySHA)
			}
		}
	})

	t.Run("request trailers", func(t *testing.T) {
		pr, pw := io.Pipe()
		req, _ := http.NewRequest("POST", base+"/echo", pr)
		req.Trailer = http.Header{"X-Sum": nil}
		go func() {
			io.WriteString(pw, "some body")
			req.Trailer.Set("X-Sum", "42")
			pw.Close()
		}()
		s, _ := getSeen(t, c, req)
		if s.Trailer.Get("X-Sum") != "42" {
			t.Fatalf("trailer seen %v", s.Trailer)
		}
	})

	t.Run("response trailers", func(t *testing.T) {
		resp, err := c.Get(base + "/trailers")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "body with a trailer" || resp.Trailer.Get("X-Checksum") != "abc123" {
			t.Fatalf("body %q trailer %v", b, resp.Trailer)
		}
	})

	t.Run("100-continue", func(t *testing.T) {
		req, _ := http.NewRequest("PUT", base+"/echo", strings.NewReader("after continue"))
		req.Header.Set("Expect", "100-continue")
		s, _ := getSeen(t, c, req)
		if s.BodyLen != int64(len("after continue")) {
			t.Fatalf("body length %d", s.BodyLen)
		}
	})

	t.Run("streamed response flows before it ends", func(t *testing.T) {
		resp, err := c.Get(base + "/stream")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		line, err := bufio.NewReader(resp.Body).ReadString('\n')
		if err != nil || line != "event 0\n" {
			t.Fatalf("first event %q, %v", line, err)
		}
		io.Copy(io.Discard, resp.Body)
	})

	t.Run("websocket", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ws, _, err := websocket.Dial(ctx, "ws://"+m.upstream+"/ws", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.CloseNow()
		var instance string
		for i := range 5 {
			msg := fmt.Sprintf("hello %d", i)
			if err := ws.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
				t.Fatal(err)
			}
			_, got, err := ws.Read(ctx)
			if err != nil {
				t.Fatal(err)
			}
			inst, echoed, _ := strings.Cut(string(got), ":")
			if echoed != msg || (instance != "" && inst != instance) {
				t.Fatalf("echo %q (instance %q, first %q)", got, inst, instance)
			}
			instance = inst
		}
		ws.Close(websocket.StatusNormalClosure, "")
	})

	t.Run("curl --http2-prior-knowledge", func(t *testing.T) {
		if _, err := exec.LookPath("curl"); err != nil {
			t.Skip("curl not installed")
		}
		out, err := exec.Command("curl", "-sS", "--http2-prior-knowledge", "-w", "\n%{http_version}", base+"/echo").CombinedOutput()
		if err != nil {
			t.Fatalf("curl: %v\n%s", err, out)
		}
		text := strings.TrimSpace(string(out))
		i := strings.LastIndexByte(text, '\n')
		body, version := text[:max(i, 0)], text[i+1:]
		var s seen
		if err := json.Unmarshal([]byte(body), &s); err != nil || version != "2" || !strings.HasPrefix(s.Instance, "web-") {
			t.Fatalf("curl got %q (http %s): %v", body, version, err)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		before := metricValue(t, m.client.admin, "outrider_http_requests_total", "direction", "outbound", "upstream", "web", "status_class", "2xx")
		for range 5 {
			req, _ := http.NewRequest("GET", base+"/echo", nil)
			getSeen(t, c, req)
		}
		// A request is counted once its exchange has finished, which can be
		// just after the client has read the whole response.
		eventually(t, 5*time.Second, func() error {
			after := metricValue(t, m.client.admin, "outrider_http_requests_total", "direction", "outbound", "upstream", "web", "status_class", "2xx")
			if after-before != 5 {
				return fmt.Errorf("outbound 2xx requests moved by %v, want 5", after-before)
			}
			return nil
		})
		eventually(t, 5*time.Second, func() error {
			inbound := 0.0
			for _, sc := range m.sidecars {
				inbound += metricValue(t, sc.admin, "outrider_http_requests_total", "direction", "inbound", "upstream", "local_app")
			}
			if inbound < 5 {
				return fmt.Errorf("inbound requests across web sidecars: %v", inbound)
			}
			return nil
		})
		if n := metricValue(t, m.client.admin, "outrider_http_request_duration_seconds", "upstream", "web"); n < 5 {
			t.Fatalf("request duration histogram count %v", n)
		}
		if n := metricValue(t, m.client.admin, "outrider_connections_active", "direction", "outbound", "upstream", "web"); n < 1 {
			t.Fatalf("active outbound connections to web: %v, want the test client's", n)
		}
		if n := metricValue(t, m.client.admin, "outrider_sidecar_info", "service", "client"); n != 1 {
			t.Fatalf("outrider_sidecar_info{service=client} = %v", n)
		}
	})

	t.Run("errors come from the sidecar with a reason", func(t *testing.T) {
		tests := []struct {
			url    string
			status int
			code   string
		}{
			{"http://" + m.empty + "/", 503, "no_healthy_upstream"},
			{base + "/sleep?d=3s", 504, "upstream_timeout"},
			{base + "/reset", 502, "upstream_reset"},
		}
		for _, tt := range tests {
			resp, err := http.Get(tt.url)
			if err != nil {
				t.Fatalf("%s: %v", tt.url, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status || resp.Header.Get("X-Outrider-Error") != tt.code || len(body) == 0 {
				t.Errorf("%s: %d %q %q, want %d %q", tt.url, resp.StatusCode, resp.Header.Get("X-Outrider-Error"), body, tt.status, tt.code)
			}
		}
		eventually(t, 5*time.Second, func() error {
			if n := metricValue(t, m.client.admin, "outrider_http_requests_total", "upstream", "nobody", "response_flag", "UH", "status_class", "5xx"); n != 1 {
				return fmt.Errorf("no-healthy-upstream requests counted %v, want 1 with flag UH", n)
			}
			return nil
		})
	})

	// Intentions are checked per request: a deny reaches requests on
	// connections (and pooled mesh connections) that were authorized
	// before it.
	t.Run("a deny intention applies to open connections", func(t *testing.T) {
		req, _ := http.NewRequest("GET", base+"/echo", nil)
		getSeen(t, c, req)
		setIntention(t, m.agent, "web", "client", api.IntentionActionDeny)
		eventually(t, 10*time.Second, func() error {
			resp, err := c.Get(base + "/echo")
			if err != nil {
				return err
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden || resp.Header.Get("X-Outrider-Error") != "denied" {
				return fmt.Errorf("status %d %q, want 403 denied", resp.StatusCode, resp.Header.Get("X-Outrider-Error"))
			}
			return nil
		})
		setIntention(t, m.agent, "web", "client", api.IntentionActionAllow)
		eventually(t, 10*time.Second, func() error {
			resp, err := c.Get(base + "/echo")
			if err != nil {
				return err
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				return fmt.Errorf("status %d after allow", resp.StatusCode)
			}
			return nil
		})
	})

	// Last but one: it adds an instance that cannot be reached.
	t.Run("an endpoint that cannot be reached is replaced per request", func(t *testing.T) {
		dead := testutil.DeadPort(t)
		err := m.agent.Client.Agent().ServiceRegister(&api.AgentServiceRegistration{
			Name: "web", ID: "web-dead", Port: 1, Address: "127.0.0.1",
			Connect: &api.AgentServiceConnect{SidecarService: &api.AgentServiceRegistration{
				Port: dead, Address: "127.0.0.1",
				Checks: api.AgentServiceChecks{{CheckID: "web-dead-ttl", Name: "always passing", TTL: "1h", Status: "passing"}},
			}},
		})
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, 15*time.Second, func() error {
			for _, u := range m.client.Dump().Upstreams {
				if u.DestinationName == "web" && u.Snapshot != nil && len(u.Snapshot.Endpoints) == 4 {
					return nil
				}
			}
			return fmt.Errorf("client does not see the unreachable instance yet")
		})
		failures := m.client.Dump().Stats["upstream_connect_failures"]
		for i := range 40 {
			req, _ := http.NewRequest("GET", base+"/echo", nil)
			if s, _ := getSeen(t, c, req); !strings.HasPrefix(s.Instance, "web-") {
				t.Fatalf("request %d answered by %q", i, s.Instance)
			}
		}
		if got := m.client.Dump().Stats["upstream_connect_failures"]; got != failures {
			t.Fatalf("%d requests failed to connect anywhere", got-failures)
		}
		m.agent.Client.Agent().ServiceDeregister("web-dead-sidecar-proxy")
		m.agent.Client.Agent().ServiceDeregister("web-dead")
	})

	t.Run("malformed requests are answered and never forwarded", func(t *testing.T) {
		before := 0
		for _, a := range m.apps {
			before += a.count()
		}
		tests := []struct {
			name, raw string
			status    int
		}{
			{"garbage request line", "GARBAGE\r\n\r\n", 400},
			{"conflicting framing", "POST /echo HTTP/1.1\r\nHost: web\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
			{"duplicate content-length", "POST /echo HTTP/1.1\r\nHost: web\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400},
			{"invalid chunk size", "POST /echo HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", 400},
			{"header too large", "GET /echo HTTP/1.1\r\nHost: web\r\nX-Big: " + strings.Repeat("a", 70<<10) + "\r\n\r\n", 431},
			{"no host", "GET /echo HTTP/1.1\r\n\r\n", 400},
		}
		for _, tt := range tests {
			status := rawStatus(t, m.upstream, tt.raw)
			if status != tt.status {
				t.Errorf("%s: status %d, want %d", tt.name, status, tt.status)
			}
		}
		after := 0
		for _, a := range m.apps {
			after += a.count()
		}
		// The invalid chunk is only found after the head was forwarded; the
		// application then sees an aborted request, never a complete one.
		if after-before > 1 {
			t.Fatalf("%d malformed requests reached the applications", after-before)
		}
	})
}

// rawStatus sends raw bytes and returns the status code of the answer.
func rawStatus(t *testing.T, addr, raw string) int {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	go io.WriteString(c, raw)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the answer to %.40q: %v", raw, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// Consistent hashing from a service-resolver keeps a session on one
// instance while other instances come and go.
func TestMeshSessionPersistence(t *testing.T) {
	t.Parallel()
	m := startL7Mesh(t, 3)
	_, _, err := m.agent.Client.ConfigEntries().Set(&api.ServiceResolverConfigEntry{
		Kind: api.ServiceResolver, Name: "web",
		LoadBalancer: &api.LoadBalancer{
			Policy: "ring_hash",
			HashPolicies: []api.HashPolicy{
				{Field: "header", FieldValue: "x-user", Terminal: true},
				{Field: "cookie", FieldValue: "session", CookieConfig: &api.CookieConfig{TTL: time.Hour}},
			},
		},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() error {
		for _, u := range m.client.Dump().Upstreams {
			if u.DestinationName == "web" && u.LoadBalancer.Policy == "ring_hash" {
				return nil
			}
		}
		return fmt.Errorf("ring_hash not applied yet")
	})
	base := "http://" + m.upstream
	c := oneConnClient()
	ask := func(header, cookie string) (string, *http.Response) {
		req, _ := http.NewRequest("GET", base+"/echo", nil)
		if header != "" {
			req.Header.Set("X-User", header)
		}
		if cookie != "" {
			req.AddCookie(&http.Cookie{Name: "session", Value: cookie})
		}
		s, resp := getSeen(t, c, req)
		return s.Instance, resp
	}

	// The first request gets a generated cookie; with it, every request
	// lands where the first did.
	first, resp := ask("", "")
	var session string
	for _, ck := range resp.Cookies() {
		if ck.Name == "session" {
			session = ck.Value
			if ck.MaxAge != 3600 {
				t.Errorf("generated cookie Max-Age %d, want 3600", ck.MaxAge)
			}
		}
	}
	if session == "" {
		t.Fatalf("no session cookie generated: %v", resp.Header["Set-Cookie"])
	}
	pinned, _ := ask("", session)
	for range 20 {
		if got, _ := ask("", session); got != pinned {
			t.Fatalf("session moved from %s to %s", pinned, got)
		}
	}
	t.Logf("first answer from %s, session pinned to %s", first, pinned)

	// Headers are hashed too: one user sticks, many users spread.
	users := map[string]bool{}
	for i := range 30 {
		inst, _ := ask(fmt.Sprintf("user-%d", i), "")
		again, _ := ask(fmt.Sprintf("user-%d", i), "")
		if inst != again {
			t.Fatalf("user-%d moved from %s to %s", i, inst, again)
		}
		users[inst] = true
	}
	if len(users) < 2 {
		t.Fatalf("30 users all hashed to %v", users)
	}

	// Another instance leaves: the session stays where it was.
	var other string
	for i := range m.apps {
		if id := fmt.Sprintf("web-%d", i+1); id != pinned {
			other = id
			break
		}
	}
	if err := m.agent.Client.Agent().ServiceDeregister(other + "-sidecar-proxy"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() error {
		for _, u := range m.client.Dump().Upstreams {
			if u.DestinationName == "web" && u.Snapshot != nil && len(u.Snapshot.Endpoints) == 2 {
				return nil
			}
		}
		return fmt.Errorf("client still sees the removed instance")
	})
	for range 20 {
		if got, _ := ask("", session); got != pinned {
			t.Fatalf("after %s left, session moved from %s to %s", other, pinned, got)
		}
	}
}

// A protocol change in service-defaults reaches both sidecars through the
// agent and applies to new connections: tcp traffic is relayed as bytes,
// http traffic per request.
func TestMeshProtocolChange(t *testing.T) {
	t.Parallel()
	a := consultest.Start(t)
	app := startHTTPApp(t, "api-1")
	ports := consultest.FreePorts(t, 4)
	register(t, a, service{name: "api", id: "api-1", appPort: app.port(), publicPort: ports[0]})
	register(t, a, service{name: "client", id: "client-1", appPort: ports[1], publicPort: ports[2],
		upstreams: []api.Upstream{{DestinationName: "api", LocalBindPort: ports[3]}}})
	apiSC := startSidecar(t, a, sidecar.Options{SidecarFor: "api-1"})
	client := startSidecar(t, a, sidecar.Options{SidecarFor: "client-1"})
	apiSC.waitReady(t)
	client.waitReady(t)
	waitRoutable(t, a, "api", 1)
	get := func() (seen, error) {
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := c.Get("http://" + addr(ports[3]) + "/echo")
		if err != nil {
			return seen{}, err
		}
		defer resp.Body.Close()
		var s seen
		return s, json.NewDecoder(resp.Body).Decode(&s)
	}
	eventually(t, 15*time.Second, func() error { _, err := get(); return err })
	if s, _ := get(); s.Header.Get("X-Request-Id") != "" {
		t.Fatalf("tcp upstream added headers: %v", s.Header)
	}
	setProtocol(t, a, "api", "http")
	eventually(t, 15*time.Second, func() error {
		s, err := get()
		if err != nil {
			return err
		}
		if s.Header.Get("X-Request-Id") == "" || s.Header.Get("X-Forwarded-Proto") != "https" {
			return fmt.Errorf("still relayed as bytes: %v", s.Header)
		}
		return nil
	})
}
